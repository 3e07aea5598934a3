"""Temporal pooling layers: frame-level (batch, dim, frames) -> segment-level (batch, out_dim).

TAP (mean), TSTP (mean + standard deviation, the x-vector statistics pooling), ASTP (attentive
statistics, Okabe et al.; with ``global_context`` the ECAPA-TDNN variant whose attention also sees
the utterance mean and std; TSTP and ASTP take ``unbiased=True`` for Wespeaker's formulas), NetVLAD
(Arandjelovic et al., as used by Kaseva & Kurimo eq. 1) and GhostVLAD (NetVLAD with extra "ghost"
clusters whose residuals are dropped).

Every layer is built with its input width and exposes ``out_dim(in_dim)`` and ``output_dim``.
"""

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from voxflow.errors import VoxflowError
from voxflow.models.options import check_kwargs


def _mean_std(x: torch.Tensor, floor: float = 1e-7) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over the last axis; the variance is floored before the square
    root so constant inputs keep finite gradients."""
    mean = x.mean(dim=-1)
    var = ((x - mean.unsqueeze(-1)) ** 2).mean(dim=-1)
    return mean, torch.sqrt(var.clamp(min=floor))


def _unbiased_mean_std(x: torch.Tensor, eps: float = 1e-7) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and ``sqrt(unbiased variance + eps)`` over the last axis (Wespeaker's statistics)."""
    return x.mean(dim=-1), torch.sqrt(torch.var(x, dim=-1) + eps)


def _weighted_mean_std(
    x: torch.Tensor, weights: torch.Tensor, floor: float = 1e-7
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and floored standard deviation over the last axis under weights summing to 1 on it."""
    mean = torch.sum(weights * x, dim=-1)
    var = torch.sum(weights * (x - mean.unsqueeze(-1)) ** 2, dim=-1)
    return mean, torch.sqrt(var.clamp(min=floor))


class TAP(nn.Module):
    """Temporal average pooling: the mean over frames."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.in_dim = in_dim
        self.output_dim = self.out_dim(in_dim)

    def out_dim(self, in_dim: int) -> int:
        return in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=-1)


class TSTP(nn.Module):
    """Temporal statistics pooling: mean and standard deviation over frames, concatenated.

    The std is ``sqrt(max(biased variance, 1e-7))``; ``unbiased=True``: ``sqrt(unbiased variance + 1e-7)``.
    """

    def __init__(self, in_dim: int, unbiased: bool = False):
        super().__init__()
        self.in_dim = in_dim
        self.unbiased = unbiased
        self.output_dim = self.out_dim(in_dim)

    def out_dim(self, in_dim: int) -> int:
        return 2 * in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = _unbiased_mean_std(x) if self.unbiased else _mean_std(x)
        return torch.cat([mean, std], dim=-1)


class ASTP(nn.Module):
    """Attentive statistics pooling with channel-wise attention weights.

    Attention: softmax over frames of ``W2 tanh(W1 h + b1) + b2`` (1x1 convolutions, ``bottleneck``
    hidden units); with ``global_context`` the input of ``W1`` is [h; mean; std] (ECAPA-TDNN).
    ``unbiased=True``: that context std is ``sqrt(unbiased variance + 1e-7)`` and the weighted variance
    ``max(E[h^2] - mean^2, 1e-7)``, Wespeaker's formulas. ``hidden_norm=True``: the hidden layer is
    ``tanh(BN(relu(W1 h + b1)))`` (SpeechBrain's); ``std_floor``: the variance floor of the biased formulas.
    """

    def __init__(self, in_dim: int, bottleneck: int = 128, global_context: bool = True, unbiased: bool = False,
                 hidden_norm: bool = False, std_floor: float = 1e-7):
        super().__init__()
        self.in_dim = in_dim
        self.global_context = global_context
        self.unbiased = unbiased
        self.hidden_norm = hidden_norm
        self.std_floor = float(std_floor)
        att_in = 3 * in_dim if global_context else in_dim
        self.attention_hidden = nn.Conv1d(att_in, bottleneck, kernel_size=1)
        self.attention_norm = nn.BatchNorm1d(bottleneck) if hidden_norm else nn.Identity()
        self.attention_out = nn.Conv1d(bottleneck, in_dim, kernel_size=1)
        self.output_dim = self.out_dim(in_dim)

    def out_dim(self, in_dim: int) -> int:
        return 2 * in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_context:
            mean, std = _unbiased_mean_std(x) if self.unbiased else _mean_std(x, self.std_floor)
            context = torch.cat(
                [x, mean.unsqueeze(-1).expand_as(x), std.unsqueeze(-1).expand_as(x)], dim=1
            )
        else:
            context = x
        hidden = self.attention_hidden(context)
        if self.hidden_norm:
            hidden = self.attention_norm(torch.relu(hidden))
        scores = self.attention_out(torch.tanh(hidden))
        weights = torch.softmax(scores, dim=-1)
        if self.unbiased:
            mean = torch.sum(weights * x, dim=-1)
            std = torch.sqrt((torch.sum(weights * (x * x), dim=-1) - mean * mean).clamp(min=1e-7))
        else:
            mean, std = _weighted_mean_std(x, weights, self.std_floor)
        return torch.cat([mean, std], dim=-1)


class NetVLAD(nn.Module):
    """NetVLAD: soft-assigned residuals to ``clusters`` learnt centres, intra-normalised per cluster.

    ``V(k, d) = sum_t a_k(v_t) (v_td - c_kd)`` with ``a = softmax(W v_t + b)`` over
    ``clusters + ghost_clusters``; the ghost clusters take assignment mass but their rows are
    dropped (GhostVLAD). Each row of V is L2-normalised (intra-normalisation), V is flattened to
    ``clusters * in_dim`` and, if ``final_l2``, L2-normalised again (Kaseva & Kurimo replace this
    last step with batch norm: ``final_l2=False``).
    """

    def __init__(self, in_dim: int, clusters: int = 14, ghost_clusters: int = 0, final_l2: bool = True):
        super().__init__()
        if clusters < 1:
            raise VoxflowError(f"pooling clusters={clusters}: must be >= 1")
        if ghost_clusters < 0:
            raise VoxflowError(f"pooling ghost_clusters={ghost_clusters}: must be >= 0")
        self.in_dim = in_dim
        self.clusters = clusters
        self.ghost_clusters = ghost_clusters
        self.final_l2 = final_l2
        self.assignment = nn.Linear(in_dim, clusters + ghost_clusters)
        self.centroids = nn.Parameter(torch.randn(clusters, in_dim) * in_dim**-0.5)
        self.output_dim = self.out_dim(in_dim)

    def out_dim(self, in_dim: int) -> int:
        return self.clusters * in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.transpose(1, 2)  # (batch, frames, dim)
        assign = torch.softmax(self.assignment(v), dim=-1)[:, :, : self.clusters]  # (B, T, K)
        # sum_t a_tk v_td - c_kd sum_t a_tk
        first_order = torch.bmm(assign.transpose(1, 2), v)  # (B, K, D)
        vlad = first_order - assign.sum(dim=1).unsqueeze(-1) * self.centroids.unsqueeze(0)
        vlad = F.normalize(vlad, p=2.0, dim=-1)
        vlad = vlad.reshape(vlad.shape[0], -1)
        if self.final_l2:
            vlad = F.normalize(vlad, p=2.0, dim=-1)
        return vlad


class GhostVLAD(NetVLAD):
    """NetVLAD with ``ghost_clusters`` extra clusters (default 2) that absorb noisy frames."""

    def __init__(self, in_dim: int, clusters: int = 14, ghost_clusters: int = 2, final_l2: bool = True):
        super().__init__(in_dim, clusters=clusters, ghost_clusters=ghost_clusters, final_l2=final_l2)


POOLINGS: Dict[str, type] = {
    "TAP": TAP,
    "TSTP": TSTP,
    "ASTP": ASTP,
    "NetVLAD": NetVLAD,
    "GhostVLAD": GhostVLAD,
}


def pooling_names() -> List[str]:
    """The valid ``pooling=`` values."""
    return list(POOLINGS)


def build_pooling(name: str, in_dim: int, **kwargs) -> nn.Module:
    """Pooling layer ``name`` (case-insensitive) for ``in_dim`` channels; kwargs go to its class."""
    lookup = {key.lower(): cls for key, cls in POOLINGS.items()}
    cls = lookup.get(str(name).lower())
    if cls is None:
        raise VoxflowError(f"unknown pooling={name!r}; valid: {', '.join(POOLINGS)}")
    check_kwargs(cls, kwargs, f"pooling {name!r}", skip=("in_dim",))
    return cls(in_dim, **kwargs)
