"""Training logs of a stage: ``train_log.parquet`` (one row per epoch), ``train_steps.parquet`` (one row every
``log_every_steps`` steps), TensorBoard event files under ``tensorboard/`` (when tensorboard is installed) and
a progress line with an ETA on stderr. Only the main process writes; the rows travel in the checkpoints."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd

from voxflow.utils.atomic import atomic_path

log = logging.getLogger("voxflow.train")

EPOCH_LOG = "train_log.parquet"
STEP_LOG = "train_steps.parquet"


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class TrainLog:
    """Collects the rows of one stage and writes them (``enabled`` only on the main process)."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool = True, state: dict | None = None,
                 resume_step: int = 0):
        self.out_dir, self.enabled = Path(out_dir), enabled
        state = state or {}
        self.epoch_rows: list[dict] = json.loads(state.get("epoch_rows", "[]"))
        self.step_rows: list[dict] = json.loads(state.get("step_rows", "[]"))
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed: no TensorBoard event files (pip install tensorboard)")
            else:  # purge the events a killed run logged after the checkpoint resumed from
                purge = resume_step + 1 if resume_step else None
                self.writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"), purge_step=purge)

    def state(self) -> dict:
        """What a checkpoint keeps, so that a resumed run's logs equal an uninterrupted run's."""
        return {"epoch_rows": json.dumps(self.epoch_rows), "step_rows": json.dumps(self.step_rows)}

    def step(self, row: dict, epochs: int, steps_per_epoch: int, eta_s: float) -> None:
        """Record a step row and print the progress line."""
        self.step_rows.append(row)
        if not self.enabled:
            return
        if self.writer is not None:
            for key in ("loss", "accuracy", "lr", "margin", "samples_per_s"):
                self.writer.add_scalar(f"train/{key}", row[key], row["step"])
        pct = 100.0 * min(row["batch"] / steps_per_epoch, 1.0)
        log.info("%s epoch %d/%d batch %d/~%d (%3.0f%%) step %d  loss %.4f  acc %.3f  lr %.3g  margin %.3f  "
                 "%.0f samples/s  ETA %s", row["stage"], row["epoch"], epochs, row["batch"], steps_per_epoch, pct,
                 row["step"], row["loss"], row["accuracy"], row["lr"], row["margin"], row["samples_per_s"],
                 _clock(eta_s))

    def epoch(self, row: dict, epochs: int) -> None:
        """Record an epoch row."""
        self.epoch_rows.append(row)
        if not self.enabled:
            return
        eer = row.get("val_eer")
        has_eer = eer is not None and math.isfinite(eer)
        if self.writer is not None:
            for key in ("loss", "accuracy", "samples_per_s") + (("val_eer",) if has_eer else ()):
                self.writer.add_scalar(f"epoch/{key}", row[key], row["step"])
        val = f"  validation EER {100 * eer:.2f}%" if has_eer else ""
        log.info("%s epoch %d/%d done: loss %.4f  acc %.3f  lr %.3g  margin %.3f  %.0f samples/s  %.1f s%s",
                 row["stage"], row["epoch"], epochs, row["loss"], row["accuracy"], row["lr"], row["margin"],
                 row["samples_per_s"], row["seconds"], val)

    def save(self) -> None:
        """Write both Parquet logs atomically and flush TensorBoard."""
        if not self.enabled:
            return
        for rows, name in ((self.epoch_rows, EPOCH_LOG), (self.step_rows, STEP_LOG)):
            with atomic_path(self.out_dir / name) as tmp:
                pd.DataFrame(rows).to_parquet(tmp, index=False)
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
