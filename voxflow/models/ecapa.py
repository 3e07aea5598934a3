"""ECAPA-TDNN (Desplanques et al.), as in Wespeaker's ``ECAPA_TDNN_GLOB`` models.

Conv1d k5 (C channels) -> three SE-Res2Blocks (kernel 3, dilations 2, 3, 4, scale 8, SE
bottleneck 128) -> multi-layer feature aggregation: the three block outputs (3C channels) concatenated and
mixed by a 1x1 convolution to 1536 channels (for both C = 512 and C = 1024) -> attentive statistics pooling with
global context (attention bottleneck 128) -> batch norm -> FC 192 -> batch norm = the embedding
(``embedding_norm=False``: the FC output is the embedding, as in Wespeaker without ``emb_bn``).
Every convolution is followed by ReLU then batch norm. C = 512 has 6.19 M parameters,
C = 1024 14.65 M (Wespeaker's model cards; the ECAPA-TDNN paper rounds to 6.2 M / 14.7 M).
"""

from typing import List, Optional

import torch
from torch import nn

from voxflow.models.base import EmbeddingModel
from voxflow.models.pooling import build_pooling


class ConvReluBN(nn.Module):
    """1-D convolution (same-length padding), ReLU, batch norm."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, dilation=dilation, padding=padding)
        self.norm = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.conv(x)))


class Res2Conv(nn.Module):
    """Res2Net convolution: ``scale`` channel groups, each after the first convolved with the
    previous group's output added (hierarchical residual connections)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int):
        super().__init__()
        self.width = channels // scale
        self.convs = nn.ModuleList(
            ConvReluBN(self.width, self.width, kernel_size, dilation) for _ in range(scale - 1)
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

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int = 8, se_bottleneck: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            ConvReluBN(channels, channels, 1),
            Res2Conv(channels, kernel_size, dilation, scale),
            ConvReluBN(channels, channels, 1),
            SqueezeExcitation(channels, se_bottleneck),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


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
    ):
        super().__init__(feat_dim, embed_dim)
        self.stem = ConvReluBN(feat_dim, channels, kernel_size=5)
        self.blocks = nn.ModuleList(
            SERes2Block(channels, kernel_size=3, dilation=d, scale=scale) for d in (2, 3, 4)
        )
        self.aggregate = nn.Conv1d(3 * channels, mfa_channels, kernel_size=1)
        self.pool = build_pooling(pooling, mfa_channels, **(pooling_kwargs or {}))
        self.pool_norm = nn.BatchNorm1d(self.pool.output_dim)
        self.embedding = nn.Linear(self.pool.output_dim, embed_dim)
        self.embedding_norm = nn.BatchNorm1d(embed_dim) if embedding_norm else nn.Identity()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.stem(feats.transpose(1, 2))
        outputs: List[torch.Tensor] = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        x = torch.relu(self.aggregate(torch.cat(outputs, dim=1)))
        return self.embedding_norm(self.embedding(self.pool_norm(self.pool(x))))
