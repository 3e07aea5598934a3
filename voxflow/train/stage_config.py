"""Resolve the config of one training stage from an experiment's config."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from voxflow.errors import VoxflowError

STAGES = ("warmup", "margin", "finetune")
# How the engine runs (not what it computes); each has a default in EngineOptions.
ENGINE_KEYS = ("gpus", "nproc", "checkpoint_every_steps", "log_every_steps", "channels_last", "compile", "tensorboard")
# Keys that change neither the weights nor their order of computation: a run may resume across them (select
# and average only choose what final.pt is made of, so a rerun with other values rewrites final.pt alone).
OPERATIONAL_KEYS = ("checkpoint_every_steps", "log_every_steps", "tensorboard", "select", "average")
# Keys a stage may override from the experiment level (init: the imported model an experiment starts from; in
# the stage config so that the resume key changes with it).
_SHARED = ("device", "seed", "model", "data", "optimizer", "scheduler", "clip_grad_norm", "amp", "init") + ENGINE_KEYS


@dataclass(frozen=True)
class EngineOptions:
    """The engine keys of a stage config, checked."""

    checkpoint_every_steps: int = 0
    log_every_steps: int = 50
    channels_last: bool = False
    compile: bool = False
    tensorboard: bool = True
    select: str = "last"
    average: int = 1


def engine_options(cfg: dict) -> EngineOptions:
    """Read and check the engine keys of a resolved stage config (a bad value names its key)."""
    out = {}
    for key, default in EngineOptions.__dataclass_fields__.items():
        value = cfg.get(key, default.default)
        if isinstance(default.default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default.default, int):
            minimum = 1 if key in ("log_every_steps", "average") else 0
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        else:
            ok = value in ("last", "best")
        if not ok:
            raise VoxflowError(f"{cfg.get('stage', 'stage')}.{key}: invalid value {value!r}")
        out[key] = value
    return EngineOptions(**out)


def resume_key(cfg: dict) -> str:
    """What checkpoints must share to be resumed from: the stage config without operational keys."""
    return json.dumps({k: v for k, v in cfg.items() if k not in OPERATIONAL_KEYS}, sort_keys=True)


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
