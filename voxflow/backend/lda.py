"""Linear discriminant analysis and length normalisation, the pre-processing in front of PLDA."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.linalg import eigh, eigvalsh
from scipy.sparse import csr_matrix

from voxflow.errors import VoxflowError

EIG_FLOOR = 1e-6  # relative eigenvalue floor (Kaldi's ivector-compute-lda --covariance-floor): below it is "null"
FIT_CHUNK = 65_536  # rows per block of the training statistics: only one block is ever copied to float64
log = logging.getLogger(__name__)


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


def as_rows(x, what: str = "embeddings", chunk: int = FIT_CHUNK) -> np.ndarray:
    """``x`` as an (N, D) float32/float64 matrix without copying it, checked for non-finite values block by block."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if x.ndim != 2:
        raise VoxflowError(f"{what} must be an (N, D) matrix, got shape {x.shape}")
    for lo in range(0, len(x), chunk):
        bad = ~np.isfinite(x[lo:lo + chunk]).all(axis=1)
        if bad.any():
            raise VoxflowError(f"{what} contain non-finite values (row {lo + int(np.flatnonzero(bad)[0])})")
    return x


def chunked_mean(x: np.ndarray, chunk: int = FIT_CHUNK) -> np.ndarray:
    """Column means of ``x`` (float64), summed block by block."""
    total = np.zeros(x.shape[1])
    for lo in range(0, len(x), chunk):
        total += np.asarray(x[lo:lo + chunk], dtype=np.float64).sum(axis=0)
    return total / max(len(x), 1)


def class_scatter(x: np.ndarray, codes: np.ndarray, k: int, rows=None,
                  chunk: int = FIT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums (k, D') and the scatter matrix sum of r r^T (D', D') of the rows ``r = rows(block)`` of
    ``x`` (float64 blocks; ``rows`` None: the rows themselves), accumulated block by block: memory is one block,
    not N x D float64 copies."""
    sums, scatter = None, None
    for lo in range(0, len(x), chunk):
        block = np.asarray(x[lo:lo + chunk], dtype=np.float64)
        r = block if rows is None else rows(block)
        if sums is None:
            sums, scatter = np.zeros((k, r.shape[1])), np.zeros((r.shape[1], r.shape[1]))
        sums += class_sums(r, codes[lo:lo + chunk], k)
        scatter += r.T @ r
    return sums, scatter


def check_matrix(x, what: str = "embeddings") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise VoxflowError(f"{what} must be an (N, D) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise VoxflowError(f"{what} contain non-finite values (row {int(np.flatnonzero(~np.isfinite(x).all(1))[0])})")
    return x


def describe(x: np.ndarray, codes: np.ndarray, k: int) -> str:
    """The counts a user needs to judge training data: utterances, speakers, singletons, dimension, rank."""
    counts = np.bincount(codes, minlength=k)
    x = np.asarray(x, dtype=np.float64)  # the rank tolerance below is float64's (this runs on degenerate data only)
    sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)  # rank relative to the data's scale, not to sv[0]
    rank = int((sv > max(x.shape) * np.finfo(np.float64).eps * np.linalg.norm(x)).sum())
    return (f"{len(x)} utterances of {k} speakers ({int((counts == 1).sum())} with a single utterance), "
            f"{x.shape[1]}-d embeddings of rank {rank} after centring")


def _differ(x: np.ndarray, ref_rows: np.ndarray, chunk: int = 4096) -> bool:
    """Whether any row of ``x`` differs from row ``ref_rows[i]`` (in chunks, stopping at the first difference)."""
    return any((x[lo : lo + chunk] != x[ref_rows[lo : lo + chunk]]).any() for lo in range(0, len(x), chunk))


def check_trainable(x: np.ndarray, codes: np.ndarray, k: int, what: str) -> None:
    """Raise a VoxflowError (counts and remedy) when ``what`` (LDA, PLDA) cannot be fitted on ``x`` at all."""
    counts = np.bincount(codes, minlength=k)
    first = np.zeros(k, dtype=np.intp)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # each speaker's first row
    if k < 2:
        problem, fix = "needs at least 2 speakers", "use type: cosine, or train on more speakers"
    elif not _differ(x, np.zeros(len(x), dtype=np.intp)):
        problem = "got identical embeddings for every utterance (the network's output ignores its input)"
        fix = "check the model and its export; no back-end can score such embeddings"
    elif counts.max() < 2:
        problem = "needs within-speaker variation, but every speaker has a single utterance"
        fix = "use type: cosine, or training data with at least 2 utterances per speaker"
    elif not _differ(x, first[codes]):
        problem = "needs within-speaker variation, but each speaker's embeddings are identical"
        fix = "use type: cosine, or training data with different utterances per speaker"
    else:
        return
    raise VoxflowError(f"{what} {problem}: {describe(x, codes, k)}; {fix}")


class LDA:
    """Fisher LDA: the directions maximising between- over within-class variance, whitened within class."""

    def __init__(self, n_components: int = 128):
        self.n_components = int(n_components)
        self.mean: np.ndarray | None = None
        self.transform_matrix: np.ndarray | None = None  # (D, n_components)

    def fit(self, x: np.ndarray, labels, shift: np.ndarray | None = None, chunk: int = FIT_CHUNK) -> "LDA":
        """Fit on embeddings ``x`` (N, D) (minus ``shift``, when given) with class ``labels`` (N,); the statistics
        are accumulated in blocks of ``chunk`` rows (float32 input is never copied whole)."""
        x = as_rows(x, chunk=chunk)
        codes, k = class_codes(labels, len(x), "speaker labels")
        check_trainable(x, codes, k, "LDA")
        dim = x.shape[1]
        if not 1 <= self.n_components <= min(dim, k - 1):
            raise VoxflowError(
                f"LDA to {self.n_components} dims needs <= min(D={dim}, classes-1={k - 1}) components"
            )
        shift = np.zeros(dim) if shift is None else np.asarray(shift, dtype=np.float64)
        self.mean = chunked_mean(x, chunk) - shift
        centre = shift + self.mean
        sums, scatter = class_scatter(x, codes, k, lambda block: block - centre, chunk)
        counts = np.bincount(codes, minlength=k).astype(np.float64)
        class_means = sums / counts[:, None]
        between = (class_means * counts[:, None]).T @ class_means / len(x)
        within = scatter / len(x) - between
        w_vals = eigvalsh(within)
        if w_vals[0] <= EIG_FLOOR * w_vals[-1]:
            self.transform_matrix = self._fit_in_subspace(between, within, x, codes, k)
            return self
        within += np.eye(dim) * (1e-10 * np.trace(within) / dim)  # keep positive definite when N is small
        _, vecs = eigh(between, within)  # ascending eigenvalues; vecs.T @ within @ vecs = I
        self.transform_matrix = vecs[:, ::-1][:, : self.n_components].copy()
        return self

    def _fit_in_subspace(self, between, within, x, codes, k) -> np.ndarray:
        """LDA where the within-class covariance is degenerate (rank N - K < D, constant dimensions): restricted
        to its eigen-directions above ``EIG_FLOOR`` x the largest, where the Fisher ratio is finite (in the others
        the training speakers collapse to points, and PLDA after such an LDA has a singular within covariance)."""
        w_vals, w_vecs = eigh(within)
        keep = w_vals > EIG_FLOOR * w_vals[-1]
        rank = int(keep.sum())
        log.warning("LDA: the within-speaker covariance has %d of %d eigenvalues below %g x the largest (%s); "
                    "LDA restricted to the %d-d subspace above it", len(keep) - rank, len(keep), EIG_FLOOR,
                    describe(x, codes, k), rank)
        if self.n_components > rank:
            log.warning("LDA dimension capped at %d (was %d): the within-speaker covariance supports %d",
                        rank, self.n_components, rank)
            self.n_components = rank
        whiten = w_vecs[:, keep] / np.sqrt(w_vals[keep])  # whiten.T @ within @ whiten = I
        _, vecs = eigh(whiten.T @ between @ whiten)
        return whiten @ vecs[:, ::-1][:, : self.n_components]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Project ``x`` (N, D) to (N, n_components)."""
        if self.transform_matrix is None:
            raise VoxflowError("LDA is not fitted")
        x = check_matrix(x)
        if x.shape[1] != self.mean.shape[0]:
            raise VoxflowError(f"LDA was fitted on {self.mean.shape[0]}-d embeddings, got {x.shape[1]}-d")
        return (x - self.mean) @ self.transform_matrix
