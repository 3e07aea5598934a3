"""Agglomerative hierarchical clustering (AHC) of segment embeddings, as pyannote and 3D-Speaker use it:
average linkage on cosine distance, cut where the merge distance exceeds a threshold; clusters smaller than
``min_cluster_size`` are not speakers, their segments join the nearest large cluster."""

from __future__ import annotations

import numpy as np
import scipy.cluster.hierarchy

from voxflow.cluster.kmeans import normalize_rows
from voxflow.cluster.spectral import by_first_appearance, check_counts
from voxflow.errors import VoxflowError


def reassign_to_nearest(X, labels, keep) -> np.ndarray:
    """Labels with every segment whose label is not in ``keep`` moved to the kept cluster whose mean (of the
    length-normalised embeddings) is most cosine-similar; HDBSCAN noise (-1) is handled the same way."""
    labels = np.asarray(labels).copy()
    keep = np.asarray(sorted(keep))
    move = ~np.isin(labels, keep)
    if move.any() and len(keep):
        Xn = normalize_rows(X)
        centres = normalize_rows(np.stack([Xn[labels == k].mean(axis=0) for k in keep]))
        labels[move] = keep[np.argmax(Xn[move] @ centres.T, axis=1)]
    return labels


def merge_closest(X, labels, k: int, threshold: float = 0.0, k_min: int = 1) -> np.ndarray:
    """Merge the two clusters with the most cosine-similar means while there are more than ``k``, or while
    their cosine distance is below ``threshold`` and there are more than ``k_min``."""
    labels = np.asarray(labels).copy()
    Xn = normalize_rows(X)
    while True:
        ids = np.unique(labels)
        if len(ids) <= max(k_min, 1) and len(ids) <= k:
            return labels
        c = normalize_rows(np.stack([Xn[labels == i].mean(axis=0) for i in ids]))
        S = np.triu(c @ c.T, 1) - np.tril(np.full((len(ids), len(ids)), np.inf))
        a, b = np.unravel_index(np.argmax(S), S.shape)
        if len(ids) <= k and 1.0 - S[a, b] >= threshold:
            return labels
        labels[labels == ids[b]] = ids[a]


def ahc_cluster(
    X,
    threshold: float = 0.3,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 10,
    min_cluster_size: int = 4,
) -> np.ndarray:
    """Cluster (N, D) embeddings into speakers; integer labels (N,) numbered by first appearance.

    Clusters are merged (average linkage, cosine distance 1 - cos) while their distance is at most
    ``threshold``; the speakers are the clusters of at least ``min_cluster_size`` segments there, their count
    clipped to [min_speakers, max_speakers] (all clusters count when none is large), or ``num_speakers`` when given (k, at most N). The dendrogram is
    then cut at the coarsest level with k such large clusters (as pyannote does), and the segments of the
    smaller clusters join the nearest large one (:func:`reassign_to_nearest`). Where no level has k large
    clusters (few segments), the cut into k clusters is kept as it is. ``min_cluster_size`` 1 is plain AHC.
    """
    if not 0.0 <= threshold <= 2.0:
        raise VoxflowError(f"ahc threshold={threshold!r}: a cosine distance, must lie in [0, 2]")
    if min_cluster_size < 1:
        raise VoxflowError(f"ahc min_cluster_size={min_cluster_size!r} must be >= 1")
    X = check_counts(X, num_speakers, min_speakers, max_speakers)
    n = X.shape[0]
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    Z = scipy.cluster.hierarchy.linkage(normalize_rows(X), method="average", metric="cosine")
    large = _large_per_level(Z, n, min_cluster_size)  # large[j]: large clusters after j merges (n - j clusters)
    if num_speakers is None:
        merges = int(np.searchsorted(Z[:, 2], threshold, side="right"))  # merges at distance <= threshold
        k = min(max(large[merges] or n - merges, min_speakers), max_speakers)  # none large: all count
    else:
        k = num_speakers
    k = min(k, n)
    reach = np.flatnonzero(large[: n - k + 1] >= k)  # levels with at least k clusters and k large ones
    level = n - int(reach[-1]) if len(reach) else k
    labels = scipy.cluster.hierarchy.cut_tree(Z, n_clusters=[level]).ravel()
    if level > k:
        sizes = np.bincount(labels)
        labels = reassign_to_nearest(X, labels, np.flatnonzero(sizes >= min_cluster_size))
    return by_first_appearance(labels)


def _large_per_level(Z, n: int, min_size: int) -> np.ndarray:
    """Number of clusters of at least ``min_size`` segments after each number of merges 0..n-1 of linkage Z."""
    size = np.concatenate([np.ones(n), Z[:, 3]])
    step = (Z[:, 3] >= min_size).astype(int) - (size[Z[:, 0].astype(int)] >= min_size) - (size[Z[:, 1].astype(int)] >= min_size)
    return np.concatenate([[n if min_size <= 1 else 0], (n if min_size <= 1 else 0) + np.cumsum(step)])
