"""Checkpoint averaging (Wespeaker averages the last N epochs' weights) and the choice of the epochs: the last N,
or the N of lowest validation EER (Kaseva & Kurimo keep the best epoch)."""

from __future__ import annotations

import math
import os

import pandas as pd
import torch

from voxflow.errors import VoxflowError
from voxflow.train.checkpoint import load_checkpoint


def _mean_state(states: list[dict], part: str) -> dict:
    """The mean of the floating-point tensors of ``part`` over ``states``; anything else from the last."""
    out = {}
    for key, value in states[-1][part].items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            out[key] = torch.stack([s[part][key].float() for s in states]).mean(0).to(value.dtype)
        else:
            out[key] = value.clone() if isinstance(value, torch.Tensor) else value
    return out


def average_checkpoints(paths: list[str | os.PathLike], head: bool = False) -> dict:
    """A stage snapshot whose ``model`` weights (and with ``head`` the class weights too) are the mean of those
    in ``paths``.

    Floating-point tensors are averaged; integer buffers (batch-norm counters) and non-tensor state are taken
    from the last checkpoint, as are the configs (and the head unless ``head``).
    """
    if not paths:
        raise VoxflowError("average_checkpoints: no checkpoint to average")
    states = [load_checkpoint(p) for p in paths]
    last = states[-1]
    parts = ("model", "head") if head else ("model",)
    for part in parts:
        keys = set(last[part])
        for path, state in zip(paths, states):
            if set(state[part]) != keys or any(state[part][k].shape != v.shape for k, v in last[part].items()
                                               if isinstance(v, torch.Tensor)):
                raise VoxflowError(f"{path}: its {part} weights do not match {paths[-1]} (different architecture)")
    out = {k: v for k, v in last.items() if k in ("head", "model_cfg", "data_cfg", "head_cfg", "num_classes",
                                                   "stage_cfg")}
    for part in parts:
        out[part] = _mean_state(states, part)
    out["averaged_from"] = [str(p) for p in paths]
    return out


def select_epochs(epoch_log: pd.DataFrame, select: str, n: int, where: str = "train_log") -> list[int]:
    """The epochs to average, ascending: the last ``n`` (``select="last"``) or the ``n`` with the lowest
    ``val_eer`` (``select="best"``; of equal EERs the later epoch). Fewer epochs than ``n``: all of them."""
    if n < 1:
        raise VoxflowError(f"{where}: the number of epochs to average must be at least 1, got {n}")
    if "epoch" not in epoch_log.columns or epoch_log.empty:
        raise VoxflowError(f"{where}: no epoch logged")
    epochs = [int(e) for e in epoch_log["epoch"]]
    if select == "last":
        return sorted(epochs)[-n:]
    if select != "best":
        raise VoxflowError(f"{where}: select must be 'last' or 'best', got {select!r}")
    if "val_eer" not in epoch_log.columns:
        raise VoxflowError(f"{where}: select: best needs the validation EER per epoch (column val_eer), which this "
                           "stage did not log; set the config's validation.corpus")
    scored = [(float(eer), -e) for e, eer in zip(epochs, epoch_log["val_eer"])
              if eer is not None and math.isfinite(float(eer))]
    if not scored:
        raise VoxflowError(f"{where}: select: best, but no epoch has a validation EER")
    return sorted(-neg for _, neg in sorted(scored)[:n])
