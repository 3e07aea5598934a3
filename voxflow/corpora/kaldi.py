"""Kaldi data directories (wav.scp, utt2spk, spk2utt, segments) to and from utterance manifests."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from voxflow.audio.io import audio_info, decode_audio, write_audio
from voxflow.corpora.import_checks import check_audio, session_of
from voxflow.corpora.text_tables import read_keyed_table
from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)

SEGMENT_TOLERANCE_S = 0.05  # a segment may end this much past its recording (rounding in segments files)
_ARK_OFFSET = re.compile(r"\.ark:\d+$")


def _read_wav_scp(path: Path) -> dict[str, tuple[str, int]]:
    """{recording: (rest of the line: a path or a ``command |``, line_no)}."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise VoxflowError(f"{path}: cannot read wav.scp: {exc}") from exc
    out: dict[str, tuple[str, int]] = {}
    for line_no, line in enumerate(lines, start=1):
        fields = line.strip().split(maxsplit=1)
        if not fields:
            continue
        if len(fields) < 2:
            raise VoxflowError(f"{path}:{line_no}: expected '<recording> <path or command |>': {line!r}")
        rec, value = fields[0], fields[1].strip()
        if rec in out:
            raise VoxflowError(f"{path}:{line_no}: recording {rec!r} repeats line {out[rec][1]}")
        out[rec] = (value, line_no)
    return out


def _is_pipe(value: str) -> bool:
    return value.endswith("|")


def _safe_relative(rec: str) -> bool:
    parts = rec.split("/")
    return not rec.startswith("/") and ".." not in parts and "" not in parts and "\x00" not in rec


def _run_pipe(rec: str, command: str, where: str, out: Path, cwd: Path, timeout_s: float) -> None:
    """Run a wav.scp pipe command and store the audio it prints as 16-bit WAV at ``out``."""
    try:
        proc = subprocess.run(command[:-1].strip(), shell=True, cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise VoxflowError(f"{where}: command for recording {rec!r} ran longer than {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip()[-500:]
        raise VoxflowError(f"{where}: command for recording {rec!r} failed with exit code {proc.returncode}: {tail}")
    wav, sr = decode_audio(proc.stdout, f"{where} (output of the command for {rec!r})")
    write_audio(out, wav, sr)


def _audio_paths(wav_scp: Path, entries: dict[str, tuple[str, int]], base: Path, allow_pipes: bool,
                 audio_dir: Path | None, jobs: int, timeout_s: float) -> dict[str, Path]:
    """Local audio file of every recording, running pipe commands (when allowed) into ``audio_dir``."""
    paths: dict[str, Path] = {}
    pipes: list[tuple[str, str, str, Path]] = []
    for rec, (value, line_no) in entries.items():
        where = f"{wav_scp}:{line_no}"
        if _is_pipe(value):
            if not allow_pipes:
                raise VoxflowError(f"{where}: recording {rec!r} is a pipe command ({value!r}); pipes are refused "
                                   "unless allowed (allow_pipes=True / --allow-pipes runs them); or convert the "
                                   "audio to files first")
            if not _safe_relative(rec):
                raise VoxflowError(f"{where}: recording id {rec!r} cannot name an output file (absolute, '..' or "
                                   "empty component)")
            out = (audio_dir or wav_scp.parent / "audio_from_pipes") / f"{rec}.wav"
            paths[rec] = out
            if not out.is_file():  # written atomically: present means complete
                pipes.append((rec, value, where, out))
            continue
        if value == "-":
            raise VoxflowError(f"{where}: recording {rec!r} reads standard input ({value!r}); not supported")
        if _ARK_OFFSET.search(value):
            raise VoxflowError(f"{where}: recording {rec!r} is an archive offset ({value!r}); Kaldi ark audio is "
                               "not supported, export it to wav files first (e.g. with wav-copy)")
        p = Path(value)
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise VoxflowError(f"{where}: audio file {p} of recording {rec!r} not found")
        paths[rec] = p.resolve()
    if pipes:
        log.info("%s: running %d pipe command(s)", wav_scp, len(pipes))
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(_run_pipe, rec, cmd, where, out, base, timeout_s) for rec, cmd, where, out in pipes]
            for f in futures:
                f.result()
    return {rec: p.resolve() for rec, p in paths.items()}


def _check_spk2utt(path: Path, utt2spk: dict[str, str], utt2spk_path: Path) -> None:
    table = read_keyed_table(path, 2, None, "'<speaker> <utterance> ...'", "spk2utt")
    seen: set[str] = set()
    for spk, (utts, line_no) in table.items():
        for utt in utts:
            if utt in seen:
                raise VoxflowError(f"{path}:{line_no}: utterance {utt!r} is listed twice")
            seen.add(utt)
            if utt not in utt2spk:
                raise VoxflowError(f"{path}:{line_no}: utterance {utt!r} is not in {utt2spk_path}")
            if utt2spk[utt] != spk:
                raise VoxflowError(f"{path}:{line_no}: utterance {utt!r} under speaker {spk!r}, but {utt2spk_path} "
                                   f"gives speaker {utt2spk[utt]!r}")
    missing = sorted(set(utt2spk) - seen)
    if missing:
        raise VoxflowError(f"{path}: {len(missing)} utterance(s) of {utt2spk_path} are missing, e.g. {missing[0]!r}")


def _read_segments(path: Path, recordings: set[str]) -> dict[str, tuple[str, float, float, int]]:
    table = read_keyed_table(path, 4, 4, "'<utterance> <recording> <start> <end>'", "segments")
    out = {}
    for utt, ((rec, start_s, end_s), line_no) in table.items():
        where = f"{path}:{line_no}"
        try:
            start, end = float(start_s), float(end_s)
        except ValueError:
            raise VoxflowError(f"{where}: start/end {start_s!r} {end_s!r} are not numbers") from None
        if rec not in recordings:
            raise VoxflowError(f"{where}: recording {rec!r} of utterance {utt!r} is not in wav.scp")
        if start < 0 or not (end > start or end == -1):
            raise VoxflowError(f"{where}: segment needs 0 <= start < end (or end -1 for the end of the "
                               f"recording), got {start} {end}")
        out[utt] = (rec, start, end, line_no)
    return out


def _parts_key(ids: pd.Series) -> pd.Series:
    return ids.map(lambda u: tuple(u.split("/")))


def import_kaldi_dir(path: str | os.PathLike, allow_pipes: bool = False, audio_dir: str | os.PathLike | None = None,
                     root: str | os.PathLike | None = None, sample_rate: int = 16000, on_other_rate: str = "resample",
                     min_duration_s: float = 0.0, corpus: str = "", jobs: int = 1,
                     pipe_timeout_s: float = 600.0) -> pd.DataFrame:
    """Utterances manifest of a Kaldi data directory, with the columns of ``import_voxceleb_dir``.

    wav.scp entries are file paths (relative ones resolved against ``root``, default the
    directory itself) or, only with ``allow_pipes``, ``command |`` lines: each command is run
    through the shell (in ``root``) and its audio stored as ``<audio_dir>/<recording>.wav``
    (default ``<dir>/audio_from_pipes``; files already there are reused). utt2spk is required;
    spk2utt, when present, must agree with it. With a segments file each segment is an
    utterance of its recording, with extra columns recording_id, start_s, end_s (an end of -1 is
    the end of the recording). Session ids are ``spk/session`` for ids shaped
    ``spk/session/utt``, otherwise the recording id.
    """
    d = Path(path)
    if not d.is_dir():
        raise VoxflowError(f"{d}: Kaldi data directory not found")
    wav_scp, utt2spk_path = d / "wav.scp", d / "utt2spk"
    for f in (wav_scp, utt2spk_path):
        if not f.is_file():
            raise VoxflowError(f"{f}: required file of the Kaldi data directory not found")
    base = Path(root) if root is not None else d
    entries = _read_wav_scp(wav_scp)
    if not entries:
        raise VoxflowError(f"{wav_scp}: no recordings listed")
    utt2spk_lines = read_keyed_table(utt2spk_path, 2, 2, "'<utterance> <speaker>'", "utt2spk")
    utt2spk = {u: fields[0] for u, (fields, _) in utt2spk_lines.items()}
    if (d / "spk2utt").is_file():
        _check_spk2utt(d / "spk2utt", utt2spk, utt2spk_path)
    segments = _read_segments(d / "segments", set(entries)) if (d / "segments").is_file() else None
    listed = segments if segments is not None else entries
    listed_path = d / "segments" if segments is not None else wav_scp
    for utt, (_, line_no) in utt2spk_lines.items():
        if utt not in listed:
            raise VoxflowError(f"{utt2spk_path}:{line_no}: utterance {utt!r} is not in {listed_path}")
    extra = sorted(set(listed) - set(utt2spk))
    if extra:
        line_no = listed[extra[0]][-1]
        raise VoxflowError(f"{listed_path}:{line_no}: utterance {extra[0]!r} has no speaker in {utt2spk_path} "
                           f"({len(extra)} such)")
    used = {v[0] for v in segments.values()} if segments is not None else set(entries)
    unused = sorted(set(entries) - used)
    if unused:
        log.warning("%s: %d recording(s) have no segment and are ignored, e.g. %r", wav_scp, len(unused), unused[0])
    audio = _audio_paths(wav_scp, {r: entries[r] for r in entries if r in used}, base, allow_pipes,
                         Path(audio_dir) if audio_dir is not None else None, jobs, pipe_timeout_s)
    info = {rec: audio_info(p)[:2] for rec, p in audio.items()}
    rows = []
    for utt, spk in utt2spk.items():
        if segments is None:
            rec = utt
            sr, n = info[rec]
            duration = n / sr
            where = str(audio[rec])
        else:
            rec, start, end, line_no = segments[utt]
            where = f"{d / 'segments'}:{line_no}"
            sr, total = info[rec]
            rec_dur = total / sr
            if end == -1:
                end = rec_dur
            if start >= rec_dur or end > rec_dur + SEGMENT_TOLERANCE_S:
                raise VoxflowError(f"{where}: segment {start}-{end} s of utterance {utt!r} lies beyond the end of "
                                   f"recording {rec!r} ({rec_dur:.3f} s, {audio[rec]})")
            end = min(end, rec_dur)
            n = int(round(end * sr)) - int(round(start * sr))
            duration = end - start
        check_audio(where, sr, duration, sample_rate, on_other_rate, min_duration_s)
        row = {"utt_id": utt, "spk_id": spk, "session_id": session_of(utt, spk, rec), "path": str(audio[rec]),
               "sample_rate": sr, "num_samples": n, "duration_s": duration, "corpus": corpus}
        if segments is not None:
            row.update(recording_id=rec, start_s=start, end_s=end)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("utt_id", key=_parts_key, kind="stable").reset_index(drop=True)


def _check_ids(values: pd.Series, column: str, out: Path) -> None:
    text = values.astype(str)
    bad = text.str.contains(r"\s", regex=True) | (text == "") | values.isna()
    if bad.any():
        raise VoxflowError(f"{out}: {column} {values[bad].iloc[0]!r} is empty or contains whitespace; "
                           "Kaldi ids cannot")


def _recording_ids(df: pd.DataFrame) -> pd.Series:
    """A recording id per row: the recording_id column, else each path without suffix relative to their common root."""
    if "recording_id" in df.columns and df["recording_id"].notna().all():
        return df["recording_id"].astype(str)
    paths = df["path"].astype(str)
    unique = sorted(set(paths))
    common = os.path.commonpath(unique) if len(unique) > 1 else os.path.dirname(unique[0])
    names = {p: str(Path(os.path.relpath(p, common)).with_suffix("")) for p in unique}
    return paths.map(names)


def _atomic_dir(out: Path, files: dict[str, str]) -> None:
    """Write ``files`` (name -> text) as the directory ``out``, replacing an earlier Kaldi export there."""
    if out.exists() and not out.is_dir():
        raise VoxflowError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "wav.scp").is_file():
        raise VoxflowError(f"{out}: exists and is not a Kaldi data directory (no wav.scp); refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for name, text in files.items():
            (tmp / name).write_text(text)
        os.chmod(tmp, 0o755)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_kaldi_dir(utterances: pd.DataFrame, out_dir: str | os.PathLike) -> Path:
    """Write an utterances table as a Kaldi data directory: wav.scp, utt2spk, spk2utt, utt2dur, and
    segments when the table has start_s/end_s (rows without them become whole-recording segments).

    Files are sorted in C order as Kaldi requires; the directory is replaced atomically.
    """
    out = Path(out_dir)
    missing = [c for c in ("utt_id", "spk_id", "path") if c not in utterances.columns]
    if missing:
        raise VoxflowError(f"{out}: utterances table lacks column(s) {missing}; has {list(utterances.columns)}")
    if utterances.empty:
        raise VoxflowError(f"{out}: no utterances to export")
    df = utterances.reset_index(drop=True)
    _check_ids(df["utt_id"], "utterance id", out)
    _check_ids(df["spk_id"], "speaker id", out)
    dup = df["utt_id"].duplicated()
    if dup.any():
        raise VoxflowError(f"{out}: utterance id {df.loc[dup, 'utt_id'].iloc[0]!r} occurs more than once")
    paths = df["path"].astype(str)
    bad = paths.str.contains("\n") | paths.str.rstrip().str.endswith("|") | (paths.str.strip() == "")
    if bad.any():
        raise VoxflowError(f"{out}: path {paths[bad].iloc[0]!r} cannot be written to wav.scp")
    has_segments = {"start_s", "end_s"} <= set(df.columns) and df["start_s"].notna().any()
    df = df.assign(_key=df["utt_id"].astype(str)).sort_values("_key", kind="stable")
    files: dict[str, str] = {}
    if has_segments:
        rec = _recording_ids(df)
        _check_ids(rec, "recording id", out)
        conflict = pd.DataFrame({"rec": rec, "path": paths.loc[df.index]}).drop_duplicates()
        dup_rec = conflict["rec"].duplicated()
        if dup_rec.any():
            raise VoxflowError(f"{out}: recording {conflict.loc[dup_rec, 'rec'].iloc[0]!r} has more than one path")
        wav = dict(zip(conflict["rec"], conflict["path"]))
        starts = df["start_s"].fillna(0.0).astype(float)
        if "duration_s" in df.columns:
            ends = df["end_s"].fillna(starts + df["duration_s"].astype(float)).astype(float)
        else:
            ends = df["end_s"].fillna(-1.0).astype(float)
        files["segments"] = "".join(f"{u} {r} {s:.3f} {e:.3f}\n" if e != -1 else f"{u} {r} {s:.3f} -1\n"
                                    for u, r, s, e in zip(df["_key"], rec, starts, ends))
    else:
        wav = dict(zip(df["_key"], paths.loc[df.index]))
    files["wav.scp"] = "".join(f"{r} {wav[r]}\n" for r in sorted(wav))
    files["utt2spk"] = "".join(f"{u} {s}\n" for u, s in zip(df["_key"], df["spk_id"].astype(str)))
    spk2utt = df.groupby(df["spk_id"].astype(str), sort=True)["_key"].agg(list)
    files["spk2utt"] = "".join(f"{s} {' '.join(utts)}\n" for s, utts in spk2utt.items())
    if "duration_s" in df.columns and df["duration_s"].notna().all():
        files["utt2dur"] = "".join(f"{u} {d:.3f}\n" for u, d in zip(df["_key"], df["duration_s"].astype(float)))
    _atomic_dir(out, files)
    return out
