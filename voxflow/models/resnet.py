"""ResNet r-vectors as in Wespeaker (Zeinali et al.'s BUT system, deeper variants).

Features (batch, frames, 80) are treated as a one-channel image (frequency x time): a 3x3 stem
with ``base_channels`` (32) channels, four residual stages of widths 32, 64, 128, 256 (times 4 for
bottleneck blocks) with strides 1, 2, 2, 2 on both axes, then the channel x frequency map is
flattened per frame, pooled over time (statistics pooling by default) and projected to the
256-d embedding by one affine layer (``two_embedding_layers``: then ReLU, batch norm without affine
parameters and a second affine layer, whose output is the embedding: Wespeaker's ``two_emb_layer``).

ResNet34: basic blocks [3, 4, 6, 3]; ResNet221: bottleneck blocks [6, 16, 48, 3];
ResNet293: bottleneck blocks [10, 20, 64, 3] (depth = 2 + 2 or 3 convs per block).
"""

from typing import List, Optional

import torch
from torch import nn

from voxflow.models.base import EmbeddingModel
from voxflow.models.pooling import build_pooling


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) convolutions with batch norm and a shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class ResNet(EmbeddingModel):
    """ResNet over (frequency, time), flattened per frame, pooled, projected to ``embed_dim``."""

    def __init__(
        self,
        feat_dim: int,
        embed_dim: int,
        blocks: List[int],
        bottleneck: bool,
        base_channels: int = 32,
        pooling: str = "TSTP",
        pooling_kwargs: Optional[dict] = None,
        two_embedding_layers: bool = False,
    ):
        super().__init__(feat_dim, embed_dim)
        block = Bottleneck if bottleneck else BasicBlock
        self.stem = nn.Sequential(
            nn.Conv2d(1, base_channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(base_channels),
            nn.ReLU(),
        )
        stages = []
        in_planes = base_channels
        freq = feat_dim
        for i, count in enumerate(blocks):
            planes = base_channels * 2**i
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(count):
                layers.append(block(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*layers))
            freq = (freq - 1) // stride + 1
        self.stages = nn.Sequential(*stages)
        self.pool = build_pooling(pooling, in_planes * freq, **(pooling_kwargs or {}))
        self.embedding = nn.Linear(self.pool.output_dim, embed_dim)
        self.two_embedding_layers = two_embedding_layers
        self.embedding_norm = nn.BatchNorm1d(embed_dim, affine=False) if two_embedding_layers else nn.Identity()
        self.embedding2 = nn.Linear(embed_dim, embed_dim) if two_embedding_layers else nn.Identity()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(feats.transpose(1, 2).unsqueeze(1)))  # (B, C, F', T')
        x = x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        emb = self.embedding(self.pool(x))
        if self.two_embedding_layers:
            emb = self.embedding2(self.embedding_norm(torch.relu(emb)))
        return emb
