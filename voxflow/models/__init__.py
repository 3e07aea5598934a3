"""Speaker-embedding models and pooling layers; ``build(name, feat_dim, ...)`` picks one by name."""

from voxflow.models.base import EmbeddingModel
from voxflow.models.pooling import build_pooling, pooling_names
from voxflow.models.registry import build, names

__all__ = ["EmbeddingModel", "build", "build_pooling", "names", "pooling_names"]
