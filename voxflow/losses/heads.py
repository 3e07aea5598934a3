"""Classification heads for speaker-discriminative training (Margin Matters sec. 3).

``head(emb, labels) -> logits`` for ``torch.nn.functional.cross_entropy``. ``labels=None``
(evaluation) gives the margin-free logits. Every head has a ``weight`` (num_classes, in_dim).

* softmax: ``W x + b``;
* asoftmax (SphereFace): ``||x|| cos(theta_j)``, target ``||x|| (lam cos + psi) / (1 + lam)``
  with ``psi(theta) = (-1)^k cos(m theta) - 2k`` on ``[k pi/m, (k+1) pi/m]``;
* amsoftmax (CosFace): ``s cos(theta_j)``, target ``s (cos(theta_y) - m)``;
* aamsoftmax (ArcFace): ``s cos(theta_j)``, target ``s cos(theta_y + m)``.

Keyword arguments are ``scale`` (s; Margin Matters uses 32) and ``margin`` (m); margin heads keep
``margin`` as a float attribute that a MarginScheduler may rewrite between steps.
Angles come from cosines clamped to [-1 + 1e-7, 1 - 1e-7], so gradients stay finite at +-1.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from voxflow.errors import VoxflowError

COS_EPS = 1e-7


class Head(nn.Module):
    """Base: a (num_classes, in_dim) ``weight``; ``init_from`` copies another head's weight."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.in_dim = int(in_dim)
        self.num_classes = int(num_classes)
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.xavier_uniform_(self.weight)

    def init_from(self, other: "Head") -> None:
        """Copy ``other.weight`` (e.g. the softmax warm-up's classes into an AM-softmax head)."""
        weight = getattr(other, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.shape != self.weight.shape:
            shape = None if weight is None else tuple(weight.shape)
            raise VoxflowError(
                f"init_from: weight shape {shape} does not match (num_classes, in_dim) = "
                f"{tuple(self.weight.shape)}"
            )
        with torch.no_grad():
            self.weight.copy_(weight)

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        """cos(theta_j) between each embedding and each class weight: (batch, num_classes)."""
        return F.linear(F.normalize(emb, dim=-1), F.normalize(self.weight, dim=-1))


def _target_angle(cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """theta_y per row, from the clamped target cosine: (batch, 1)."""
    target = cosine.gather(1, labels.view(-1, 1))
    return torch.acos(target.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))


def _replace_target(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return logits.scatter(1, labels.view(-1, 1), target)


class SoftmaxHead(Head):
    """Plain affine projection ``W x + b`` (the baseline softmax loss)."""

    def __init__(self, in_dim: int, num_classes: int, bias: bool = True):
        super().__init__(in_dim, num_classes)
        self.bias = nn.Parameter(torch.zeros(num_classes)) if bias else None

    def forward(self, emb: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return F.linear(emb, self.weight, self.bias)


class ASoftmaxHead(Head):
    """A-Softmax (SphereFace) with an integer multiplicative ``margin`` m (Margin Matters: 2).

    The target logit blends the plain and the margin logits, ``(lam cos + psi) / (1 + lam)``;
    each training call (``self.training`` and labels given) with ``anneal`` sets
    ``lam = max(lambda_min, lambda_base * (1 + gamma * it) ** -power)`` and advances ``it``
    (SphereFace's schedule: 1000 -> 5). Set ``anneal=False`` to hold a hand-set ``lam``.
    ``margin`` may be any float >= 1 (psi stays continuous and decreasing; 1 = no margin); values
    below 1, e.g. a scheduler's start, count as 1.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        margin: int = 2,
        lambda_base: float = 1000.0,
        lambda_min: float = 5.0,
        gamma: float = 0.12,
        power: float = 1.0,
        anneal: bool = True,
    ):
        super().__init__(in_dim, num_classes)
        if int(margin) != margin or margin < 1:
            raise VoxflowError(f"asoftmax margin={margin}: must be an integer >= 1")
        self.margin = float(margin)
        self.lambda_base = float(lambda_base)
        self.lambda_min = float(lambda_min)
        self.gamma = float(gamma)
        self.power = float(power)
        self.anneal = bool(anneal)
        self.iteration = 0
        self.lam = self.lambda_base

    def get_extra_state(self) -> dict:
        """Annealing state, so that a resumed run continues the lambda schedule."""
        return {"iteration": self.iteration, "lam": self.lam, "margin": self.margin}

    def set_extra_state(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self.lam = float(state["lam"])
        self.margin = float(state["margin"])

    def psi(self, theta: torch.Tensor) -> torch.Tensor:
        """(-1)^k cos(m theta) - 2k with k = floor(m theta / pi)."""
        m = max(1.0, float(self.margin))
        k = torch.floor(m * theta.detach() / math.pi).clamp(0, math.ceil(m) - 1)
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
        return sign * torch.cos(m * theta) - 2.0 * k

    def forward(self, emb: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        norm = emb.norm(dim=-1, keepdim=True)
        cosine = self.cosine(emb)
        if labels is None:
            return norm * cosine
        if self.training and self.anneal:
            self.lam = max(self.lambda_min, self.lambda_base * (1.0 + self.gamma * self.iteration) ** -self.power)
            self.iteration += 1
        theta = _target_angle(cosine, labels)
        target = (self.lam * torch.cos(theta) + self.psi(theta)) / (1.0 + self.lam)
        return _replace_target(norm * cosine, labels, norm * target)


class AMSoftmaxHead(Head):
    """AM-Softmax (CosFace): ``s (cos(theta_y) - m)`` for the target class, ``s cos`` otherwise."""

    def __init__(self, in_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.2):
        super().__init__(in_dim, num_classes)
        self.scale = float(scale)
        self.margin = float(margin)

    def forward(self, emb: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        cosine = self.cosine(emb)
        if labels is None:
            return self.scale * cosine
        target = cosine.gather(1, labels.view(-1, 1)) - self.margin
        return self.scale * _replace_target(cosine, labels, target)


class AAMSoftmaxHead(Head):
    """AAM-Softmax (ArcFace): ``s cos(theta_y + m)`` for the target class, ``s cos`` otherwise.

    Where ``theta_y + m`` would pass pi the target continues as ``cos(theta_y) - (1 - cos m)``
    (continuous at ``theta_y = pi - m``, still decreasing); with ``easy_margin`` the margin is
    applied only where ``cos(theta_y) > 0``.
    """

    def __init__(
        self, in_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.2, easy_margin: bool = False
    ):
        super().__init__(in_dim, num_classes)
        self.scale = float(scale)
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)

    def forward(self, emb: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        cosine = self.cosine(emb)
        if labels is None:
            return self.scale * cosine
        m = float(self.margin)
        theta = _target_angle(cosine, labels)
        plain = torch.cos(theta)
        if self.easy_margin:
            target = torch.where(plain > 0, torch.cos(theta + m), plain)
        else:
            target = torch.where(theta + m <= math.pi, torch.cos(theta + m), plain - (1.0 - math.cos(m)))
        return self.scale * _replace_target(cosine, labels, target)
