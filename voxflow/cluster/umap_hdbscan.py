"""UMAP + HDBSCAN clustering of segment embeddings (Wespeaker's VoxConverse recipe, 3D-Speaker's umap_hdbscan;
Zheng & Suo, ICASSP 2022): UMAP on cosine distance to a few dimensions, HDBSCAN (scikit-learn) there, noise
segments to the nearest cluster, then the speaker count brought into its bounds.

Defaults are Wespeaker's: n_neighbors 16, n_components min(32, N - 2), min_dist 0.05, min_cluster_size 4,
seed 2023, and its PAHC merge of clusters whose means are closer than cosine distance 0.3."""

from __future__ import annotations

import numpy as np

from voxflow.cluster.ahc import merge_closest, reassign_to_nearest
from voxflow.cluster.spectral import by_first_appearance, check_counts, spectral_cluster
from voxflow.errors import VoxflowError


def umap_hdbscan_cluster(
    X,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 10,
    n_neighbors: int = 16,
    n_components: int = 32,
    min_dist: float = 0.05,
    min_cluster_size: int = 4,
    merge_threshold: float = 0.3,
    seed: int = 2023,
) -> np.ndarray:
    """Cluster (N, D) embeddings into speakers; integer labels (N,) numbered by first appearance.

    HDBSCAN's noise segments join the cluster with the most similar mean embedding, then clusters whose means
    are within cosine distance ``merge_threshold`` are merged (most similar first, never below the lower bound). Speaker count: with
    more clusters than ``num_speakers`` (or ``max_speakers``) the most similar clusters are merged down to it;
    with fewer than ``num_speakers`` (or ``min_speakers``), HDBSCAN could not find them and spectral clustering
    with that count decides instead. Fewer than ``n_neighbors + 2`` segments are too few for UMAP's
    neighbourhood graph: spectral clustering (same counts) labels them.
    """
    if n_neighbors < 2 or n_components < 1 or min_cluster_size < 2 or min_dist < 0:
        raise VoxflowError(f"umap_hdbscan: need n_neighbors >= 2, n_components >= 1, min_cluster_size >= 2, "
                           f"min_dist >= 0; got {n_neighbors}, {n_components}, {min_cluster_size}, {min_dist}")
    X = check_counts(X, num_speakers, min_speakers, max_speakers)
    n = X.shape[0]
    counts = dict(num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers)
    if n < n_neighbors + 2:
        return spectral_cluster(X, **counts)
    from sklearn.cluster import HDBSCAN

    umap = _umap()
    Y = umap.UMAP(n_components=min(n_components, n - 2), metric="cosine", n_neighbors=n_neighbors,
                  min_dist=min_dist, random_state=seed, n_jobs=1).fit_transform(X)
    labels = HDBSCAN(min_cluster_size=min_cluster_size, allow_single_cluster=True, copy=False).fit_predict(Y)
    if (labels < 0).all():
        labels[:] = 0
    labels = reassign_to_nearest(X, labels, np.unique(labels[labels >= 0]))
    lo, hi = (num_speakers, num_speakers) if num_speakers is not None else (min_speakers, max_speakers)
    labels = merge_closest(X, labels, hi, merge_threshold, lo)
    if len(np.unique(labels)) < min(lo, n):
        return spectral_cluster(X, num_speakers=min(lo, n))
    return by_first_appearance(labels)


def _umap():
    """The ``umap`` module with numba's on-disk cache turned on for its kernels: umap-learn compiles its parallel
    kernels uncached, about 20 s per process on one core; cached, later processes load them in well under 1 s."""
    try:
        import numba
        import umap
        import umap.layouts
        import umap.umap_
    except ImportError as exc:
        raise VoxflowError("clustering umap_hdbscan needs umap-learn (pip install umap-learn==0.5.12)") from exc
    for mod in (umap.umap_, umap.layouts):
        for f in vars(mod).values():
            if isinstance(f, numba.core.registry.CPUDispatcher) and type(f._cache).__name__ == "NullCache":
                f.enable_caching()
    return umap
