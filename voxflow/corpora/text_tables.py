"""Whitespace-separated text tables keyed by their first field (Kaldi files, CN-Celeb lists)."""

from __future__ import annotations

import os
from pathlib import Path

from voxflow.errors import VoxflowError


def read_keyed_table(
    path: str | os.PathLike, min_fields: int, max_fields: int | None, fields: str, name: str
) -> dict[str, tuple[list[str], int]]:
    """``key field...`` lines of ``path`` as {key: (the other fields, line number)}, blank lines skipped.

    ``fields`` describes a line (for errors), ``name`` the file. A missing or unreadable file, a line with
    too few or too many fields and a repeated key are errors naming the file (and line).
    """
    p = Path(path)
    if not p.is_file():
        raise VoxflowError(f"{p}: {name} not found")
    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise VoxflowError(f"{p}: cannot read {name}: {exc}") from None
    out: dict[str, tuple[list[str], int]] = {}
    for line_no, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < min_fields or (max_fields is not None and len(parts) > max_fields):
            want = f"{min_fields}" if max_fields == min_fields else f"at least {min_fields}"
            raise VoxflowError(f"{p}:{line_no}: expected {want} fields ({fields}), got {len(parts)}: {line!r}")
        if parts[0] in out:
            raise VoxflowError(f"{p}:{line_no}: {parts[0]!r} repeats line {out[parts[0]][1]}")
        out[parts[0]] = (parts[1:], line_no)
    return out
