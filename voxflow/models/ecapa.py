"""ECAPA-TDNN (Desplanques et al.), as in Wespeaker's ``ECAPA_TDNN_GLOB`` models.

Conv1d k5 (C channels) -> three SE-Res2Blocks (kernel 3, dilations 2, 3, 4, scale 8, SE
bottleneck 128) -> multi-layer feature aggregation: the three block outputs (3C channels) concatenated and
mixed by a 1x1 convolution to 1536 channels (for both C = 512 and C = 1024) -> attentive statistics pooling with
global context (attention bottleneck 128) -> batch norm -> FC 192 -> batch norm = the embedding
(``embedding_norm=False``: the FC output is the embedding, as in Wespeaker without ``emb_bn``).
Every convolution is followed by ReLU then batch norm. C = 512 has 6.19 M parameters,
C = 1024 14.65 M (Wespeaker's model cards; the ECAPA-TDNN paper rounds to 6.2 M / 14.7 M).

Options for SpeechBrain's ``ECAPA_TDNN`` (defaults: the above): ``kernel_sizes`` / ``dilations`` of the stem,
each SE-Res2Block (their number) and the aggregation; ``padding_mode="reflect"`` pads the k > 1 convolutions by
reflection; ``aggregate_norm`` adds batch norm after the aggregation's ReLU; ``se_channels`` the SE bottleneck;
the pooling's own options (ASTP ``hidden_norm``, ``std_floor``); ``output_norm`` subtracts a fixed mean and
divides by a fixed std at the end (SpeechBrain's ``mean_var_norm_emb``; buffers, not trained).
"""

from typing import List, Optional, Sequence

import torch
from torch import nn

from voxflow.errors import VoxflowError
from voxflow.models.base import EmbeddingModel
from voxflow.models.pooling import build_pooling


def same_length_conv(in_dim: int, out_dim: int, kernel_size: int, dilation: int, padding_mode: str) -> nn.Conv1d:
    """Conv1d padded by ``dilation * (kernel_size - 1) // 2`` frames on each side (``padding_mode``: zeros or
    reflect), so an odd kernel keeps the length."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Conv1d(in_dim, out_dim, kernel_size, dilation=dilation, padding=padding,
                     padding_mode=padding_mode if padding else "zeros")


class ConvReluBN(nn.Module):
    """1-D convolution (same-length padding), ReLU, batch norm."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 1, dilation: int = 1,
                 padding_mode: str = "zeros"):
        super().__init__()
        self.conv = same_length_conv(in_dim, out_dim, kernel_size, dilation, padding_mode)
        self.norm = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.conv(x)))


class Res2Conv(nn.Module):
    """Res2Net convolution: ``scale`` channel groups, each after the first convolved with the
    previous group's output added (hierarchical residual connections)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int, padding_mode: str = "zeros"):
        super().__init__()
        self.width = channels // scale
        self.convs = nn.ModuleList(
            ConvReluBN(self.width, self.width, kernel_size, dilation, padding_mode) for _ in range(scale - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(x, self.width, dim=1)
        outputs: List[torch.Tensor] = [groups[0]]
        previous = groups[0]
        for i, conv in enumerate(self.convs):
            group = groups[i + 1]
            previous = conv(group if i == 0 else group + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the time-averaged input: sigmoid(W2 relu(W1 mean + b1) + b2)."""

    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.reduce = nn.Conv1d(channels, bottleneck, 1)
        self.expand = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = torch.sigmoid(self.expand(torch.relu(self.reduce(x.mean(dim=-1, keepdim=True)))))
        return x * gates


class SERes2Block(nn.Module):
    """1x1 conv, Res2 dilated conv, 1x1 conv, squeeze-excitation, plus the identity."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int = 8, se_bottleneck: int = 128,
                 padding_mode: str = "zeros"):
        super().__init__()
        self.body = nn.Sequential(
            ConvReluBN(channels, channels, 1),
            Res2Conv(channels, kernel_size, dilation, scale, padding_mode),
            ConvReluBN(channels, channels, 1),
            SqueezeExcitation(channels, se_bottleneck),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Standardise(nn.Module):
    """(x - mean) / std with fixed per-dimension buffers (identity until loaded)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ECAPATDNN(EmbeddingModel):
    """ECAPA-TDNN with ``channels`` (C) wide blocks; 80 fbank in, 192-d embedding."""

    def __init__(
        self,
        feat_dim: int = 80,
        embed_dim: int = 192,
        channels: int = 512,
        scale: int = 8,
        mfa_channels: int = 1536,
        pooling: str = "ASTP",
        pooling_kwargs: Optional[dict] = None,
        embedding_norm: bool = True,
        kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
        dilations: Sequence[int] = (1, 2, 3, 4, 1),
        se_channels: int = 128,
        padding_mode: str = "zeros",
        aggregate_norm: bool = False,
        output_norm: bool = False,
    ):
        super().__init__(feat_dim, embed_dim)
        check_layout(channels, scale, kernel_sizes, dilations, padding_mode)
        self.stem = ConvReluBN(feat_dim, channels, kernel_sizes[0], dilations[0], padding_mode)
        self.blocks = nn.ModuleList(
            SERes2Block(channels, k, d, scale, se_channels, padding_mode)
            for k, d in zip(kernel_sizes[1:-1], dilations[1:-1])
        )
        self.aggregate = same_length_conv(len(self.blocks) * channels, mfa_channels, kernel_sizes[-1], dilations[-1],
                                          padding_mode)
        self.aggregate_norm = nn.BatchNorm1d(mfa_channels) if aggregate_norm else nn.Identity()
        self.pool = build_pooling(pooling, mfa_channels, **(pooling_kwargs or {}))
        self.pool_norm = nn.BatchNorm1d(self.pool.output_dim)
        self.embedding = nn.Linear(self.pool.output_dim, embed_dim)
        self.embedding_norm = nn.BatchNorm1d(embed_dim) if embedding_norm else nn.Identity()
        self.output_norm = Standardise(embed_dim) if output_norm else nn.Identity()
        if padding_mode == "reflect":  # reflection needs more frames than it pads
            self.min_frames = 1 + max(d * (k - 1) // 2 for k, d in zip(kernel_sizes, dilations))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.stem(feats.transpose(1, 2))
        outputs: List[torch.Tensor] = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        x = self.aggregate_norm(torch.relu(self.aggregate(torch.cat(outputs, dim=1))))
        return self.output_norm(self.embedding_norm(self.embedding(self.pool_norm(self.pool(x)))))


def check_layout(channels: int, scale: int, kernel_sizes: Sequence[int], dilations: Sequence[int],
                 padding_mode: str) -> None:
    """VoxflowError unless the sizes build an ECAPA-TDNN: a stem, >= 1 block and the aggregation, odd kernels."""
    if len(kernel_sizes) != len(dilations) or len(kernel_sizes) < 3:
        raise VoxflowError(f"ecapa_tdnn: kernel_sizes {list(kernel_sizes)} and dilations {list(dilations)} must "
                           "have the same length, at least 3 (stem, blocks, aggregation)")
    if any(k < 1 or k % 2 == 0 for k in kernel_sizes) or any(d < 1 for d in dilations):
        raise VoxflowError(f"ecapa_tdnn: kernel_sizes {list(kernel_sizes)} must be odd and dilations "
                           f"{list(dilations)} positive (same-length padding)")
    if scale < 2 or channels % scale:
        raise VoxflowError(f"ecapa_tdnn: channels {channels} must split into scale {scale} >= 2 equal groups")
    if padding_mode not in ("zeros", "reflect"):
        raise VoxflowError(f"ecapa_tdnn: padding_mode {padding_mode!r}; known: zeros, reflect")
