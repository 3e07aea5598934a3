"""Checkpoint averaging (Wespeaker averages the last N epochs' weights) and the choice of the epochs: the last N,
or the N of lowest validation EER (Kaseva & Kurimo keep the best epoch)."""

from __future__ import annotations

import math
import os

import pandas as pd
import torch

from voxflow.errors import VoxflowError
from voxflow.train.checkpoint import load_checkpoint


def average_checkpoints(paths: list[str | os.PathLike]) -> dict:
    """A stage snapshot whose ``model`` weights are the mean of those in ``paths``.

    Floating-point tensors are averaged; integer buffers (batch-norm counters) are taken from the last.
    The configs and the head come from the last checkpoint.
    """
    if not paths:
        raise VoxflowError("average_checkpoints: no checkpoint to average")
    states = [load_checkpoint(p) for p in paths]
    last = states[-1]
    keys = set(last["model"])
    for path, state in zip(paths, states):
        if set(state["model"]) != keys:
            raise VoxflowError(f"{path}: its model weights do not match {paths[-1]} (different architecture)")
    averaged = {}
    for key, value in last["model"].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([s["model"][key].float() for s in states]).mean(0).to(value.dtype)
        else:
            averaged[key] = value.clone()
    out = {k: v for k, v in last.items() if k in ("head", "model_cfg", "data_cfg", "head_cfg", "num_classes")}
    out["model"] = averaged
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
