"""Linear discriminant analysis and length normalisation, the pre-processing in front of PLDA."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.linalg import eigh
from scipy.sparse import csr_matrix

from voxflow.errors import VoxflowError


def length_normalize(x: np.ndarray) -> np.ndarray:
    """Scale each row to L2 norm sqrt(D) (Garcia-Romero & Espy-Wilson; Kaldi's convention), float64."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    return x * (np.sqrt(x.shape[1]) / norms)


def class_codes(labels, n: int, what: str = "labels") -> tuple[np.ndarray, int]:
    """Integer codes 0..K-1 of ``labels`` (one per row), checking the length."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise VoxflowError(f"{what} must be 1-D with one entry per embedding ({n}), got shape {labels.shape}")
    codes, uniques = pd.factorize(labels)
    return codes, len(uniques)


def class_sums(x: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Row sums of ``x`` per class code, (k, D) float64 (a sparse one-hot product)."""
    onehot = csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(k, len(codes)))
    return np.asarray(onehot @ np.asarray(x, dtype=np.float64))


def check_matrix(x, what: str = "embeddings") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise VoxflowError(f"{what} must be an (N, D) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise VoxflowError(f"{what} contain non-finite values (row {int(np.flatnonzero(~np.isfinite(x).all(1))[0])})")
    return x


class LDA:
    """Fisher LDA: the directions maximising between- over within-class variance, whitened within class."""

    def __init__(self, n_components: int = 128):
        self.n_components = int(n_components)
        self.mean: np.ndarray | None = None
        self.transform_matrix: np.ndarray | None = None  # (D, n_components)

    def fit(self, x: np.ndarray, labels) -> "LDA":
        """Fit on embeddings ``x`` (N, D) with class ``labels`` (N,)."""
        x = check_matrix(x)
        codes, k = class_codes(labels, len(x), "speaker labels")
        dim = x.shape[1]
        if not 1 <= self.n_components <= min(dim, k - 1):
            raise VoxflowError(
                f"LDA to {self.n_components} dims needs <= min(D={dim}, classes-1={k - 1}) components"
            )
        self.mean = x.mean(axis=0)
        xc = x - self.mean
        counts = np.bincount(codes, minlength=k).astype(np.float64)
        class_means = class_sums(xc, codes, k) / counts[:, None]
        between = (class_means * counts[:, None]).T @ class_means / len(x)
        within = xc.T @ xc / len(x) - between
        within += np.eye(dim) * (1e-10 * np.trace(within) / dim)  # keep positive definite when N is small
        _, vecs = eigh(between, within)  # ascending eigenvalues; vecs.T @ within @ vecs = I
        self.transform_matrix = vecs[:, ::-1][:, : self.n_components].copy()
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Project ``x`` (N, D) to (N, n_components)."""
        if self.transform_matrix is None:
            raise VoxflowError("LDA is not fitted")
        x = check_matrix(x)
        if x.shape[1] != self.mean.shape[0]:
            raise VoxflowError(f"LDA was fitted on {self.mean.shape[0]}-d embeddings, got {x.shape[1]}-d")
        return (x - self.mean) @ self.transform_matrix
