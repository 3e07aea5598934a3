"""Checkpoints: atomic writes, weights-only loading, fallback to the newest good one."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from voxflow.errors import VoxflowError
from voxflow.utils.atomic import atomic_path

log = logging.getLogger(__name__)
_EPOCH_RE = re.compile(r"epoch_(\d+)\.pt$")


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` (tensors, numbers, strings, dicts, lists) atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; a corrupt or truncated file is a VoxflowError naming it."""
    p = Path(path)
    if not p.is_file():
        raise VoxflowError(f"{p}: checkpoint not found")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, pickle errors, EOFError, zipfile errors...
        raise VoxflowError(f"{p}: corrupt or truncated checkpoint ({type(exc).__name__}: {exc})") from exc


def epoch_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(epoch, path) of every ``epoch_N.pt`` in ``directory``, oldest first."""
    d = Path(directory)
    found = [(int(m.group(1)), p) for p in d.glob("epoch_*.pt") if (m := _EPOCH_RE.search(p.name))]
    return sorted(found)


def latest_good_checkpoint(directory: str | os.PathLike) -> tuple[int, dict] | None:
    """The newest epoch checkpoint that loads; corrupt ones are reported and skipped."""
    for epoch, path in reversed(epoch_checkpoints(directory)):
        try:
            return epoch, load_checkpoint(path)
        except VoxflowError as exc:
            log.warning("skipping %s; falling back to an earlier checkpoint", exc)
    return None
