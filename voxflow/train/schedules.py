"""Learning-rate schedules per optimisation step, and the margin schedule of a head config."""

from __future__ import annotations

import math

from voxflow.errors import VoxflowError
from voxflow.losses import MarginScheduler

SCHEDULES = ("constant", "warmup_exp", "linear_warmup", "step", "cosine")


def learning_rate(step: int, total_steps: int, base_lr: float, cfg: dict) -> float:
    """Learning rate at optimisation ``step`` (0-based) of ``total_steps``.

    - ``constant``: base_lr.
    - ``warmup_exp`` (Wespeaker): linear warm-up over ``warmup_steps`` then exponential decay reaching
      ``final_lr`` at the last step.
    - ``linear_warmup`` (Margin Matters): linear ramp from 0 to base_lr over ``warmup_steps``, then constant.
    - ``step``: base_lr * gamma ** (step // step_size).
    - ``cosine``: warm-up then cosine annealing to ``final_lr``.
    """
    name = cfg.get("name", "constant")
    warm = int(cfg.get("warmup_steps", 0))
    final_lr = float(cfg.get("final_lr", base_lr))
    total = max(int(total_steps), 1)
    if name == "constant":
        return base_lr
    if name == "step":
        return base_lr * float(cfg.get("gamma", 0.1)) ** (step // max(int(cfg.get("step_size", total)), 1))
    warm_factor = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
    if name == "linear_warmup":
        return base_lr * warm_factor
    progress = 0.0 if total <= warm + 1 else max(0.0, (step - warm) / (total - warm - 1))
    progress = min(progress, 1.0)
    if name == "warmup_exp":
        if base_lr <= 0 or final_lr <= 0:
            raise VoxflowError("scheduler warmup_exp: lr and final_lr must be positive")
        return warm_factor * base_lr * math.exp(progress * math.log(final_lr / base_lr))
    if name == "cosine":
        return warm_factor * (final_lr + 0.5 * (base_lr - final_lr) * (1 + math.cos(math.pi * progress)))
    raise VoxflowError(f"scheduler.name: unknown schedule {name!r}; choose one of {SCHEDULES}")


def steps_schedule(cfg: dict, steps_per_epoch: int) -> dict:
    """A scheduler config with ``warmup_epochs`` turned into ``warmup_steps``."""
    out = dict(cfg)
    if "warmup_epochs" in out:
        out["warmup_steps"] = int(float(out.pop("warmup_epochs")) * steps_per_epoch)
    return out


def margin_scheduler(head_cfg: dict) -> MarginScheduler | None:
    """The head's margin ramp (``head.schedule``), or None for a fixed margin."""
    sched = head_cfg.get("schedule")
    if not sched:
        return None
    if "margin" not in head_cfg:
        raise VoxflowError(f"head.schedule: head {head_cfg.get('name')!r} has a margin schedule but no head.margin")
    return MarginScheduler(float(head_cfg["margin"]), float(sched.get("start_epoch", 0)),
                           float(sched.get("end_epoch", 0)), mode=sched.get("mode", "linear"),
                           initial_margin=float(sched.get("initial_margin", 0.0)))
