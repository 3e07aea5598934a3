"""NIST RTTM (speaker segments) and UEM (scored regions) files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from voxflow.errors import VoxflowError
from voxflow.utils.atomic import write_text_atomic

RTTM_COLUMNS = ["file_id", "start", "duration", "speaker"]
UEM_COLUMNS = ["file_id", "start", "end"]


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise VoxflowError(f"{path}: {what} file not found")
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise VoxflowError(f"{path}: cannot read {what} file: {exc}") from exc


def _time(value: str, path: Path, line_no: int, name: str, line: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise VoxflowError(f"{path}:{line_no}: {name} {value!r} is not a number: {line!r}") from None
    if not math.isfinite(t):
        raise VoxflowError(f"{path}:{line_no}: {name} {value!r} is not finite: {line!r}")
    return t


def read_rttm(path: str | os.PathLike) -> pd.DataFrame:
    """Read the SPEAKER lines of an RTTM file as DataFrame(file_id, start, duration, speaker).

    Other record types (SPKR-INFO, LEXEME, ...), ``;;`` comments and blank lines are skipped.
    A SPEAKER line with fewer than 8 fields, a non-numeric or negative time, or a negative
    duration raises VoxflowError naming the file and line.
    """
    p = Path(path)
    files, starts, durs, spks = [], [], [], []
    for line_no, line in enumerate(_read_lines(p, "RTTM"), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";;") or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise VoxflowError(
                f"{p}:{line_no}: SPEAKER line needs at least 8 fields "
                f"'SPEAKER <file> <chan> <start> <dur> <NA> <NA> <speaker>', got {len(fields)}: {line!r}"
            )
        start = _time(fields[3], p, line_no, "start", line)
        dur = _time(fields[4], p, line_no, "duration", line)
        if start < 0 or dur < 0:
            raise VoxflowError(f"{p}:{line_no}: start and duration must be >= 0: {line!r}")
        files.append(fields[1])
        starts.append(start)
        durs.append(dur)
        spks.append(fields[7])
    return pd.DataFrame(
        {
            "file_id": pd.Series(files, dtype="str"),
            "start": np.asarray(starts, dtype=np.float64),
            "duration": np.asarray(durs, dtype=np.float64),
            "speaker": pd.Series(spks, dtype="str"),
        }
    )


def _check_frame(df: pd.DataFrame, columns: list[str], path, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise VoxflowError(f"{path}: {what} table lacks column(s) {missing}; has {list(df.columns)}")


def write_rttm(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write DataFrame(file_id, start, duration, speaker) as RTTM atomically, sorted by file then start."""
    _check_frame(df, RTTM_COLUMNS, path, "RTTM")
    out = df[RTTM_COLUMNS].sort_values(["file_id", "start"], kind="stable")
    for col in ("file_id", "speaker"):
        names = out[col].astype(str)
        bad = names.str.contains(r"\s", regex=True) | (names == "")
        if bad.any():
            raise VoxflowError(f"{path}: {col} {names[bad].iloc[0]!r} is empty or contains whitespace")
    start = out["start"].to_numpy(np.float64)
    dur = out["duration"].to_numpy(np.float64)
    if not (np.isfinite(start).all() and np.isfinite(dur).all()) or (start < 0).any() or (dur < 0).any():
        raise VoxflowError(f"{path}: RTTM start/duration must be finite and >= 0")
    lines = [
        f"SPEAKER {f} 1 {s:.3f} {d:.3f} <NA> <NA> {k} <NA> <NA>\n"
        for f, s, d, k in zip(out["file_id"].astype(str), start, dur, out["speaker"].astype(str))
    ]
    write_text_atomic(path, "".join(lines))


def read_uem(path: str | os.PathLike) -> pd.DataFrame:
    """Read a UEM file (``<file> <chan> <start> <end>`` per line) as DataFrame(file_id, start, end)."""
    p = Path(path)
    files, starts, ends = [], [], []
    for line_no, line in enumerate(_read_lines(p, "UEM"), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        if len(fields) != 4:
            raise VoxflowError(f"{p}:{line_no}: UEM line needs 4 fields '<file> <chan> <start> <end>': {line!r}")
        start = _time(fields[2], p, line_no, "start", line)
        end = _time(fields[3], p, line_no, "end", line)
        if start < 0 or end < start:
            raise VoxflowError(f"{p}:{line_no}: UEM needs 0 <= start <= end: {line!r}")
        files.append(fields[0])
        starts.append(start)
        ends.append(end)
    return pd.DataFrame(
        {
            "file_id": pd.Series(files, dtype="str"),
            "start": np.asarray(starts, dtype=np.float64),
            "end": np.asarray(ends, dtype=np.float64),
        }
    )
