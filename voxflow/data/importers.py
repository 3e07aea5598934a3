"""Local corpora to manifests: VoxCeleb-layout directories, augmentation sets, merged training sets."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from voxflow.audio.io import audio_info
from voxflow.errors import VoxflowError

AUDIO_SUFFIXES = (".wav", ".flac")


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def import_voxceleb_dir(root: str | os.PathLike, sample_rate: int = 16000, on_other_rate: str = "resample",
                        min_duration_s: float = 0.0, corpus: str = "") -> pd.DataFrame:
    """Manifest of a directory in VoxCeleb layout ``speaker/session/utterance.{wav,flac}``.

    utt_id is the relative path without extension (as in VoxCeleb trial lists). Each file's header is read:
    unreadable, empty or too-short files, and other sample rates when ``on_other_rate == "error"``,
    are errors naming the file.
    """
    base = Path(root)
    if not base.is_dir():
        raise VoxflowError(f"{base}: corpus directory not found")
    rows = []
    for path in _audio_files(base):
        rel = path.relative_to(base)
        if len(rel.parts) != 3:
            raise VoxflowError(f"{path}: not in VoxCeleb layout speaker/session/utterance (under {base})")
        sr, n, _ = audio_info(path)
        duration = n / sr
        if sr != sample_rate and on_other_rate == "error":
            raise VoxflowError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz "
                               "(set audio.on_other_rate: resample to convert)")
        if duration < min_duration_s:
            raise VoxflowError(f"{path}: {duration:.2f} s long, shorter than audio.min_duration_s={min_duration_s}")
        spk, session = rel.parts[0], rel.parts[1]
        rows.append({"utt_id": str(rel.with_suffix("")), "spk_id": spk, "session_id": f"{spk}/{session}",
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


def import_augmentation_dir(root: str | os.PathLike, kind: str) -> pd.DataFrame:
    """Noise (MUSAN layout: noise/, music/, babble/ sub-directories) or RIR files as a table with 'kind'."""
    if not str(root):
        return pd.DataFrame(columns=["path", "kind", "sample_rate", "num_samples"])
    base = Path(root)
    if not base.is_dir():
        raise VoxflowError(f"{base}: augmentation directory not found")
    rows = []
    for path in _audio_files(base):
        sr, n, _ = audio_info(path)
        label = path.relative_to(base).parts[0] if kind == "noise" else "rir"
        if kind == "noise" and label not in ("noise", "music", "babble"):
            raise VoxflowError(f"{path}: noise files must lie under noise/, music/ or babble/ in {base}")
        rows.append({"path": str(path.resolve()), "kind": label, "sample_rate": sr, "num_samples": n})
    if not rows:
        raise VoxflowError(f"{base}: no .wav or .flac files found")
    return pd.DataFrame(rows)
