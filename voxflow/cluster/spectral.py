"""Spectral clustering of segment embeddings as in the Wespeaker diarization recipe.

1. Affinity: cosine similarity between embeddings.
2. Row-wise pruning: in each row keep the ``n_keep`` most similar other segments and binarise
   (kept -> 1, others -> 0), with n_keep = max(ceil(p_pruning * N), min(min_neighbors, N // 3)),
   capped at N - 1. With the defaults (p=0.01, 10 neighbours) this is Wespeaker's rule for N >= 33
   (10 neighbours below 1000 segments, the top 1% above); for few segments the N // 3 cap keeps the
   graph from becoming complete, which would erase all structure.
3. Symmetrise: A <- (A + A^T) / 2.
4. Unnormalised Laplacian L = D - A (as Wespeaker), eigenvalues ascending.
5. Number of speakers k = argmax_{min <= k <= max} (lambda_{k+1} - lambda_k) unless given.
   ``p_pruning="auto"``: steps 2-5 for a range of neighbour counts, keeping the one NME-SC prefers.
6. Euclidean K-means on the rows of the first k eigenvectors.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from voxflow.cluster.kmeans import kmeans, normalize_rows
from voxflow.errors import VoxflowError

DENSE_MAX = 2000  # above this many segments the eigenproblem is solved sparsely (ARPACK)


def num_neighbors(n: int, p_pruning: float = 0.01, min_neighbors: int = 10) -> int:
    """Neighbours kept per row: max(ceil(p * n), min(min_neighbors, n // 3)), within [1, n - 1]."""
    if isinstance(p_pruning, str) or not 0.0 < p_pruning <= 1.0:
        raise VoxflowError(f"p_pruning={p_pruning!r} must lie in (0, 1] (or be 'auto' in spectral_cluster)")
    return max(min(max(math.ceil(p_pruning * n), min(min_neighbors, n // 3)), n - 1), 1)


def pruned_affinity(X, p_pruning: float = 0.01, min_neighbors: int = 10, sparse: bool = False, n_keep=None):
    """Binarised, symmetrised nearest-neighbour cosine affinity (steps 1-3 above), zero diagonal.

    Dense ndarray by default, ``scipy.sparse`` CSR with ``sparse=True``. Similarities are computed in
    row blocks, so memory is O(N * block) besides the graph. ``n_keep`` overrides the neighbour count.
    """
    cols = _neighbors(normalize_rows(X), n_keep or num_neighbors(len(X), p_pruning, min_neighbors))
    A = _graph(cols)
    return A if sparse else A.toarray()


def _neighbors(Xn: np.ndarray, n_keep: int) -> np.ndarray:
    """(N, n_keep) indices of each row's most cosine-similar other rows, most similar first."""
    n = Xn.shape[0]
    cols = np.empty((n, n_keep), dtype=np.int64)
    block = max(1, min(1024, 2**20 // max(n, 1)))  # rows per similarity block: at most ~1 M floats at a time
    for b in range(0, n, block):
        S = Xn[b : b + block] @ Xn.T
        S[np.arange(S.shape[0]), np.arange(b, b + S.shape[0])] = -np.inf  # never one's own neighbour
        part = np.argpartition(-S, n_keep - 1, axis=1)[:, :n_keep]
        order = np.argsort(-np.take_along_axis(S, part, axis=1), axis=1, kind="stable")
        cols[b : b + block] = np.take_along_axis(part, order, axis=1)
    return cols


def _graph(cols: np.ndarray):
    """Symmetrised binary graph (sparse CSR) linking each row to the columns ``cols`` of its row."""
    n, k = cols.shape
    A = scipy.sparse.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), cols.ravel())), shape=(n, n))
    return (0.5 * (A + A.T)).tocsr()


def auto_pruning(X, max_speakers: int, max_fraction: float = 0.25, steps: int = 20, seed: int = 0):
    """NME-SC (Park et al., IEEE SPL 2020): the neighbour count p (of up to ``steps`` values in
    [1, ``max_fraction`` x N]) minimising p / g_p, where g_p is the largest eigengap among the first
    ``max_speakers`` + 1 Laplacian eigenvalues of the p-pruned graph, normalised by its largest eigenvalue.
    Returns (sparse graph, its smallest eigenvalues and eigenvectors) at that p."""
    Xn = normalize_rows(X)
    n = Xn.shape[0]
    top = max(min(int(max_fraction * n), n - 1), 1)
    cols = _neighbors(Xn, top)
    best = None
    for p in np.unique(np.linspace(1, top, min(steps, top)).round().astype(int)):
        A = _graph(cols[:, :p])
        vals, vecs = _smallest_eigh(A, min(max_speakers, n - 1) + 1, seed)
        lam_max = 2.0 * float(np.asarray(A.sum(axis=1)).max())  # Gershgorin bound of the Laplacian's top eigenvalue
        ratio = p / (np.diff(vals).max() / lam_max + 1e-10)
        if best is None or ratio < best[0]:
            best = (ratio, A, vals, vecs)
    return best[1:]


def _smallest_eigh(A, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The m smallest eigenpairs of the unnormalised Laplacian of sparse A, ascending."""
    n = A.shape[0]
    deg = np.asarray(A.sum(axis=1)).ravel()
    if n <= DENSE_MAX:
        L = np.diag(deg) - A.toarray()
        return scipy.linalg.eigh(L, subset_by_index=[0, m - 1])
    # Large graphs: ARPACK (Lanczos) for the smallest algebraic eigenvalues, fixed start vector.
    L = (scipy.sparse.diags(deg) - A).tocsr()
    v0 = np.random.default_rng(seed).uniform(0.5, 1.5, size=n)
    vals, vecs = scipy.sparse.linalg.eigsh(L, k=m, which="SA", v0=v0)
    order = np.argsort(vals)
    return vals[order], vecs[:, order]


def estimate_num_speakers(eigvals: np.ndarray, min_speakers: int, max_speakers: int) -> int:
    """The k in [min_speakers, max_speakers] with the largest eigengap lambda_{k+1} - lambda_k."""
    gaps = np.diff(np.asarray(eigvals))  # gaps[k-1] = lambda_{k+1} - lambda_k
    hi = min(max_speakers, len(gaps))
    lo = min(min_speakers, hi)
    return lo + int(np.argmax(gaps[lo - 1 : hi]))


def spectral_cluster(
    X,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 10,
    p_pruning: float | str = 0.01,
    seed: int = 0,
    min_neighbors: int = 10,
) -> np.ndarray:
    """Cluster (N, D) embeddings into speakers; returns integer labels (N,) numbered 0..k-1
    in order of first appearance.

    ``p_pruning`` "auto" chooses the neighbour count per recording by NME-SC (:func:`auto_pruning`) instead.
    N < 3 is too small for a graph: each segment becomes its own speaker if ``num_speakers`` or
    ``min_speakers`` demands it, otherwise all share one label.
    """
    X = check_counts(X, num_speakers, min_speakers, max_speakers)
    n = X.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n < 3:
        k = min(num_speakers if num_speakers is not None else min_speakers, n)
        return np.arange(n, dtype=np.int64) if k == n else np.zeros(n, dtype=np.int64)

    if p_pruning == "auto":
        _, vals, vecs = auto_pruning(X, max(max_speakers, num_speakers or 1), seed=seed)
    else:
        A = pruned_affinity(X, p_pruning, min_neighbors, sparse=True)
        m = min(num_speakers, n) if num_speakers is not None else min(max_speakers, n - 1) + 1
        vals, vecs = _smallest_eigh(A, m, seed)
    k = min(num_speakers, n) if num_speakers is not None else estimate_num_speakers(vals, min_speakers, max_speakers)
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    labels, _ = kmeans(vecs[:, :k], k, n_init=10, seed=seed)
    return by_first_appearance(labels)


def by_first_appearance(labels) -> np.ndarray:
    """Relabel clusters 0..k-1 in order of first appearance, so that output does not depend on an algorithm's
    numbering."""
    labels = np.asarray(labels)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse].astype(np.int64)


def check_counts(X, num_speakers: int | None, min_speakers: int, max_speakers: int) -> np.ndarray:
    """Validate (N, D) embeddings (finite, non-zero rows) and the speaker-count bounds; returns X as float64."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise VoxflowError(f"embeddings: expected an (N, D) matrix, got shape {X.shape}")
    if not (1 <= min_speakers <= max_speakers):
        raise VoxflowError(f"need 1 <= min_speakers ({min_speakers}) <= max_speakers ({max_speakers})")
    if num_speakers is not None and num_speakers < 1:
        raise VoxflowError(f"num_speakers={num_speakers!r} must be >= 1")
    if len(X):
        normalize_rows(X, name="embeddings")
    return X
