"""Kaseva & Kurimo's BiLSTM embedder: LSTM cascade -> FC -> NetVLAD or average pooling -> FC -> L2.

Frame level: three bidirectional LSTM layers in cascade (each reads the previous layer's output);
the skip connections carry every layer's (forward, backward) hidden states to the frame features
h = [h1; h2; h3] (6 * hidden wide). Aggregation (every FC: ReLU then batch norm):

* ``lstm_netvlad``: FC 256 -> NetVLAD (K clusters, intra-normalised, no final L2) -> batch norm
  (in place of the flatten L2) -> FC 700 -> L2 normalisation;
* ``lstm_avg``: FC ``frame_dim`` -> average pooling -> batch norm -> FC 700 -> L2 normalisation.

Widths. The figures with the layer sizes are missing from the text; the paper states 6.7 M
parameters for the K=14 model without the classification layer. With 30 MFCC in and H units per
direction, a PyTorch LSTM direction has 4H(in + H) + 8H parameters, so for H = 256:
layer1 2 * 294,912 = 589,824; layers 2 and 3 (in = 512) 2 * 788,480 = 1,576,960 each;
LSTMs 3,743,744. Aggregation with K = 14: FC 1536->256 + BN 393,984; NetVLAD (assignment
256*14+14, centres 14*256) 7,182; BN(3584) 7,168; FC 3584->700 + BN 2,510,900; total 6,662,978
= 6.66 M, i.e. the paper's 6.7 M (K = 8: 5.58 M; K = 30: 9.55 M). The average-pooling twin's
aggregation (FC 1536->F + BN, BN(F), FC F->700 + BN) has 2241 F + 2100 parameters; F = 1300
gives 2,915,400 and 6,659,144 in all, the same size as the K = 14 model.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from voxflow.models.base import EmbeddingModel
from voxflow.models.pooling import build_pooling


class LSTMCascade(nn.Module):
    """``layers`` BiLSTMs in cascade; returns all layers' outputs concatenated (batch, T, 2H*layers)."""

    def __init__(self, feat_dim: int, hidden: int, layers: int):
        super().__init__()
        self.lstms = nn.ModuleList(
            nn.LSTM(feat_dim if i == 0 else 2 * hidden, hidden, batch_first=True, bidirectional=True)
            for i in range(layers)
        )
        self.output_dim = 2 * hidden * layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for lstm in self.lstms:
            x, _ = lstm(x)
            outputs.append(x)
        return torch.cat(outputs, dim=-1)


class LSTMEmbedder(EmbeddingModel):
    """BiLSTM cascade, frame FC, pooling, batch norm, FC, L2 (Kaseva & Kurimo Figs. 2-3)."""

    def __init__(
        self,
        feat_dim: int = 30,
        embed_dim: int = 700,
        hidden: int = 256,
        lstm_layers: int = 3,
        frame_dim: int = 256,
        pooling: str = "NetVLAD",
        pooling_kwargs: Optional[dict] = None,
    ):
        super().__init__(feat_dim, embed_dim)
        self.cascade = LSTMCascade(feat_dim, hidden, lstm_layers)
        self.frame_fc = nn.Linear(self.cascade.output_dim, frame_dim)
        self.frame_norm = nn.BatchNorm1d(frame_dim)
        options = dict(pooling_kwargs or {})
        vlad = str(pooling).lower() in ("netvlad", "ghostvlad")
        if vlad:
            options.setdefault("final_l2", False)  # batch norm replaces the flatten L2
        self.pool = build_pooling(pooling, frame_dim, **options)
        self.pool_norm = nn.BatchNorm1d(self.pool.output_dim)
        self.embed_fc = nn.Linear(self.pool.output_dim, embed_dim)
        self.embed_norm = nn.BatchNorm1d(embed_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.cascade(feats)  # (B, T, 6H)
        v = torch.relu(self.frame_fc(h)).transpose(1, 2)  # (B, frame_dim, T)
        v = self.frame_norm(v)
        pooled = self.pool_norm(self.pool(v))
        emb = self.embed_norm(torch.relu(self.embed_fc(pooled)))
        return F.normalize(emb, p=2.0, dim=-1)


def lstm_netvlad(
    feat_dim: int,
    embed_dim: int = 700,
    clusters: int = 14,
    ghost_clusters: int = 0,
    hidden: int = 256,
    frame_dim: int = 256,
) -> LSTMEmbedder:
    """Kaseva & Kurimo NetVLAD model (K in {8, 14, 30}; 14 is the paper's pick)."""
    pooling = "GhostVLAD" if ghost_clusters > 0 else "NetVLAD"
    opts = {"clusters": clusters, "ghost_clusters": ghost_clusters}
    return LSTMEmbedder(feat_dim, embed_dim, hidden, 3, frame_dim, pooling, opts)


def lstm_avg(feat_dim: int, embed_dim: int = 700, hidden: int = 256, frame_dim: int = 1300) -> LSTMEmbedder:
    """Kaseva & Kurimo average-pooling baseline, sized like the K=14 NetVLAD model."""
    return LSTMEmbedder(feat_dim, embed_dim, hidden, 3, frame_dim, "TAP", None)
