"""Agglomerative hierarchical clustering (AHC) of segment embeddings, as pyannote and 3D-Speaker use it:
average linkage on cosine distance, cut where the merge distance exceeds a threshold."""

from __future__ import annotations

import numpy as np
import scipy.cluster.hierarchy

from voxflow.cluster.kmeans import normalize_rows
from voxflow.cluster.spectral import by_first_appearance, check_counts
from voxflow.errors import VoxflowError


def ahc_cluster(
    X,
    threshold: float = 0.5,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 10,
) -> np.ndarray:
    """Cluster (N, D) embeddings into speakers; integer labels (N,) numbered by first appearance.

    Clusters are merged (average linkage, cosine distance 1 - cos) while their distance is at most
    ``threshold``; the count this gives is then clipped to [min_speakers, max_speakers], or replaced by
    ``num_speakers`` when given; the dendrogram is then cut into exactly that many clusters (at most N).
    """
    if not 0.0 <= threshold <= 2.0:
        raise VoxflowError(f"ahc threshold={threshold!r}: a cosine distance, must lie in [0, 2]")
    X = check_counts(X, num_speakers, min_speakers, max_speakers)
    n = X.shape[0]
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    Z = scipy.cluster.hierarchy.linkage(normalize_rows(X), method="average", metric="cosine")
    if num_speakers is None:
        k = n - int(np.searchsorted(Z[:, 2], threshold, side="right"))  # merges at distance <= threshold
        k = min(max(k, min_speakers), max_speakers)
    else:
        k = num_speakers
    k = min(k, n)
    return by_first_appearance(scipy.cluster.hierarchy.cut_tree(Z, n_clusters=[k]).ravel())
