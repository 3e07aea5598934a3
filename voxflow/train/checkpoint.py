"""Checkpoints: atomic writes, weights-only loading, fallback to the newest good one, RNG state.

A stage directory holds ``epoch_N.pt`` (after epoch N, kept for averaging and best-epoch selection) and,
within an epoch, ``step_N.pt`` (after global step N, the last two kept; removed at the epoch's end).
"""

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
_STEP_RE = re.compile(r"step_(\d+)\.pt$")


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


def _numbered(directory: str | os.PathLike, pattern: re.Pattern, glob: str) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in Path(directory).glob(glob) if (m := pattern.fullmatch(p.name))]
    return sorted(found)


def epoch_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(epoch, path) of every ``epoch_N.pt`` in ``directory``, oldest first."""
    return _numbered(directory, _EPOCH_RE, "epoch_*.pt")


def step_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every ``step_N.pt`` in ``directory``, oldest first."""
    return _numbered(directory, _STEP_RE, "step_*.pt")


def remove_step_checkpoints(directory: str | os.PathLike, keep: int = 0) -> None:
    """Delete all but the newest ``keep`` step checkpoints."""
    found = step_checkpoints(directory)
    for _, path in found[: max(len(found) - keep, 0)]:
        path.unlink(missing_ok=True)


def latest_good_checkpoint(directory: str | os.PathLike) -> tuple[int, dict] | None:
    """The newest epoch checkpoint that loads; corrupt ones are reported and skipped."""
    for epoch, path in reversed(epoch_checkpoints(directory)):
        try:
            return epoch, load_checkpoint(path)
        except VoxflowError as exc:
            log.warning("skipping %s; falling back to an earlier checkpoint", exc)
    return None


def _newest_good(found: list[tuple[int, Path]]) -> tuple[Path, dict] | None:
    for _, path in reversed(found):
        try:
            return path, load_checkpoint(path)
        except VoxflowError as exc:
            log.warning("skipping %s; falling back to an earlier checkpoint", exc)
    return None


def latest_resume_state(directory: str | os.PathLike) -> tuple[Path, dict] | None:
    """The good checkpoint (epoch or step) with the most optimisation steps (``state["step"]``).

    Corrupt or truncated files are reported (named) and skipped in favour of the previous good one.
    """
    candidates = [c for c in (_newest_good(step_checkpoints(directory)), _newest_good(epoch_checkpoints(directory)))
                  if c is not None]
    return max(candidates, key=lambda c: int(c[1].get("step", -1)), default=None)


def rng_state(device: torch.device) -> dict:
    """The torch random generator state of the CPU and, on CUDA, of ``device``."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
