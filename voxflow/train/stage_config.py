"""Resolve the config of one training stage from an experiment's config."""

from __future__ import annotations

import copy

from voxflow.errors import VoxflowError

STAGES = ("warmup", "margin", "finetune")
# Keys a stage may override from the experiment level.
_SHARED = ("device", "seed", "model", "data", "optimizer", "scheduler", "clip_grad_norm", "amp")


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` merged in recursively (override wins)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_stage(exp_cfg: dict, stage: str) -> dict:
    """The full config of ``stage`` of an experiment: shared keys, then the stage's own overrides."""
    if stage not in STAGES:
        raise VoxflowError(f"unknown training stage {stage!r}; stages are {STAGES}")
    if stage not in exp_cfg:
        raise VoxflowError(f"experiment config has no {stage!r} section")
    shared = {k: exp_cfg[k] for k in _SHARED if k in exp_cfg}
    resolved = deep_merge(shared, exp_cfg[stage])
    resolved["stage"] = stage
    return resolved
