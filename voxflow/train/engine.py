"""The training loop of one stage: epochs over the data loader, LR and margin schedules, validation after every
epoch, checkpoints after every epoch and every N steps, exact resumption, several processes (DDP)."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from voxflow.audio.features import feature_dim
from voxflow.data.config import num_classes, validate_data_cfg
from voxflow.data.dataset import build_train_loader
from voxflow.errors import VoxflowError
from voxflow.train import ddp
from voxflow.train.average import average_checkpoints, select_epochs
from voxflow.train.checkpoint import (
    epoch_checkpoints,
    latest_resume_state,
    load_checkpoint,
    remove_step_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_checkpoints,
)
from voxflow.train.ddp import resolve_device  # noqa: F401  (part of this module's interface)
from voxflow.train.logs import TrainLog
from voxflow.train.network import (  # noqa: F401  (build_network, load_network: part of this module's interface)
    adopt_network,
    build_classifier,
    build_network,
    init_from,
    load_network,
    make_optimizer,
    neck_dim,
)
from voxflow.train.schedules import learning_rate, margin_scheduler, steps_schedule
from voxflow.train.stage_config import engine_options, resume_key
from voxflow.train.trainer import Trainer
from voxflow.train.validation import ValidationSet

log = logging.getLogger(__name__)

SNAPSHOT_KEYS = ("model", "head", "model_cfg", "data_cfg", "head_cfg", "num_classes", "stage_cfg")
Batches = Callable[[int], Iterable]  # epoch -> (feats, labels) batches of this process


def estimate_epoch_samples(utterances: pd.DataFrame, data_cfg: dict) -> int:
    """Training samples per epoch implied by the chunking mode (for the LR schedule's length)."""
    if data_cfg.get("chunking", "random") == "sliding":
        chunk, hop = float(data_cfg.get("chunk_s", 2.0)), float(data_cfg.get("chunk_hop_s", 1.0))
        dur = utterances["duration_s"].to_numpy()
        return int(np.sum(np.where(dur >= chunk, np.floor((dur - chunk) / hop) + 1, 1)))
    return len(utterances)


@dataclass
class Position:
    """Where training stands: the sampler (epoch, batches of it consumed), the step and the running sums."""

    epoch: int = 0
    batches: int = 0
    step: int = 0
    epoch_sums: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # loss * n, correct, n, seconds
    window_sums: list = field(default_factory=lambda: [0.0, 0.0, 0.0])  # the same since the last step row

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return seed * 1000 + epoch + 7919 * rank


def _best_epoch(rows: list[dict], where: str) -> int:
    scored = [(r["val_eer"], -r["epoch"]) for r in rows if r.get("val_eer") is not None and math.isfinite(r["val_eer"])]
    if not scored:
        raise VoxflowError(f"{where}: select: best needs a validation EER, and no epoch has one")
    return -min(scored)[1]  # the lowest EER; of equal ones, the later epoch


def frozen_backbone_epochs(cfg: dict, stage: str) -> int:
    """The stage's ``freeze_backbone_epochs`` (0 when absent): its first N epochs train the head only."""
    value = cfg.get("freeze_backbone_epochs", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VoxflowError(f"{stage or 'stage'}.freeze_backbone_epochs: invalid value {value!r}; an integer >= 0")
    return value


class StageRun:
    """One stage's training state and loop (see ``run_stage``)."""

    def __init__(self, cfg: dict, utterances: pd.DataFrame, spk2id: dict, out_dir: Path, make_batches: Batches,
                 init_checkpoint=None, validation: ValidationSet | None = None):
        self.out = Path(out_dir)
        self.stage, self.epochs = cfg.get("stage", ""), int(cfg["epochs"])
        self.where = f"{self.out} ({self.stage or 'stage'})"
        init_state = load_checkpoint(init_checkpoint) if init_checkpoint is not None else None
        if "model" not in cfg:  # an experiment with init: the network is the init checkpoint's
            if init_state is None:
                raise VoxflowError(f"{self.where}: no model config and no checkpoint to start from")
            cfg = adopt_network(cfg, init_state)
        self.cfg = cfg
        self.ctx = ddp.setup(cfg)
        self.opts = engine_options(cfg)
        if self.opts.select == "best" and validation is None:
            raise VoxflowError(f"{self.stage}.select: best picks the epoch of lowest validation EER, but no "
                               "validation set was given (config key validation.corpus)")
        self.validation, self.make_batches = validation, make_batches
        data_cfg = validate_data_cfg(cfg["data"])
        self.data_cfg = data_cfg
        torch.manual_seed(int(cfg.get("seed", 0)))
        model = build_network(cfg["model"], cfg["data"])
        self.classes = num_classes(spk2id, cfg["data"])
        head = build_classifier(cfg["head"], neck_dim(model, feature_dim(data_cfg["features"])), self.classes,
                                where=f"{self.stage or 'stage'}.head")
        self.initialised = init_state is not None
        if self.initialised:
            init_from(model, head, init_state, cfg["head"])
        model.to(self.ctx.device)
        if self.opts.channels_last and self.ctx.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        elif self.opts.channels_last:  # torch 2.14's CPU backward of channels-last strided 1x1 convolutions crashes
            log.info("channels_last applies on CUDA only; ignored on %s", self.ctx.device)
        optimizer = make_optimizer(list(model.parameters()) + list(head.parameters()), cfg.get("optimizer", {}))
        self.trainer = Trainer(model, head, optimizer, self.ctx, cfg.get("clip_grad_norm"),
                               amp=bool(cfg.get("amp", False)), compile=self.opts.compile)
        samples = estimate_epoch_samples(utterances, data_cfg)
        self.steps_per_epoch = max(1, samples // (data_cfg["batch_size"] * self.ctx.world_size))
        self.total_steps = self.steps_per_epoch * self.epochs
        self.base_lr = float(cfg.get("optimizer", {}).get("lr", 1e-3))
        self.sched_cfg = steps_schedule(cfg.get("scheduler", {}), self.steps_per_epoch)
        self.margin = margin_scheduler(cfg["head"])
        self.frozen_epochs = frozen_backbone_epochs(cfg, self.stage)
        self.key = resume_key(cfg)
        self.pos, self.rng = Position(), None
        state = self._resume()  # may replace pos and rng
        self.log = TrainLog(self.out, self.ctx.is_main, self.opts.tensorboard, state, resume_step=self.pos.step)

    # -- checkpoints ------------------------------------------------------------------------------------------
    def _resume(self) -> dict | None:
        """Load the newest good checkpoint written with this config (others are deleted); None: start afresh."""
        found = latest_resume_state(self.out) if self.out.is_dir() else None
        ddp.barrier(self.ctx)  # every process has read before the main one deletes anything
        if found is not None and found[1].get("resume_key") != self.key:
            if self.ctx.is_main:
                log.info("ignoring the checkpoints in %s: they were trained with another config", self.out)
                for _, stale in epoch_checkpoints(self.out) + step_checkpoints(self.out):
                    stale.unlink()
            found = None
        if found is None:
            if self.ctx.is_main and not self.initialised:
                save_checkpoint(self._snapshot(), self.out / "init.pt")
            return None
        path, state = found
        self.trainer.model.load_state_dict(state["model"])
        self.trainer.head.load_state_dict(state["head"])
        self.trainer.load_state_dict(state)
        self.pos = Position(**json.loads(state["position"]))
        rngs = state.get("rng") or []
        self.rng = rngs[self.ctx.rank] if self.ctx.rank < len(rngs) else None
        log.info("resuming from %s: epoch %d, after batch %d (step %d)", path, self.pos.epoch + 1, self.pos.batches,
                 self.pos.step)
        return state

    def _snapshot(self) -> dict:
        cfg = self.cfg
        return {"model": {k: v.detach().cpu() for k, v in self.trainer.model.state_dict().items()},
                "head": {k: v.detach().cpu() for k, v in self.trainer.head.state_dict().items()},
                "model_cfg": json.dumps(cfg["model"]), "data_cfg": json.dumps(cfg["data"]),
                "head_cfg": json.dumps(cfg["head"]), "num_classes": self.classes,
                "stage_cfg": json.dumps(cfg, sort_keys=True)}

    def _save(self, path: Path) -> None:
        """A training checkpoint: weights, optimiser, scaler, position, logs and every process's RNG state."""
        rngs = ddp.gather_objects(self.ctx, rng_state(self.ctx.device))
        if not self.ctx.is_main:
            return
        state = self._snapshot()
        state.update(self.trainer.state_dict(), position=self.pos.to_json(), rng=rngs, resume_key=self.key,
                     step=self.pos.step, **self.log.state())
        save_checkpoint(state, path)

    # -- the loop ---------------------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Add the trainer's sums (over all processes) to the epoch's and the window's."""
        loss, correct, n = self.trainer.take(f"{self.where}: epoch {self.pos.epoch + 1}, step {self.pos.step}")
        for sums in (self.pos.epoch_sums, self.pos.window_sums):
            sums[0], sums[1], sums[2] = sums[0] + loss, sums[1] + correct, sums[2] + n

    def _batches(self, epoch: int):
        it = iter(self.make_batches(epoch))
        skip = self.pos.batches if epoch == self.pos.epoch else 0
        for k in range(skip):  # resuming mid-epoch: the same batches come in the same order; skip the consumed
            if next(it, None) is None:
                raise VoxflowError(f"{self.where}: cannot resume epoch {epoch + 1} after batch {skip}: it now has "
                                   f"only {k} batches (did the training data change?)")
        if skip and self.rng is not None:
            set_rng_state(self.rng, self.ctx.device)
        return it

    def run_epoch(self, epoch: int, clock: dict) -> None:
        pos, opts = self.pos, self.opts
        torch.manual_seed(_epoch_seed(int(self.cfg.get("seed", 0)), epoch, self.ctx.rank))
        if pos.epoch != epoch:
            pos.epoch, pos.batches, pos.epoch_sums = epoch, 0, [0.0, 0.0, 0.0, 0.0]
        it = self._batches(epoch)
        frozen = epoch < self.frozen_epochs
        if frozen:
            log.info("%s: epoch %d: backbone frozen, only the head learns", self.where, epoch + 1)
        self.trainer.train(frozen_backbone=frozen)
        t_epoch = t_window = time.perf_counter()
        lr, margin = self.base_lr, float(getattr(self.trainer.head, "margin", 0.0))
        while True:
            batch = next(it, None)
            if not ddp.all_have(self.ctx, batch is not None):  # the processes stop together
                break
            progress = epoch + min(pos.batches / self.steps_per_epoch, 1.0)
            if self.margin is not None:
                margin = self.margin.apply(self.trainer.head, progress)
            lr = learning_rate(pos.step, self.total_steps, self.base_lr, self.sched_cfg)
            self.trainer.step(batch[0], batch[1], lr, frozen_backbone=frozen)
            pos.step, pos.batches, clock["steps"] = pos.step + 1, pos.batches + 1, clock["steps"] + 1
            if pos.step % opts.log_every_steps == 0:
                self._sync()
                now = time.perf_counter()
                pos.window_sums.append(now - t_window)
                self._step_row(lr, margin, clock, now)
                t_window = now
            if opts.checkpoint_every_steps and pos.step % opts.checkpoint_every_steps == 0:
                self._sync()
                seconds = time.perf_counter() - t_epoch
                pos.epoch_sums[3] += seconds
                self._save(self.out / f"step_{pos.step}.pt")
                pos.epoch_sums[3] -= seconds
                if self.ctx.is_main:
                    self.log.save()
                    remove_step_checkpoints(self.out, keep=2)
        self._sync()
        pos.epoch_sums[3] += time.perf_counter() - t_epoch
        self._end_epoch(epoch, lr, margin)

    def _step_row(self, lr: float, margin: float, clock: dict, now: float) -> None:
        pos = self.pos
        loss, correct, n, seconds = pos.window_sums
        pos.window_sums = [0.0, 0.0, 0.0]
        row = {"stage": self.stage, "epoch": pos.epoch + 1, "batch": pos.batches, "step": pos.step,
               "loss": loss / max(n, 1), "accuracy": correct / max(n, 1), "lr": lr, "margin": margin,
               "samples": int(n), "samples_per_s": n / max(seconds, 1e-9)}
        steps_left = self.total_steps - pos.step
        eta = steps_left * (now - clock["start"]) / max(clock["steps"], 1) if steps_left > 0 else 0.0
        self.log.step(row, self.epochs, self.steps_per_epoch, eta)

    def _end_epoch(self, epoch: int, lr: float, margin: float) -> None:
        pos = self.pos
        loss, correct, n, seconds = pos.epoch_sums
        if n == 0:
            raise VoxflowError(f"{self.where}: epoch {epoch + 1} produced no training batch; is the training set "
                               f"smaller than one batch (data.batch_size) per process?")
        ddp.check_in_sync(self.ctx, self.trainer.module, f"{self.where}: epoch {epoch + 1}")
        val_eer = float("nan")
        if self.validation is not None and self.ctx.is_main:
            val_eer = self.validation.eer(self.trainer.model, self.data_cfg, self.ctx.device)
        row = {"stage": self.stage, "epoch": epoch + 1, "step": pos.step, "loss": loss / n, "accuracy": correct / n,
               "lr": lr, "margin": margin, "samples": int(n), "samples_per_s": n / max(seconds, 1e-9),
               "seconds": seconds, "val_eer": val_eer}
        self.log.epoch(row, self.epochs)
        pos.epoch, pos.batches, pos.epoch_sums = epoch + 1, 0, [0.0, 0.0, 0.0, 0.0]
        self._save(self.out / f"epoch_{epoch + 1}.pt")
        if self.ctx.is_main:
            remove_step_checkpoints(self.out, keep=0)
            self.log.save()

    def run(self) -> Path:
        clock = {"start": time.perf_counter(), "steps": 0}
        try:
            for epoch in range(self.pos.epoch, self.epochs):
                self.run_epoch(epoch, clock)
            final = self.out / "final.pt"
            if self.ctx.is_main:
                save_checkpoint(self._final_state(), final)
                self.log.save()
        finally:
            self.log.close()
        ddp.barrier(self.ctx)  # the next stage starts from final.pt
        return final

    def _final_state(self) -> dict:
        """final.pt: the last epoch (``select: last``) or the best (``select: best``); with ``average: N`` the
        mean of the network and class weights of the last N or the N best epochs (Wespeaker's avg_model)."""
        opts = self.opts
        if not self.log.epoch_rows or (opts.select == "last" and opts.average == 1):
            return self._snapshot()
        if opts.average == 1:
            best = _best_epoch(self.log.epoch_rows, self.where)
            state = load_checkpoint(self.out / f"epoch_{best}.pt")
            log.info("%s: final.pt is epoch %d, the one of lowest validation EER", self.where, best)
            return {**{k: state[k] for k in SNAPSHOT_KEYS}, "selected_epoch": best}
        epochs = select_epochs(pd.DataFrame(self.log.epoch_rows), opts.select, opts.average, f"{self.where}: average")
        missing = [e for e in epochs if not (self.out / f"epoch_{e}.pt").is_file()]
        if missing:
            raise VoxflowError(f"{self.where}: average: {opts.average} needs the checkpoints of epoch(s) {missing}, "
                               "which are missing")
        state = average_checkpoints([self.out / f"epoch_{e}.pt" for e in epochs], head=True)
        log.info("%s: final.pt averages epochs %s (%s %d)", self.where, epochs, opts.select, opts.average)
        return {**{k: state[k] for k in SNAPSHOT_KEYS}, "averaged_epochs": epochs}


def run_stage(cfg: dict, utterances: pd.DataFrame, source, spk2id: dict[str, int], out_dir: str | Path,
              init_checkpoint: str | Path | None = None, excluded=None, noise_df=None, rir_df=None,
              validation: ValidationSet | None = None, batches: Batches | None = None) -> Path:
    """Train one stage; resumable: a rerun continues from the newest good checkpoint in ``out_dir``.

    ``cfg`` is a resolved stage config (see ``resolve_stage``); without ``model`` (an experiment with
    ``init``) the network, sample rate and features are those of ``init_checkpoint``. ``source`` is a list of
    shard paths or the ``utterances`` table itself (raw mode). Under torchrun every process calls this with the same arguments;
    each reads its share of the data and only the first writes. Writes ``epoch_N.pt`` after every epoch,
    ``step_N.pt`` every ``checkpoint_every_steps`` steps, ``train_log.parquet`` (per epoch, with the
    validation EER when ``validation`` is given), ``train_steps.parquet``, TensorBoard events, and finally
    ``final.pt`` (model, head and their configs: the last epoch, or with ``select: best`` the epoch of lowest
    validation EER; with ``average: N`` the mean of the last N or the N best epochs). ``batches(epoch)``
    replaces the data loader (benchmarks). Returns the path of ``final.pt``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = int(cfg.get("seed", 0))

    def loader(epoch: int):
        ctx = run.ctx
        return build_train_loader(source, spk2id, run.cfg["data"], epoch=epoch, seed=seed, rank=ctx.rank,
                                  world_size=ctx.world_size, excluded=excluded, noise_df=noise_df, rir_df=rir_df)

    run = StageRun(cfg, utterances, spk2id, out, batches or loader, init_checkpoint, validation)
    return run.run()
