"""The training loop of one stage: epochs over a data loader, margin schedule, checkpoints, resume."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from voxflow.audio.features import feature_dim
from voxflow.data.dataset import build_train_loader, num_classes
from voxflow.errors import VoxflowError
from voxflow.losses import MarginScheduler, build_head
from voxflow.models import build as build_model
from voxflow.train.checkpoint import epoch_checkpoints, latest_good_checkpoint, load_checkpoint, save_checkpoint
from voxflow.train.schedules import learning_rate
from voxflow.utils.atomic import atomic_path

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; asking for CUDA where there is none is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VoxflowError(f"device: {name!r} requested but CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise VoxflowError(f"device: invalid device {name!r}") from exc


def build_network(model_cfg: dict, data_cfg: dict) -> torch.nn.Module:
    """The embedding network of a model config (``name`` plus the model's keyword arguments)."""
    kwargs = dict(model_cfg)
    name = kwargs.pop("name")
    return build_model(name, feat_dim=feature_dim(data_cfg.get("features", {})), **kwargs)


def neck_dim(model: torch.nn.Module, feat_dim: int) -> int:
    """Width of what the classification head sees (the output of ``model.neck``)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        dim = model.neck(model(torch.zeros(1, 200, feat_dim))).shape[-1]
    model.train(was_training)
    return int(dim)


def build_classifier(head_cfg: dict, in_dim: int, classes: int) -> torch.nn.Module:
    """The classification head of a stage (``name`` plus the head's keyword arguments)."""
    kwargs = {k: v for k, v in head_cfg.items() if k not in ("name", "schedule", "init_from_previous")}
    return build_head(head_cfg["name"], in_dim, classes, **kwargs)


def make_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    """Adam or SGD (momentum, Nesterov, weight decay) from an ``optimizer`` config."""
    name = cfg.get("name", "adam")
    lr, wd = float(cfg.get("lr", 1e-3)), float(cfg.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg.get("momentum", 0.9)),
                               nesterov=bool(cfg.get("nesterov", False)), weight_decay=wd)
    raise VoxflowError(f"optimizer.name: unknown optimizer {name!r}; choose adam or sgd")


def estimate_epoch_samples(utterances: pd.DataFrame, data_cfg: dict) -> int:
    """Training samples per epoch implied by the chunking mode (for the LR schedule's length)."""
    if data_cfg.get("chunking", "random") == "sliding":
        chunk, hop = float(data_cfg.get("chunk_s", 2.0)), float(data_cfg.get("chunk_hop_s", 1.0))
        dur = utterances["duration_s"].to_numpy()
        return int(np.sum(np.where(dur >= chunk, np.floor((dur - chunk) / hop) + 1, 1)))
    return len(utterances)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state()}


def _write_log(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_parquet(tmp, index=False)


def run_stage(cfg: dict, utterances: pd.DataFrame, source, spk2id: dict[str, int], out_dir: str | Path,
              init_checkpoint: str | Path | None = None, excluded=None, noise_df=None, rir_df=None) -> Path:
    """Train one stage; resumable: a rerun continues from the newest good ``epoch_N.pt`` in ``out_dir``.

    ``cfg`` is a resolved stage config (see ``resolve_stage``); ``source`` is a list of shard paths or
    the ``utterances`` table itself (raw mode). Writes ``epoch_N.pt`` per epoch, ``train_log.parquet``
    and finally ``final.pt`` (model, head and their configs). Returns the path of ``final.pt``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.get("device", "cpu"))
    seed = int(cfg.get("seed", 0))
    data_cfg, head_cfg = cfg["data"], cfg["head"]
    epochs = int(cfg["epochs"])
    torch.manual_seed(seed)
    model = build_network(cfg["model"], data_cfg)
    classes = num_classes(spk2id, data_cfg)
    head = build_classifier(head_cfg, neck_dim(model, feature_dim(data_cfg.get("features", {}))), classes)
    if init_checkpoint is not None:
        _init_from(model, head, load_checkpoint(init_checkpoint), head_cfg)
    model.to(device)
    head.to(device)
    opt_cfg = cfg.get("optimizer", {})
    base_lr = float(opt_cfg.get("lr", 1e-3))
    optimizer = make_optimizer(list(model.parameters()) + list(head.parameters()), opt_cfg)
    use_amp = bool(cfg.get("amp", False)) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    steps_per_epoch = max(1, estimate_epoch_samples(utterances, data_cfg) // int(data_cfg.get("batch_size", 128)))
    total_steps = steps_per_epoch * epochs
    sched_cfg = dict(cfg.get("scheduler", {}))
    if "warmup_epochs" in sched_cfg:
        sched_cfg["warmup_steps"] = int(float(sched_cfg.pop("warmup_epochs")) * steps_per_epoch)
    margin_sched = _margin_scheduler(head_cfg)
    clip = cfg.get("clip_grad_norm")

    start_epoch, step, rows = 0, 0, []
    resumed = latest_good_checkpoint(out)
    if resumed is not None and resumed[1].get("stage_cfg") != json.dumps(cfg, sort_keys=True):
        log.info("ignoring checkpoints in %s: they were trained with another config", out)
        for _, stale in epoch_checkpoints(out):
            stale.unlink()
        resumed = None
    if resumed is not None:
        start_epoch, state = resumed
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, rows = int(state["step"]), json.loads(state["log"])
        log.info("resuming %s after epoch %d", out, start_epoch)
    elif init_checkpoint is None:
        save_checkpoint(_snapshot(model, head, cfg, classes), out / "init.pt")

    for epoch in range(start_epoch, epochs):
        torch.manual_seed(seed * 1000 + epoch)
        loader = build_train_loader(source, spk2id, data_cfg, epoch=epoch, seed=seed, excluded=excluded,
                                    noise_df=noise_df, rir_df=rir_df)
        model.train()
        head.train()
        t0, n_seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        for feats, labels in loader:
            progress = epoch + min(n_seen / max(steps_per_epoch * labels.shape[0], 1), 1.0)
            if margin_sched is not None:
                margin_sched.apply(head, progress)
            lr = learning_rate(step, total_steps, base_lr, sched_cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            feats, labels = feats.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=use_amp):
                logits = head(model.neck(model(feats)), labels)
                loss = F.cross_entropy(logits.float(), labels)
            if not torch.isfinite(loss):
                raise VoxflowError(f"{out}: loss became {loss.item()} at epoch {epoch + 1}, step {step}; "
                                   "lower the learning rate or the margin")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(head.parameters()), float(clip))
            scaler.step(optimizer)
            scaler.update()
            step += 1
            n_seen += labels.shape[0]
            loss_sum += loss.item() * labels.shape[0]
            correct += (logits.argmax(-1) == labels).sum().item()
        if n_seen == 0:
            raise VoxflowError(f"{out}: epoch {epoch + 1} produced no training batch; is the training set "
                               "smaller than one batch (data.batch_size)?")
        elapsed = time.perf_counter() - t0
        rows.append({"stage": cfg.get("stage", ""), "epoch": epoch + 1, "step": step, "loss": loss_sum / n_seen,
                     "accuracy": correct / n_seen, "lr": lr, "margin": float(getattr(head, "margin", 0.0)),
                     "samples": n_seen, "samples_per_s": n_seen / elapsed, "seconds": elapsed})
        log.info("%s epoch %d/%d loss %.4f acc %.3f lr %.2e %.0f samples/s", cfg.get("stage", ""), epoch + 1,
                 epochs, rows[-1]["loss"], rows[-1]["accuracy"], lr, rows[-1]["samples_per_s"])
        state = _snapshot(model, head, cfg, classes)
        state.update(optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), step=step,
                     log=json.dumps(rows), rng=_rng_state())
        save_checkpoint(state, out / f"epoch_{epoch + 1}.pt")
        _write_log(rows, out / "train_log.parquet")
    final = out / "final.pt"
    save_checkpoint(_snapshot(model, head, cfg, classes), final)
    if not rows:
        _write_log(rows, out / "train_log.parquet")
    return final


def _snapshot(model, head, cfg: dict, classes: int) -> dict:
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "head": {k: v.detach().cpu() for k, v in head.state_dict().items()},
            "model_cfg": json.dumps(cfg["model"]), "data_cfg": json.dumps(cfg["data"]),
            "head_cfg": json.dumps(cfg["head"]), "num_classes": classes,
            "stage_cfg": json.dumps(cfg, sort_keys=True)}


def _margin_scheduler(head_cfg: dict):
    sched = head_cfg.get("schedule")
    if not sched or "margin" not in head_cfg:
        return None
    return MarginScheduler(float(head_cfg["margin"]), float(sched.get("start_epoch", 0)),
                           float(sched.get("end_epoch", 0)), mode=sched.get("mode", "linear"),
                           initial_margin=float(sched.get("initial_margin", 0.0)))


def _init_from(model, head, state: dict, head_cfg: dict) -> None:
    """Start from a previous stage: its network weights; its class weights when the head allows."""
    model.load_state_dict(state["model"])
    if not head_cfg.get("init_from_previous", True):
        return
    prev_cfg = json.loads(state["head_cfg"])
    if prev_cfg["name"] == head_cfg["name"]:
        head.load_state_dict(state["head"])
        return
    prev = build_classifier(prev_cfg, state["head"]["weight"].shape[1], state["head"]["weight"].shape[0])
    prev.load_state_dict(state["head"])
    head.init_from(prev)


def load_network(checkpoint: str | Path) -> tuple[torch.nn.Module, dict, dict]:
    """The embedding network of a stage checkpoint in eval mode, with its model and data configs."""
    state = load_checkpoint(checkpoint)
    model_cfg, data_cfg = json.loads(state["model_cfg"]), json.loads(state["data_cfg"])
    model = build_network(model_cfg, data_cfg)
    model.load_state_dict(state["model"])
    model.eval()
    return model, model_cfg, data_cfg

