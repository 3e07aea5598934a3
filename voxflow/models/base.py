"""Common interface of the embedding extractors."""

import torch
from torch import nn


class EmbeddingModel(nn.Module):
    """Maps features (batch, frames, feat_dim) to embeddings (batch, embed_dim).

    ``neck(emb)`` is what the classification head sees during training: the identity here;
    models with segment-level layers after the embedding (the x-vector) override it and set
    ``neck_dim`` (the width the head must take) accordingly.
    """

    def __init__(self, feat_dim: int, embed_dim: int):
        super().__init__()
        self.feat_dim = int(feat_dim)
        self.embed_dim = int(embed_dim)
        self.neck_dim = int(embed_dim)

    @torch.jit.export
    def neck(self, emb: torch.Tensor) -> torch.Tensor:
        return emb
