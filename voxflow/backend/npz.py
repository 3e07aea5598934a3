"""Model parameters as .npz files: atomic writes, and reads that check the file's ``kind``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from voxflow.errors import VoxflowError
from voxflow.utils.atomic import atomic_path


def save_npz(path: str | os.PathLike, kind: str, arrays: dict) -> None:
    """Write ``arrays`` plus a ``kind`` tag to ``path`` atomically (no '.npz' appended)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, kind=np.array(kind), **arrays)


def load_npz(path: str | os.PathLike, kind: str, required: tuple[str, ...] = ()) -> dict:
    """Read the arrays of a ``kind`` .npz file, checking the tag and the ``required`` keys."""
    p = Path(path)
    if not p.is_file():
        raise VoxflowError(f"{p}: {kind} model file not found")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise VoxflowError(f"{p}: not a readable .npz file: {exc}") from exc
    if str(arrays.get("kind", "")) != kind:
        raise VoxflowError(f"{p}: key 'kind' is {str(arrays.get('kind'))!r}, expected {kind!r}")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise VoxflowError(f"{p}: {kind} file lacks key(s) {missing}")
    return arrays
