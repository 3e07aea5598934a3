"""Two-covariance PLDA trained by EM, and the LDA + length-norm + PLDA back-end of Margin Matters.

Model: a speaker's latent mean ``y ~ N(mu, B)``; each embedding of that speaker ``x ~ N(y, W)``.
Scoring diagonalises B and W together (``V^T W V = I``, ``V^T B V = diag(psi)``), after which the
same-speaker log-likelihood ratio of a pair is ``const + q(x1) + q(x2) + z(x1) . z(x2)``.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
from scipy.linalg import LinAlgError, cho_factor, cho_solve, eigh, eigvalsh

from voxflow.backend.lda import (EIG_FLOOR, FIT_CHUNK, LDA, as_rows, check_matrix, check_trainable, chunked_mean,
                                 class_codes, class_scatter, class_sums, length_normalize)
from voxflow.backend.npz import load_npz, save_npz
from voxflow.backend.pairs import BilinearSpace, scores_frame, single_threaded_blas, trial_rows
from voxflow.errors import VoxflowError

_LOG_2PI = np.log(2.0 * np.pi)
log = logging.getLogger(__name__)


def _logdet(m: np.ndarray) -> float:
    sign, value = np.linalg.slogdet(m)
    if sign <= 0:
        raise VoxflowError("PLDA covariance is not positive definite")
    return float(value)


def _inv(m: np.ndarray) -> np.ndarray:
    return cho_solve(cho_factor(m), np.eye(len(m)))


def floor_eigenvalues(m: np.ndarray, floor: float = EIG_FLOOR) -> tuple[np.ndarray, int]:
    """``(m, 0)`` when all eigenvalues of the symmetric ``m`` exceed ``floor`` x the largest; otherwise ``m`` with
    the lower ones raised to that floor, and how many were raised."""
    vals = eigvalsh(m)
    if vals[0] > floor * vals[-1]:
        return m, 0
    if vals[-1] <= 0:
        raise VoxflowError("PLDA covariance is zero")
    vals, vecs = eigh(m)
    low = vals <= floor * vals[-1]
    floored = (vecs * np.maximum(vals, floor * vals[-1])) @ vecs.T
    return (floored + floored.T) / 2, int(low.sum())


class PLDA:
    """Two-covariance PLDA: ``fit`` by EM, ``score`` returns natural-log likelihood ratios."""

    def __init__(self, n_iter: int = 10):
        self.n_iter = int(n_iter)
        self.mu: np.ndarray | None = None
        self.between: np.ndarray | None = None  # B, covariance of speaker means
        self.within: np.ndarray | None = None  # W, covariance around a speaker mean

    @classmethod
    def from_params(cls, mu, between, within) -> "PLDA":
        """A PLDA with given mean and between/within-speaker covariances."""
        model = cls()
        model.mu = np.asarray(mu, dtype=np.float64).copy()
        model.between = np.asarray(between, dtype=np.float64).copy()
        model.within = np.asarray(within, dtype=np.float64).copy()
        model._prepare()
        return model

    # ------------------------------------------------------------------ training

    def fit(self, x: np.ndarray, spk_labels, chunk: int = FIT_CHUNK) -> "PLDA":
        """Fit mu, B, W by EM on embeddings ``x`` (N, D) labelled by speaker (statistics in blocks of ``chunk``)."""
        x = as_rows(x, chunk=chunk)
        codes, k = class_codes(spk_labels, len(x), "speaker labels")
        check_trainable(x, codes, k, "PLDA")
        sums, scatter = class_scatter(x, codes, k, chunk=chunk)
        return self.fit_statistics(np.bincount(codes, minlength=k), sums, scatter)

    def fit_statistics(self, counts: np.ndarray, sums: np.ndarray, scatter: np.ndarray) -> "PLDA":
        """Fit by EM from the training statistics: utterances per speaker (k,), per-speaker sums (k, D) and the
        scatter matrix sum of x x^T (D, D) (all that EM needs, so the embeddings can be summarised in blocks)."""
        n, (k, dim) = int(counts.sum()), sums.shape
        # initialise from the class means (moment estimates)
        means = sums / counts[:, None]
        self.mu = means.mean(axis=0)
        within = (scatter - (means * counts[:, None]).T @ means) / n
        between = np.cov(means.T, bias=True)
        ridge = np.eye(dim) * 1e-6 * np.trace(within) / dim
        self.within, self.between = within + ridge, between + ridge
        floored = [self._floor()]  # (within, between) eigenvalues raised, per update
        with single_threaded_blas():  # many small (D x D) products: threads only add overhead
            for _ in range(self.n_iter):
                self._em_step(counts, sums, scatter, n)
                floored.append(self._floor())
        n_w, n_b = np.max(floored, axis=0)
        if n_w or n_b:
            log.warning("PLDA: raised up to %d of %d eigenvalues of the within- and %d of the between-speaker "
                        "covariance to %g x the largest, in %d of %d EM updates (%d embeddings of %d speakers): "
                        "rank-deficient training data (fewer utterances than dimensions, or constant dimensions); "
                        "an LDA in front (lda_dim) avoids this", n_w, dim, n_b, EIG_FLOOR,
                        sum(1 for f in floored if any(f)), len(floored), n, k)
        self._prepare()
        return self

    def _floor(self) -> tuple[int, int]:
        """Relative eigenvalue floors on W and B (untouched when not needed): EM stays finite on rank-deficient data."""
        self.within, n_w = floor_eigenvalues(self.within)
        self.between, n_b = floor_eigenvalues(self.between)
        return n_w, n_b

    def _em_step(self, counts, sums, scatter, n) -> None:
        b_inv, w_inv = _inv(self.between), _inv(self.within)
        k, dim = sums.shape
        post_mean = np.empty((k, dim))
        sum_post_cov = np.zeros((dim, dim))  # sum over speakers of posterior covariances
        sum_n_post_cov = np.zeros((dim, dim))  # ... weighted by the speaker's count
        prior_term = b_inv @ self.mu
        for m in np.unique(counts):  # speakers with the same count share the posterior covariance
            idx = np.flatnonzero(counts == m)
            cov = _inv(b_inv + m * w_inv)
            post_mean[idx] = (prior_term + sums[idx] @ w_inv) @ cov
            sum_post_cov += len(idx) * cov
            sum_n_post_cov += len(idx) * m * cov
        mu = post_mean.mean(axis=0)
        between = (sum_post_cov + post_mean.T @ post_mean) / k - np.outer(mu, mu)
        cross = sums.T @ post_mean
        within = (scatter - cross - cross.T + (post_mean * counts[:, None]).T @ post_mean + sum_n_post_cov) / n
        self.mu = mu
        self.between = (between + between.T) / 2
        self.within = (within + within.T) / 2

    def log_likelihood(self, x: np.ndarray, spk_labels) -> float:
        """Total marginal log-likelihood of ``x`` grouped by speaker under the model (non-decreasing under EM)."""
        x = check_matrix(x)
        codes, k = class_codes(spk_labels, len(x), "speaker labels")
        dim = x.shape[1]
        xc = x - self.mu
        b_inv, w_inv = _inv(self.between), _inv(self.within)
        counts = np.bincount(codes, minlength=k)
        sums = class_sums(xc, codes, k)
        wf = sums @ w_inv
        total = -0.5 * np.einsum("ij,jk,ik->", xc, w_inv, xc)
        ld_w, ld_b = _logdet(self.within), _logdet(self.between)
        for m in np.unique(counts):
            idx = np.flatnonzero(counts == m)
            prec = b_inv + m * w_inv
            total += 0.5 * np.einsum("ij,ij->", wf[idx], cho_solve(cho_factor(prec), wf[idx].T).T)
            total -= 0.5 * len(idx) * (m * dim * _LOG_2PI + m * ld_w + ld_b + _logdet(prec))
        return float(total)

    # ------------------------------------------------------------------ scoring

    def _prepare(self) -> None:
        """Joint diagonalisation and the per-dimension LLR coefficients."""
        try:
            psi, vecs = eigh(self.between, self.within)
        except LinAlgError as exc:
            raise VoxflowError(f"PLDA within-speaker covariance is not positive definite ({exc})") from exc
        psi = np.maximum(psi, 0.0)
        self._proj = vecs  # u = (x - mu) @ vecs has identity within- and diag(psi) between-covariance
        self._quad = -0.5 * psi**2 / ((2 * psi + 1) * (psi + 1))  # coefficient of u1^2 + u2^2
        self._cross = psi / (2 * psi + 1)  # coefficient of u1 * u2
        self._const = float(np.sum(np.log1p(psi) - 0.5 * np.log1p(2 * psi)))

    def _check_fitted(self, dim: int) -> None:
        if self.mu is None:
            raise VoxflowError("PLDA is not fitted")
        if dim != len(self.mu):
            raise VoxflowError(f"PLDA was fitted on {len(self.mu)}-d embeddings, got {dim}-d")

    def space(self, x: np.ndarray) -> BilinearSpace:
        """Map embeddings to the bilinear space where ``z1 . z2 + q1 + q2 + const`` is the LLR."""
        x = check_matrix(x)
        self._check_fitted(x.shape[1])
        u = (x - self.mu) @ self._proj
        return BilinearSpace((u * np.sqrt(self._cross)).astype(np.float32), (u**2) @ self._quad, self._const)

    def score(self, enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
        """LLRs of the row pairs (enroll[i], test[i]), float64; a float when both inputs are single 1-D embeddings."""
        single = np.ndim(enroll) == 1 and np.ndim(test) == 1
        e, t = np.atleast_2d(enroll), np.atleast_2d(test)
        if len(e) != len(t):
            raise VoxflowError(f"enroll and test differ in number of rows: {len(e)} vs {len(t)}")
        e, t = check_matrix(e, "enroll embeddings"), check_matrix(t, "test embeddings")
        self._check_fitted(e.shape[1])
        self._check_fitted(t.shape[1])
        ue = (e - self.mu) @ self._proj
        ut = (t - self.mu) @ self._proj
        llr = self._const + (ue**2 + ut**2) @ self._quad + (ue * ut) @ self._cross
        return float(llr[0]) if single else llr

    def score_matrix(self, enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
        """LLR of every enroll row against every test row, (N_enroll, N_test), float64."""
        se = self.space(enroll)
        st = self.space(test)
        return (se.z.astype(np.float64) @ st.z.T.astype(np.float64)) + se.q[:, None] + st.q[None, :] + self._const

    # ------------------------------------------------------------------ persistence

    def to_arrays(self, prefix: str = "plda_") -> dict:
        self._check_fitted(len(self.mu) if self.mu is not None else 0)
        return {f"{prefix}mu": self.mu, f"{prefix}between": self.between, f"{prefix}within": self.within}

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "plda_", where: str = "") -> "PLDA":
        keys = [f"{prefix}mu", f"{prefix}between", f"{prefix}within"]
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise VoxflowError(f"{where}: PLDA file lacks key(s) {missing}")
        return cls.from_params(*(arrays[k] for k in keys))

    def save(self, path: str | os.PathLike) -> None:
        """Save to a .npz file atomically."""
        save_npz(path, "plda", self.to_arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PLDA":
        arrays = load_npz(path, "plda")
        return cls.from_arrays(arrays, where=str(path))


class PLDABackend:
    """Centre + LDA (``lda_dim``, None to skip) + length normalisation + two-covariance PLDA."""

    def __init__(self, lda_dim: int | None = 128, n_iter: int = 10):
        self.lda_dim = lda_dim
        self.lda: LDA | None = None
        self.mean: np.ndarray | None = None
        self.plda = PLDA(n_iter=n_iter)

    def fit(self, x: np.ndarray, spk_labels, chunk: int = FIT_CHUNK) -> "PLDABackend":
        """Fit on raw embeddings (N, D) labelled by speaker. Every step works on blocks of ``chunk`` rows (the
        mean, the LDA statistics, then the PLDA statistics of the transformed blocks): beyond the input, memory
        is one block, so VoxCeleb2 dev's 1.09 M embeddings fit in a few hundred MB more than they take."""
        x = as_rows(x, chunk=chunk)
        codes, k = class_codes(spk_labels, len(x), "speaker labels")
        self.mean = chunked_mean(x, chunk)
        if self.lda_dim is not None:
            self.lda = LDA(self.lda_dim).fit(x, spk_labels, shift=self.mean, chunk=chunk)
        else:
            check_trainable(x, codes, k, "PLDA")
        sums, scatter = class_scatter(x, codes, k, self._plda_rows, chunk)
        self.plda.fit_statistics(np.bincount(codes, minlength=k), sums, scatter)
        return self

    def _plda_rows(self, x: np.ndarray) -> np.ndarray:
        y = x - self.mean
        return length_normalize(y if self.lda is None else self.lda.transform(y))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Pre-process raw embeddings into the PLDA input space."""
        if self.mean is None:
            raise VoxflowError("PLDA back-end is not fitted")
        x = check_matrix(x)
        if x.shape[1] != len(self.mean):
            raise VoxflowError(f"PLDA back-end was fitted on {len(self.mean)}-d embeddings, got {x.shape[1]}-d")
        y = x - self.mean
        if self.lda is not None:
            y = self.lda.transform(y)
        return length_normalize(y)

    def space(self, x: np.ndarray) -> BilinearSpace:
        return self.plda.space(self.transform(x))

    def score(self, enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
        """LLRs of the row pairs of raw embeddings (a float for two single 1-D embeddings)."""
        llr = self.plda.score(self.transform(np.atleast_2d(enroll)), self.transform(np.atleast_2d(test)))
        return float(llr[0]) if np.ndim(enroll) == 1 and np.ndim(test) == 1 else llr

    def score_trials(
        self, trials_df: pd.DataFrame, ids, matrix: np.ndarray, backend_name: str = "plda"
    ) -> pd.DataFrame:
        """Score a trial table against raw embeddings ``matrix`` (rows named by ``ids``) as a scores table."""
        rows_e, rows_t = trial_rows(trials_df, ids, np.shape(matrix)[0])
        used = np.unique(np.r_[rows_e, rows_t])  # transform only the embeddings the trials use
        space = self.space(np.asarray(matrix)[used])
        return scores_frame(
            trials_df, space.pair_scores(np.searchsorted(used, rows_e), np.searchsorted(used, rows_t)), backend_name
        )

    def to_arrays(self) -> dict:
        """The fitted parameters as named arrays (see ``from_arrays``)."""
        if self.mean is None:
            raise VoxflowError("PLDA back-end is not fitted")
        arrays = {"mean": self.mean, **self.plda.to_arrays()}
        arrays["lda_dim"] = np.array(-1 if self.lda is None else self.lda.n_components)
        if self.lda is not None:
            arrays["lda_mean"] = self.lda.mean
            arrays["lda_transform"] = self.lda.transform_matrix
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict, where: str = "") -> "PLDABackend":
        missing = [k for k in ("mean", "lda_dim") if k not in arrays]
        if missing:
            raise VoxflowError(f"{where}: PLDA back-end lacks key(s) {missing}")
        lda_dim = int(arrays["lda_dim"])
        backend = cls(lda_dim=None if lda_dim < 0 else lda_dim)
        backend.mean = arrays["mean"]
        if lda_dim >= 0:
            if "lda_mean" not in arrays or "lda_transform" not in arrays:
                raise VoxflowError(f"{where}: PLDA back-end file lacks the LDA keys 'lda_mean', 'lda_transform'")
            backend.lda = LDA(lda_dim)
            backend.lda.mean = arrays["lda_mean"]
            backend.lda.transform_matrix = arrays["lda_transform"]
        backend.plda = PLDA.from_arrays(arrays, where=where)
        return backend

    def save(self, path: str | os.PathLike) -> None:
        """Save to a .npz file atomically."""
        save_npz(path, "plda_backend", self.to_arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PLDABackend":
        return cls.from_arrays(load_npz(path, "plda_backend"), where=str(path))
