"""One optimisation step at a time: forward, loss, backward, clipping, optimiser step; DDP, AMP, compile."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from voxflow.errors import VoxflowError
from voxflow.train import ddp
from voxflow.train.network import Classifier


class Trainer:
    """Trains ``model`` + ``head`` with ``optimizer`` on the context's device.

    Under DDP the gradients are averaged over the processes before clipping and the optimiser step, so
    every process keeps the same weights. Mixed precision (autocast + GradScaler) is used on CUDA only.
    Loss and accuracy accumulate on the device and are read (and summed over processes) by ``take``,
    so a step does not wait for the device.
    """

    def __init__(self, model: nn.Module, head: nn.Module, optimizer: torch.optim.Optimizer, ctx: ddp.DistContext,
                 clip_grad_norm: float | None = None, amp: bool = False, compile: bool = False):
        self.model, self.head, self.optimizer, self.ctx = model, head, optimizer, ctx
        # Only the network is compiled: the head's margin changes between steps and would force recompiles.
        self.module = Classifier(torch.compile(model) if compile else model, head).to(ctx.device)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.train_module = ddp.wrap(ctx, self.module)
        self.clip = float(clip_grad_norm) if clip_grad_norm else None
        self.amp = bool(amp) and ctx.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self._sums = torch.zeros(2, dtype=torch.float64, device=ctx.device)  # loss * samples, correct
        self._count = 0

    def train(self, frozen_backbone: bool = False) -> None:
        """Training mode; with ``frozen_backbone`` the network stays in eval mode (batch-norm statistics and
        dropout frozen too), so that it is a fixed function while only the head learns."""
        self.module.train()
        if frozen_backbone:
            self.model.eval()

    def step(self, feats: torch.Tensor, labels: torch.Tensor, lr: float, frozen_backbone: bool = False) -> None:
        """One update on a batch at learning rate ``lr``; with ``frozen_backbone`` only the head is updated.

        In one process the network runs without autograd; under DDP its gradients are still computed and
        averaged (the reducer expects every parameter's), then dropped before clipping and the optimiser step.
        The optimiser skips parameters without a gradient (no update, no weight decay, no moment estimates), so
        the network is left untouched and its optimiser state starts when it is unfrozen."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        feats = feats.to(self.ctx.device, non_blocking=True)
        labels = labels.to(self.ctx.device, non_blocking=True)
        with torch.autocast(self.ctx.device.type, enabled=self.amp):
            if frozen_backbone and not self.ctx.distributed:  # one process: no graph through the network at all
                with torch.no_grad():
                    emb = self.module.model.neck(self.module.model(feats))
                logits = self.module.head(emb, labels)
            else:
                logits = self.train_module(feats, labels)
            loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if frozen_backbone:
            for p in self.model.parameters():
                p.grad = None
        if self.clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            n = labels.shape[0]
            correct = (logits.detach().argmax(-1) == labels).sum().double()
            self._sums += torch.stack([loss.detach().double() * n, correct])
            self._count += n

    def take(self, where: str) -> tuple[float, float, float]:
        """(loss * samples, correct, samples) since the last call, summed over processes; a non-finite loss raises."""
        sums = ddp.all_sum(self.ctx, self._sums.tolist() + [self._count])
        self._sums.zero_()
        self._count = 0
        if not math.isfinite(sums[0]):
            raise VoxflowError(f"{where}: the loss became {sums[0]}; lower the learning rate or the margin")
        return sums[0], sums[1], sums[2]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
