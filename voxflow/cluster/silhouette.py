"""Silhouette coefficients (Rousseeuw 1987) under cosine distance, in O(N D K) instead of O(N^2 D)."""

from __future__ import annotations

import numpy as np

from voxflow.cluster.kmeans import normalize_rows
from voxflow.errors import VoxflowError


def cosine_silhouette_samples(X, labels) -> np.ndarray:
    """Per-sample silhouette s(i) = (b - a) / max(a, b) with cosine distance d(x, y) = 1 - cos(x, y).

    a(i) is the mean distance to the other members of i's cluster, b(i) the smallest mean distance to
    another cluster; s(i) = 0 for a singleton cluster (the convention of Rousseeuw and scikit-learn).
    Mean distances come from cluster sums of unit vectors: mean_j (1 - x_i.x_j) = 1 - x_i.S_c / |c|.
    """
    Xn = normalize_rows(X)
    labels = np.asarray(labels)
    if labels.shape != (Xn.shape[0],):
        raise VoxflowError(f"labels: expected shape ({Xn.shape[0]},), got {labels.shape}")
    uniq, lab = np.unique(labels, return_inverse=True)
    k = len(uniq)
    if not 2 <= k <= Xn.shape[0] - 1:
        raise VoxflowError(f"silhouette needs 2 <= number of clusters <= N-1; got {k} clusters for N={Xn.shape[0]}")
    n = Xn.shape[0]
    onehot = np.zeros((n, k))
    onehot[np.arange(n), lab] = 1.0
    counts = onehot.sum(axis=0)
    sims = Xn @ (onehot.T @ Xn).T  # (N, K): sum of cosines to each cluster, self included in own
    own = np.arange(n), lab
    self_sim = (Xn * Xn).sum(axis=1)
    mean_dist = 1.0 - sims / counts[None, :]
    n_own = counts[lab] - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        a = 1.0 - (sims[own] - self_sim) / n_own
    mean_dist[own] = np.inf
    b = mean_dist.min(axis=1)
    # Distances are >= 0; clip rounding noise as scikit-learn does element-wise.
    a = np.maximum(a, 0.0)
    b = np.maximum(b, 0.0)
    denom = np.maximum(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(denom > 0, (b - a) / denom, 0.0)
    return np.where(n_own > 0, s, 0.0)


def cosine_silhouette(X, labels) -> float:
    """Mean silhouette coefficient with cosine distance (equals sklearn's silhouette_score(metric='cosine'))."""
    return float(cosine_silhouette_samples(X, labels).mean())
