"""The x-vector TDNN of Margin Matters (Xiang et al.), Table 1.

frame1 [t-2,t+2] 512, frame2 {t-2,t,t+2} 512, frame3 {t-3,t,t+3} 512, frame4 {t} 512,
frame5 {t} 1500, statistics pooling (mean+std) 3000, segment6 512, segment7 512; every layer is
affine -> ReLU -> batch norm (Kaldi order). The embedding is segment6's affine output; ``neck``
applies segment6's ReLU+BN and segment7, i.e. what the projection (classification) layer sees.
The frame layers are unpadded dilated convolutions (total context 15), so inputs need >= 15 frames.
``two_embedding_layers``: the embedding is segment7's affine output (embed_dim wide, after segment6's
ReLU + BN) and ``neck`` is the identity: Wespeaker's ``XVEC``.
"""

from typing import Optional

import torch
from torch import nn

from voxflow.models.base import EmbeddingModel
from voxflow.models.pooling import build_pooling


class TDNNLayer(nn.Module):
    """Dilated 1-D convolution over frames, then ReLU and batch norm."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, dilation: int):
        super().__init__()
        self.affine = nn.Conv1d(in_dim, out_dim, kernel_size=kernel_size, dilation=dilation)
        self.norm = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.affine(x)))


class XVector(EmbeddingModel):
    """x-vector TDNN; widths default to Margin Matters Table 1."""

    def __init__(
        self,
        feat_dim: int = 30,
        embed_dim: int = 512,
        channels: int = 512,
        stats_channels: int = 1500,
        pooling: str = "TSTP",
        pooling_kwargs: Optional[dict] = None,
        two_embedding_layers: bool = False,
    ):
        super().__init__(feat_dim, embed_dim)
        self.frames = nn.Sequential(
            TDNNLayer(feat_dim, channels, kernel_size=5, dilation=1),  # frame1 [t-2, t+2]
            TDNNLayer(channels, channels, kernel_size=3, dilation=2),  # frame2 {t-2, t, t+2}
            TDNNLayer(channels, channels, kernel_size=3, dilation=3),  # frame3 {t-3, t, t+3}
            TDNNLayer(channels, channels, kernel_size=1, dilation=1),  # frame4 {t}
            TDNNLayer(channels, stats_channels, kernel_size=1, dilation=1),  # frame5 {t}
        )
        self.pool = build_pooling(pooling, stats_channels, **(pooling_kwargs or {}))
        self.segment6 = nn.Linear(self.pool.output_dim, embed_dim)
        self.segment6_norm = nn.BatchNorm1d(embed_dim)
        self.two_embedding_layers = two_embedding_layers
        self.neck_dim = embed_dim if two_embedding_layers else channels
        self.segment7 = nn.Linear(embed_dim, self.neck_dim)
        self.segment7_norm = nn.Identity() if two_embedding_layers else nn.BatchNorm1d(channels)
        self.min_frames = 15  # total context of frame1-frame3

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.frames(feats.transpose(1, 2))
        emb = self.segment6(self.pool(x))
        if self.two_embedding_layers:
            emb = self.segment7(self.segment6_norm(torch.relu(emb)))
        return emb

    @torch.jit.export
    def neck(self, emb: torch.Tensor) -> torch.Tensor:
        if self.two_embedding_layers:
            return emb
        hidden = self.segment6_norm(torch.relu(emb))
        return self.segment7_norm(torch.relu(self.segment7(hidden)))
