"""What a training stage optimises: the embedding network, its classification head and the optimiser."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from voxflow.audio.features import feature_dim
from voxflow.errors import VoxflowError
from voxflow.losses import build_head
from voxflow.models import build as build_model
from voxflow.train.checkpoint import load_checkpoint


def build_network(model_cfg: dict, data_cfg: dict) -> nn.Module:
    """The embedding network of a model config (``name`` plus the model's keyword arguments)."""
    kwargs = dict(model_cfg)
    name = kwargs.pop("name")
    return build_model(name, feat_dim=feature_dim(data_cfg.get("features", {})), **kwargs)


def neck_dim(model: nn.Module, feat_dim: int) -> int:
    """Width of what the classification head sees (the output of ``model.neck``)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        dim = model.neck(model(torch.zeros(1, 200, feat_dim))).shape[-1]
    model.train(was_training)
    return int(dim)


def build_classifier(head_cfg: dict, in_dim: int, classes: int, where: str = "head") -> nn.Module:
    """The classification head of a stage (``name`` plus the head's keyword arguments, e.g. A-softmax's
    ``lambda_base``, ``lambda_min``, ``gamma``, ``power``); ``where`` names the config section in errors."""
    kwargs = {k: v for k, v in head_cfg.items() if k not in ("name", "schedule", "init_from_previous")}
    return build_head(head_cfg["name"], in_dim, classes, where=where, **kwargs)


class Classifier(nn.Module):
    """Network and head as one module (what DDP wraps): ``(feats, labels) -> logits``."""

    def __init__(self, model: nn.Module, head: nn.Module):
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.model.neck(self.model(feats)), labels)


def make_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    """Adam or SGD (momentum, Nesterov, weight decay) from an ``optimizer`` config."""
    name = cfg.get("name", "adam")
    lr, wd = float(cfg.get("lr", 1e-3)), float(cfg.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        momentum, nesterov = float(cfg.get("momentum", 0.9)), bool(cfg.get("nesterov", False))
        if nesterov and momentum <= 0:
            raise VoxflowError("optimizer.nesterov: Nesterov momentum needs optimizer.momentum > 0")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    raise VoxflowError(f"optimizer.name: unknown optimizer {name!r}; choose adam or sgd")


def adopt_network(cfg: dict, state: dict) -> dict:
    """``cfg`` with the network of checkpoint ``state``: its model config, sample rate and features (a stage of
    an experiment with ``init`` names no model; whatever its data config says of these is replaced)."""
    data_cfg = json.loads(state["data_cfg"])
    data = {**cfg.get("data", {}), **{k: data_cfg[k] for k in ("sample_rate", "features") if k in data_cfg}}
    return {**cfg, "model": json.loads(state["model_cfg"]), "data": data}


def init_from(model: nn.Module, head: nn.Module, state: dict, head_cfg: dict) -> None:
    """Start from a previous stage: its network weights; its class weights when the head allows. An imported
    model (no head in ``state``) gives the network only: the head starts afresh for the new speakers."""
    model.load_state_dict(state["model"])
    if "head" not in state or not head_cfg.get("init_from_previous", True):
        return
    prev_cfg = json.loads(state["head_cfg"])
    if prev_cfg["name"] == head_cfg["name"]:
        head.load_state_dict(state["head"])
        return
    prev = build_classifier(prev_cfg, state["head"]["weight"].shape[1], state["head"]["weight"].shape[0])
    prev.load_state_dict(state["head"])
    head.init_from(prev)


def load_network(checkpoint: str | Path) -> tuple[nn.Module, dict, dict]:
    """The embedding network of a stage checkpoint in eval mode, with its model and data configs."""
    state = load_checkpoint(checkpoint)
    model_cfg, data_cfg = json.loads(state["model_cfg"]), json.loads(state["data_cfg"])
    model = build_network(model_cfg, data_cfg)
    model.load_state_dict(state["model"])
    model.eval()
    return model, model_cfg, data_cfg
