"""Checkpoint averaging (Wespeaker averages the last N epochs' weights)."""

from __future__ import annotations

import os

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
