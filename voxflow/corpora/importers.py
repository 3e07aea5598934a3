"""Local corpora to manifests: VoxCeleb- and CN-Celeb-layout directories, augmentation sets, merged training sets."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from voxflow.audio.io import audio_info
from voxflow.corpora.import_checks import check_audio, session_of
from voxflow.corpora.kaldi import import_kaldi_dir
from voxflow.corpora.text_tables import read_keyed_table
from voxflow.corpora.wespeaker_lists import import_wespeaker_list
from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")


def _walk_error(exc: OSError) -> None:
    raise VoxflowError(f"{exc.filename}: cannot list directory: {exc.strerror}")


def find_files(root: Path, suffixes: tuple[str, ...] = AUDIO_SUFFIXES,
               seen: dict[str, Path] | None = None) -> list[Path]:
    """Files under ``root`` with one of ``suffixes`` (any case), sorted, following symbolic links to files and
    directories. A directory reached twice (a link loop, or two links to one directory) is an error naming
    both paths, and so is a broken link; ``seen`` (real path -> path) shares that check between calls."""
    seen = {} if seen is None else seen
    found = []
    for top, dirs, names in os.walk(root, followlinks=True, onerror=_walk_error):
        here = Path(top)
        real = os.path.realpath(here)
        if real in seen:
            first = seen[real]
            if first in here.parents:
                raise VoxflowError(f"{here}: symbolic link loop: leads back to {first}")
            raise VoxflowError(f"{here}: same directory as {first} (reached twice through symbolic links); "
                               "keep one of them")
        seen[real] = here
        dirs.sort()  # a deterministic walk, so the same error for the same tree
        for name in names:
            path = here / name
            if path.suffix.lower() in suffixes:
                if not path.exists():
                    raise VoxflowError(f"{path}: broken symbolic link (to {os.readlink(path)})")
                found.append(path)
    return sorted(found)


def import_voxceleb_dir(root: str | os.PathLike, sample_rate: int = 16000, on_other_rate: str = "resample",
                        min_duration_s: float = 0.0, corpus: str = "") -> pd.DataFrame:
    """Manifest of a directory in VoxCeleb layout ``speaker/session/utterance.{wav,flac}``, or in the two-level
    layout ``speaker/utterance.{wav,flac}`` (one layout per directory; a mix is an error naming a file of each).

    utt_id is the relative path without extension (as in VoxCeleb trial lists). The session is
    ``speaker/session``; two-level: ``speaker/<utterance name up to its last - or _>``, or the speaker
    alone (one session per speaker) when the name has neither (see ``session_of``). Symbolic links are
    followed. Each file's header is read (see ``audio_info``): unreadable, empty, truncated, non-finite or
    too-short files, and other sample rates when ``on_other_rate == "error"``, are errors naming the file.
    """
    base = Path(root)
    if not base.is_dir():
        raise VoxflowError(f"{base}: corpus directory not found")
    rows, depth_of = [], {}
    for path in find_files(base):
        rel = path.relative_to(base)
        if len(rel.parts) not in (2, 3):
            raise VoxflowError(f"{path}: not in VoxCeleb layout speaker/session/utterance or speaker/utterance "
                               f"(under {base})")
        depth_of.setdefault(len(rel.parts), path)
        if len(depth_of) > 1:
            raise VoxflowError(f"{base}: mixed layouts: {depth_of[2]} is speaker/utterance but {depth_of[3]} is "
                               "speaker/session/utterance; keep one layout per corpus directory")
        sr, n, _ = audio_info(path)
        duration = n / sr
        check_audio(str(path), sr, duration, sample_rate, on_other_rate, min_duration_s)
        spk, utt_id = rel.parts[0], rel.with_suffix("").as_posix()
        rows.append({"utt_id": utt_id, "spk_id": spk, "session_id": session_of(utt_id, spk, spk),
                     "path": str(path.resolve()), "sample_rate": sr, "num_samples": n, "duration_s": duration,
                     "corpus": corpus})
    if not rows:
        raise VoxflowError(f"{base}: no .wav or .flac files found")
    table = pd.DataFrame(rows)
    dup = table["utt_id"].duplicated(keep=False)
    if dup.any():
        raise VoxflowError(f"{base}: duplicate utterance id {table.loc[dup, 'utt_id'].iloc[0]!r} from files "
                           f"{table.loc[dup, 'path'].tolist()[:2]}")
    return table


CNCELEB_EVAL_DIRS = ("enroll", "test")


def _cnceleb_name(path: Path, stem: str) -> tuple[str, str]:
    """(genre, session) of a CN-Celeb utterance name ``<genre>-<session>-<utt>``; anything else is an error."""
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        raise VoxflowError(f"{path}: CN-Celeb utterance names are <genre>-<session>-<utt> (e.g. singing-01-001), "
                           f"got {stem!r}")
    return parts[0], parts[1]


def _cnceleb_ids(path: Path, rel: Path, eval_layout: bool) -> tuple[str, str, str]:
    """(utt_id, spk_id, session_id) of one file of a CN-Celeb data/ or eval/ directory."""
    stem = rel.with_suffix("").name
    if not eval_layout:
        spk = rel.parts[0]
        genre, session = _cnceleb_name(path, stem)
        return f"{spk}/{stem}", spk, f"{spk}/{genre}-{session}"
    spk, _, rest = stem.partition("-")
    if not spk or not rest:
        raise VoxflowError(f"{path}: CN-Celeb evaluation files are named <speaker>-enroll or "
                           f"<speaker>-<genre>-<session>-<utt>, got {stem!r}")
    if rel.parts[0] == "enroll":
        if rest != "enroll":
            raise VoxflowError(f"{path}: enrolment files are named <speaker>-enroll, got {stem!r}")
        return f"enroll/{stem}", spk, f"{spk}/enroll"
    genre, session = _cnceleb_name(path, rest)
    return f"test/{stem}", spk, f"{spk}/{genre}-{session}"


def read_speaker_list(path: str | os.PathLike) -> dict[str, int]:
    """Speaker ids of a list file (one per line, e.g. CN-Celeb's dev/dev.lst) -> their 1-based line numbers."""
    table = read_keyed_table(path, 1, 1, "one speaker id", "speaker list")
    if not table:
        raise VoxflowError(f"{path}: speaker list is empty")
    return {spk: no for spk, (_, no) in table.items()}


def import_cnceleb_dir(root: str | os.PathLike, sample_rate: int = 16000, on_other_rate: str = "resample",
                       min_duration_s: float = 0.0, corpus: str = "",
                       speaker_list: str | os.PathLike | None = None) -> pd.DataFrame:
    """Manifest of a CN-Celeb directory, whose layout has two levels (the session is in the file name).

    ``data/`` layout (CN-Celeb1 and CN-Celeb2 training audio): ``<speaker>/<genre>-<session>-<utt>.flac``,
    utt_id ``<speaker>/<genre>-<session>-<utt>``, session ``<speaker>/<genre>-<session>``.
    ``eval/`` layout (CN-Celeb1 evaluation, recognised by its ``enroll``/``test`` directories):
    ``enroll/<speaker>-enroll.flac`` and ``test/<speaker>-<genre>-<session>-<utt>.flac``, utt_id the
    relative path without extension (as in ``eval/lists/trials.lst``), speaker from the file name.
    ``speaker_list`` (e.g. ``dev/dev.lst``) keeps only the listed speakers; a listed speaker absent
    from the directory is an error naming the list's line.
    """
    base = Path(root)
    if not base.is_dir():
        raise VoxflowError(f"{base}: corpus directory not found")
    if (base / "data").is_dir() and not any((base / d).is_dir() for d in CNCELEB_EVAL_DIRS):
        raise VoxflowError(f"{base}: looks like a CN-Celeb root; point the path at its data/ directory (training "
                           "audio) or its eval/ directory (enroll/ and test/)")
    eval_layout = any((base / d).is_dir() for d in CNCELEB_EVAL_DIRS)
    wanted = read_speaker_list(speaker_list) if speaker_list is not None and str(speaker_list) else None
    rows = []
    for path in find_files(base):
        rel = path.relative_to(base)
        if len(rel.parts) != 2 or (eval_layout and rel.parts[0] not in CNCELEB_EVAL_DIRS):
            layout = ("enroll/<speaker>-enroll or test/<speaker>-<genre>-<session>-<utt>" if eval_layout
                      else "<speaker>/<genre>-<session>-<utt>")
            raise VoxflowError(f"{path}: not in CN-Celeb layout {layout} (under {base})")
        utt_id, spk, session = _cnceleb_ids(path, rel, eval_layout)
        if wanted is not None and spk not in wanted:
            continue
        sr, n, _ = audio_info(path)
        duration = n / sr
        check_audio(str(path), sr, duration, sample_rate, on_other_rate, min_duration_s)
        rows.append({"utt_id": utt_id, "spk_id": spk, "session_id": session, "path": str(path.resolve()),
                     "sample_rate": sr, "num_samples": n, "duration_s": duration, "corpus": corpus})
    if wanted is not None:
        found = {r["spk_id"] for r in rows}
        missing = [s for s in wanted if s not in found]
        if missing:
            raise VoxflowError(f"{speaker_list}:{wanted[missing[0]]}: speaker {missing[0]!r} has no audio in {base}"
                               f" ({len(missing)} listed speaker(s) missing)")
    if not rows:
        raise VoxflowError(f"{base}: no .wav or .flac files found")
    return _no_duplicates(pd.DataFrame(rows), base)


def _no_duplicates(table: pd.DataFrame, base: Path) -> pd.DataFrame:
    dup = table["utt_id"].duplicated(keep=False)
    if dup.any():
        raise VoxflowError(f"{base}: duplicate utterance id {table.loc[dup, 'utt_id'].iloc[0]!r} from files "
                           f"{table.loc[dup, 'path'].tolist()[:2]}")
    return table


def merge_manifests(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Concatenate utterance tables; an utterance id present twice is an error naming both sources."""
    merged = pd.concat(list(tables.values()), ignore_index=True)
    sources = pd.Series([name for name, t in tables.items() for _ in range(len(t))])
    dup = merged["utt_id"].duplicated(keep=False)
    if dup.any():
        first = merged.loc[dup, "utt_id"].iloc[0]
        where = sorted(set(sources[merged["utt_id"] == first]))
        raise VoxflowError(f"duplicate utterance id {first!r} ({int(dup.sum())} rows in all) in {where}")
    return merged


NOISE_DIRS = {"noise": "noise", "music": "music", "babble": "babble", "speech": "babble"}  # sub-directory -> kind


def import_augmentation_dir(root: str | os.PathLike, kind: str) -> pd.DataFrame:
    """Noise (MUSAN layout: noise/, music/, babble/ sub-directories) or RIR files as a table with 'kind'.

    MUSAN's own speech/ directory counts as babble/: its single-speaker clips are what babble is summed from
    (a babble/ link to it is read once). Other entries of a noise directory (e.g. rir/, README) are left out
    with a warning listing them. Symbolic links are followed.
    """
    if not str(root):
        return pd.DataFrame(columns=["path", "kind", "sample_rate", "num_samples"])
    base = Path(root)
    if not base.is_dir():
        raise VoxflowError(f"{base}: augmentation directory not found")
    if kind == "noise":
        sources, seen = {}, {}
        for sub in sorted(base.iterdir()):
            if sub.name in NOISE_DIRS and sub.is_dir():
                sources.setdefault(os.path.realpath(sub), sub)  # babble/ -> speech/ link: read once
        other = sorted(p.name for p in base.iterdir() if p not in sources.values() and p.name not in NOISE_DIRS)
        if other:
            log.warning("%s: left out (not one of %s/): %s", base, "/, ".join(NOISE_DIRS), ", ".join(other))
        files = [(p, NOISE_DIRS[sub.name]) for sub in sources.values() for p in find_files(sub, seen=seen)]
        if not files:
            raise VoxflowError(f"{base}: no .wav or .flac files under noise/, music/, babble/ (or MUSAN's speech/)")
    else:
        files = [(p, "rir") for p in find_files(base)]
        if not files:
            raise VoxflowError(f"{base}: no .wav or .flac files found")
    rows = []
    for path, label in files:
        sr, n, _ = audio_info(path)
        rows.append({"path": str(path.resolve()), "kind": label, "sample_rate": sr, "num_samples": n})
    return pd.DataFrame(rows).sort_values("path", ignore_index=True)  # the same table however it is linked


IMPORT_FORMATS = ("voxceleb", "kaldi", "wespeaker", "cnceleb")


def import_corpus(path: str | os.PathLike, fmt: str = "voxceleb", corpus: str = "", **options) -> pd.DataFrame:
    """Utterances manifest of a local corpus in one of IMPORT_FORMATS (options go to that importer)."""
    speaker_list = options.pop("speaker_list", None)
    if speaker_list and fmt != "cnceleb":
        raise VoxflowError(f"{path}: speaker_list applies to the cnceleb format only, not {fmt!r}")
    if fmt == "voxceleb":
        return import_voxceleb_dir(path, corpus=corpus, **options)
    if fmt == "cnceleb":
        return import_cnceleb_dir(path, corpus=corpus, speaker_list=speaker_list or None, **options)
    if fmt == "kaldi":
        return import_kaldi_dir(path, corpus=corpus, **options)
    if fmt == "wespeaker":
        return import_wespeaker_list(path, corpus=corpus, **options)
    raise VoxflowError(f"unknown corpus format {fmt!r} for {path}; known: {list(IMPORT_FORMATS)}")


def _by_stem(files: list[Path], what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            raise VoxflowError(f"{f}: {what} name {f.stem!r} also used by {out[f.stem]}")
        out[f.stem] = f
    return out


def _name_sample(names) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def import_diarization_dir(audio_dir: str | os.PathLike, rttm_dir: str | os.PathLike,
                           uem_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Table of diarization recordings: recording_id, path, rttm_path, uem_path, sample_rate, num_samples, duration_s.

    Audio (``*.wav``/``*.flac`` under ``audio_dir``) and references (``*.rttm`` under ``rttm_dir``)
    are paired by file name stem; a recording without RTTM, an RTTM without audio, or an RTTM
    whose SPEAKER lines name another file id is an error. ``uem_dir`` is a directory of
    ``<recording>.uem`` files or one UEM file covering every recording (uem_path is then that file).
    """
    from voxflow.diarize.rttm import read_rttm, read_uem

    audio_root, rttm_root = Path(audio_dir), Path(rttm_dir)
    for d, what in ((audio_root, "audio"), (rttm_root, "RTTM")):
        if not d.is_dir():
            raise VoxflowError(f"{d}: {what} directory not found")
    audio = _by_stem(find_files(audio_root), "audio file")
    rttms = _by_stem(find_files(rttm_root, (".rttm",)), "RTTM file")
    if not audio:
        raise VoxflowError(f"{audio_root}: no .wav or .flac files found")
    no_rttm, no_audio = set(audio) - set(rttms), set(rttms) - set(audio)
    if no_rttm:
        raise VoxflowError(f"{rttm_root}: no RTTM for {len(no_rttm)} recording(s) of {audio_root}: "
                           f"{_name_sample(no_rttm)}")
    if no_audio:
        raise VoxflowError(f"{audio_root}: no audio for {len(no_audio)} RTTM file(s) of {rttm_root}: "
                           f"{_name_sample(no_audio)}")
    uems: dict[str, Path] = {}
    if uem_dir is not None and str(uem_dir):
        uem_root = Path(uem_dir)
        if uem_root.is_file():
            covered = set(read_uem(uem_root)["file_id"])
            missing = set(audio) - covered
            if missing:
                raise VoxflowError(f"{uem_root}: no UEM region for {len(missing)} recording(s): "
                                   f"{_name_sample(missing)}")
            uems = {rec: uem_root for rec in audio}
        elif uem_root.is_dir():
            uems = _by_stem(find_files(uem_root, (".uem",)), "UEM file")
            missing = set(audio) - set(uems)
            if missing:
                raise VoxflowError(f"{uem_root}: no UEM file for {len(missing)} recording(s): {_name_sample(missing)}")
            for rec, path in uems.items():
                if rec in audio:
                    read_uem(path)  # parse errors name the file and line
        else:
            raise VoxflowError(f"{uem_root}: UEM directory or file not found")
    rows = []
    for rec in sorted(audio):
        ids = set(read_rttm(rttms[rec])["file_id"])
        if ids - {rec}:
            raise VoxflowError(f"{rttms[rec]}: SPEAKER lines name file id(s) {sorted(ids - {rec})}, "
                               f"expected {rec!r} (the file name)")
        sr, n, _ = audio_info(audio[rec])
        rows.append({"recording_id": rec, "path": str(audio[rec].resolve()), "rttm_path": str(rttms[rec].resolve()),
                     "uem_path": str(uems[rec].resolve()) if rec in uems else None,
                     "sample_rate": sr, "num_samples": n, "duration_s": n / sr})
    return pd.DataFrame(rows)
