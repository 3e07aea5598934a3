"""K-means: spherical (cosine, unit sphere) and Euclidean, with k-means++ seeding and restarts."""

from __future__ import annotations

import numpy as np

from voxflow.errors import VoxflowError


def _check_matrix(X, k: int | None, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise VoxflowError(f"{name}: expected a non-empty (N, D) matrix, got shape {X.shape}")
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise VoxflowError(f"{name}: row {int(np.flatnonzero(bad)[0])} has non-finite values")
    if k is not None and not (isinstance(k, (int, np.integer)) and 1 <= k <= X.shape[0]):
        raise VoxflowError(f"k={k!r} must be an integer in [1, N={X.shape[0]}]")
    return X


def normalize_rows(X, name: str = "X") -> np.ndarray:
    """L2-normalise the rows of a finite (N, D) matrix; a zero row is an error."""
    X = _check_matrix(X, None, name)
    norms = np.linalg.norm(X, axis=1)
    zero = norms <= np.finfo(np.float64).tiny
    if zero.any():
        raise VoxflowError(f"{name}: row {int(np.flatnonzero(zero)[0])} has zero norm; cannot normalise")
    return X / norms[:, None]


def spherical_mean(X) -> np.ndarray:
    """The SEA aggregate (spherical K-means with K=1): L2-normalised mean of the L2-normalised rows."""
    m = normalize_rows(X).mean(axis=0)
    n = np.linalg.norm(m)
    if n <= np.finfo(np.float64).tiny:
        raise VoxflowError("spherical_mean: the normalised rows sum to zero; the mean direction is undefined")
    return m / n


def _seed(X: np.ndarray, k: int, rng: np.random.Generator, spherical: bool) -> np.ndarray:
    """k-means++: next centre drawn with probability proportional to the squared distance to the nearest centre.

    On the unit sphere the squared Euclidean distance is 2 (1 - cos), so spherical seeding weights by the
    cosine distance 1 - cos.
    """
    n = X.shape[0]
    idx = [int(rng.integers(n))]
    sq = (X * X).sum(axis=1)

    def dist(c: np.ndarray) -> np.ndarray:
        if spherical:
            return np.maximum(1.0 - X @ c, 0.0)
        return np.maximum(sq - 2.0 * X @ c + c @ c, 0.0)

    d = dist(X[idx[0]])
    for _ in range(1, k):
        total = d.sum()
        # All points coincide with a centre: any choice is as good as another.
        nxt = int(rng.choice(n, p=d / total)) if total > 0 else int(rng.integers(n))
        idx.append(nxt)
        d = np.minimum(d, dist(X[nxt]))
    return X[idx].copy()


def _lloyd(X: np.ndarray, C: np.ndarray, max_iter: int, spherical: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Alternate assignment and update until labels stop changing; return (labels, centroids, objective).

    The objective is the total cosine similarity to the assigned centroid (spherical; higher is better) or
    minus the within-cluster sum of squares (Euclidean), so that higher is better in both cases.
    """
    k = C.shape[0]
    sq = (X * X).sum(axis=1)
    labels = None
    for _ in range(max_iter):
        score = X @ C.T if spherical else 2.0 * X @ C.T - (C * C).sum(axis=1)[None, :]
        new = score.argmax(axis=1)
        # Refill empty clusters with the worst-fitted points of clusters that can spare one.
        counts = np.bincount(new, minlength=k)
        if (counts == 0).any():
            fit = score[np.arange(len(new)), new]
            for c in np.flatnonzero(counts == 0):
                for i in np.argsort(fit, kind="stable"):
                    if counts[new[i]] > 1:
                        counts[new[i]] -= 1
                        new[i] = c
                        counts[c] += 1
                        fit[i] = np.inf
                        break
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        onehot = np.zeros((X.shape[0], k))
        onehot[np.arange(X.shape[0]), labels] = 1.0
        counts = onehot.sum(axis=0)
        sums = onehot.T @ X
        for c in range(k):
            if counts[c] == 0:
                continue  # only when fewer distinct points than k; keep the old centroid
            if spherical:
                norm = np.linalg.norm(sums[c])
                # Antipodal members cancel: fall back to the first member's direction.
                C[c] = sums[c] / norm if norm > 1e-12 else X[labels == c][0]
            else:
                C[c] = sums[c] / counts[c]
    if spherical:
        obj = float((X * C[labels]).sum())
    else:
        obj = -float((sq - 2.0 * (X * C[labels]).sum(axis=1) + (C[labels] ** 2).sum(axis=1)).sum())
    return labels.astype(np.int64), C, obj


def _kmeans(X: np.ndarray, k: int, n_init: int, max_iter: int, seed: int, spherical: bool):
    if not (isinstance(n_init, (int, np.integer)) and n_init >= 1):
        raise VoxflowError(f"n_init={n_init!r} must be a positive integer")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise VoxflowError(f"max_iter={max_iter!r} must be a positive integer")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        labels, C, obj = _lloyd(X, _seed(X, k, rng, spherical), max_iter, spherical)
        if best is None or obj > best[2] + 1e-12 * max(1.0, abs(best[2])):
            best = (labels, C, obj)
    return best[0], best[1]


def spherical_kmeans(X, k: int, n_init: int = 10, max_iter: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine K-means on the unit sphere (Dhillon & Modha); returns (labels (N,), unit centroids (k, D)).

    Rows are L2-normalised; each point goes to the centroid of highest cosine similarity; a centroid is the
    normalised mean of its members. Seeds are k-means++ on cosine distance; of ``n_init`` runs the one with
    the largest total cosine similarity wins. Deterministic for a given ``seed``.
    """
    Xn = normalize_rows(_check_matrix(X, k))
    return _kmeans(Xn, int(k), n_init, max_iter, seed, spherical=True)


def kmeans(X, k: int, n_init: int = 10, max_iter: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean K-means (Lloyd, k-means++ seeds, best of ``n_init`` by inertia); returns (labels, centroids)."""
    X = _check_matrix(X, k)
    return _kmeans(X, int(k), n_init, max_iter, seed, spherical=False)
