"""GE2E LSTM speaker encoder (Wan et al. 2018) as Resemblyzer's ``VoiceEncoder`` computes it.

Unidirectional LSTM stack (40 power-mel channels in, 3 layers of 256) -> the last layer's final hidden state
-> linear 256 -> ReLU -> L2 normalisation. With the same parameter names under ``lstm.`` / ``linear.``,
Resemblyzer's ``pretrained.pt`` loads into it unchanged (``voxflow.pretrained.resemblyzer``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from voxflow.models.base import EmbeddingModel


class GE2ELSTM(EmbeddingModel):
    """LSTM stack -> final hidden state -> linear -> ReLU -> L2 (Resemblyzer ``VoiceEncoder.forward``)."""

    def __init__(self, feat_dim: int = 40, embed_dim: int = 256, hidden: int = 256, lstm_layers: int = 3):
        super().__init__(feat_dim, embed_dim)
        self.lstm = nn.LSTM(feat_dim, hidden, lstm_layers, batch_first=True)
        self.linear = nn.Linear(hidden, embed_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(feats)
        return F.normalize(torch.relu(self.linear(hidden[-1])), p=2.0, dim=-1)


def ge2e_lstm(feat_dim: int, embed_dim: int = 256, hidden: int = 256, lstm_layers: int = 3) -> GE2ELSTM:
    """Resemblyzer's GE2E encoder (40 mel in, 3 x 256 LSTM, 256-d embedding; 1.42 M parameters)."""
    return GE2ELSTM(feat_dim, embed_dim, hidden, lstm_layers)
