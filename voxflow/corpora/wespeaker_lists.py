"""Wespeaker data lists: raw lists (JSON lines ``{"key", "wav", "spk"}``) and shard lists (one tar per line).

Keys are utterance ids; a trailing audio extension (Wespeaker's VoxCeleb keys end in ``.wav``)
is dropped on import so ids match the VoxCeleb importer and trial lists.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from pathlib import Path

import pandas as pd

from voxflow.audio.io import audio_info
from voxflow.corpora.archive_members import member_path
from voxflow.corpora.import_checks import check_audio, session_of
from voxflow.errors import VoxflowError
from voxflow.utils.atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".m4a")
_SHARD_AUDIO = ("wav", "flac")


def strip_audio_ext(key: str) -> str:
    """``key`` without a trailing .wav/.flac/.m4a (case-insensitive)."""
    lower = key.lower()
    for ext in AUDIO_EXTENSIONS:
        if lower.endswith(ext):
            return key[: -len(ext)]
    return key


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise VoxflowError(f"{path}: Wespeaker list not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise VoxflowError(f"{path}: cannot read Wespeaker list: {exc}") from exc
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _raw_items(path: Path, lines: list[tuple[int, str]]) -> list[tuple[str, str, Path, int]]:
    """(utt_id, spk, audio path, line_no) of each raw-list line."""
    items = []
    for line_no, line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VoxflowError(f"{path}:{line_no}: not a JSON object: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise VoxflowError(f"{path}:{line_no}: expected a JSON object with keys key, wav, spk")
        missing = [k for k in ("key", "wav", "spk") if not isinstance(obj.get(k), str) or not obj.get(k)]
        if missing:
            raise VoxflowError(f"{path}:{line_no}: key(s) {missing} missing or not non-empty strings")
        wav = Path(obj["wav"])
        wav = wav if wav.is_absolute() else path.parent / wav
        items.append((strip_audio_ext(obj["key"]), obj["spk"], wav, line_no))
    return items


def _shard_items(path: Path, lines: list[tuple[int, str]], audio_dir: Path | None) -> list[tuple[str, str, Path, int]]:
    """Unpack the audio of every shard under ``audio_dir``; (utt_id, spk, audio path, line_no) per utterance."""
    if audio_dir is None:
        raise VoxflowError(f"{path}: is a shard list; give audio_dir (--audio-dir) to unpack its audio into")
    items = []
    for line_no, line in lines:
        if "://" in line:
            raise VoxflowError(f"{path}:{line_no}: shard {line!r} is a URL; download the shards first")
        shard = Path(line) if Path(line).is_absolute() else path.parent / line
        if not shard.is_file():
            raise VoxflowError(f"{path}:{line_no}: shard {shard} not found")
        items.extend((utt, spk, audio, line_no) for utt, spk, audio in _unpack_shard(shard, audio_dir))
    return items


def _unpack_shard(shard: Path, audio_dir: Path) -> list[tuple[str, str, Path]]:
    """Members ``<key>.spk`` + ``<key>.wav|flac`` of one Wespeaker shard; audio written to audio_dir/<utt>.<ext>."""
    speakers: dict[str, str] = {}
    audio: dict[str, Path] = {}
    try:
        with tarfile.open(shard, mode="r:*") as tf:
            for m in tf:
                if not m.isreg():
                    continue
                key, _, postfix = m.name.rpartition(".")
                if not key or postfix not in ("spk", *_SHARD_AUDIO):
                    continue
                rel = member_path(strip_audio_ext(key))
                if isinstance(rel, str):
                    raise VoxflowError(f"{shard}: member {m.name!r} cannot be unpacked: {rel}")
                utt = str(rel)
                data = tf.extractfile(m).read()
                if postfix == "spk":
                    speakers[utt] = data.decode("utf-8").strip()
                    continue
                out = audio_dir / f"{utt}.{postfix}"
                if not out.is_file():
                    with atomic_path(out) as tmp:
                        tmp.write_bytes(data)
                audio[utt] = out
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
        raise VoxflowError(f"{shard}: cannot read Wespeaker shard: {exc}") from exc
    for utt in sorted(set(speakers) ^ set(audio)):
        what = "speaker (.spk)" if utt not in speakers else "audio (.wav/.flac)"
        raise VoxflowError(f"{shard}: utterance {utt!r} has no {what} member")
    return [(utt, speakers[utt], audio[utt]) for utt in sorted(audio)]


def import_wespeaker_list(path: str | os.PathLike, audio_dir: str | os.PathLike | None = None,
                          sample_rate: int = 16000, on_other_rate: str = "resample", min_duration_s: float = 0.0,
                          corpus: str = "") -> pd.DataFrame:
    """Utterances manifest of a Wespeaker raw list, or of a shard list (its audio unpacked into ``audio_dir``).

    The kind is detected from the first line (a JSON object means a raw list). Relative paths
    are resolved against the list's directory. Same columns as ``import_voxceleb_dir``.
    """
    p = Path(path)
    lines = _lines(p)
    if not lines:
        raise VoxflowError(f"{p}: Wespeaker list is empty")
    if lines[0][1].startswith("{"):
        items = _raw_items(p, lines)
    else:
        items = _shard_items(p, lines, Path(audio_dir) if audio_dir is not None else None)
    rows, first_line = [], {}
    for utt, spk, audio, line_no in items:
        if utt in first_line:
            raise VoxflowError(f"{p}:{line_no}: utterance {utt!r} repeats line {first_line[utt]}")
        first_line[utt] = line_no
        if not audio.is_file():
            raise VoxflowError(f"{p}:{line_no}: audio file {audio} of {utt!r} not found")
        sr, n, _ = audio_info(audio)
        check_audio(str(audio), sr, n / sr, sample_rate, on_other_rate, min_duration_s)
        rows.append({"utt_id": utt, "spk_id": spk, "session_id": session_of(utt, spk, utt),
                     "path": str(audio.resolve()), "sample_rate": sr, "num_samples": n, "duration_s": n / sr,
                     "corpus": corpus})
    table = pd.DataFrame(rows)
    return table.sort_values("utt_id", key=lambda s: s.map(lambda u: tuple(u.split("/"))),
                             kind="stable").reset_index(drop=True)


def export_wespeaker_list(utterances: pd.DataFrame, path: str | os.PathLike, key_suffix: str = "") -> Path:
    """Write an utterances table as a Wespeaker raw list (one ``{"key", "wav", "spk"}`` JSON object a line).

    ``key_suffix`` (e.g. ``".wav"``) is appended to each key, as in Wespeaker's VoxCeleb recipes.
    A table with segments (start_s/end_s) cannot be expressed as a raw list and is refused.
    """
    out = Path(path)
    missing = [c for c in ("utt_id", "spk_id", "path") if c not in utterances.columns]
    if missing:
        raise VoxflowError(f"{out}: utterances table lacks column(s) {missing}; has {list(utterances.columns)}")
    if "start_s" in utterances.columns and utterances["start_s"].notna().any():
        raise VoxflowError(f"{out}: the table has segments (start_s/end_s), which a Wespeaker raw list cannot "
                           "express; export it as a Kaldi directory instead")
    dup = utterances["utt_id"].duplicated()
    if dup.any():
        raise VoxflowError(f"{out}: utterance id {utterances.loc[dup, 'utt_id'].iloc[0]!r} occurs more than once")
    lines = [json.dumps({"key": f"{u}{key_suffix}", "wav": str(w), "spk": str(s)}, ensure_ascii=False)
             for u, w, s in zip(utterances["utt_id"].astype(str), utterances["path"], utterances["spk_id"])]
    write_text_atomic(out, "".join(line + "\n" for line in lines))
    return out
