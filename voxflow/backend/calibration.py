"""Score calibration to log-likelihood ratios by prior-weighted linear logistic regression.

``llr = a * score + w . quality + b`` minimising the Cllr-style objective at prior ``p_target``
(Brümmer's FoCal / BOSARIS):

    p / N_tgt * sum_tgt log(1 + e^-(llr + logit p)) + (1 - p) / N_non * sum_non log(1 + e^(llr + logit p))

solved by Newton's method (the objective is convex). Quality measures (e.g. log durations of
enrollment and test) enter as extra linear terms (quality-measure functions).
"""

from __future__ import annotations

import os

import numpy as np
from scipy.special import expit, log_expit

from voxflow.backend.npz import load_npz, save_npz
from voxflow.errors import VoxflowError
from voxflow.metrics.verification import validate_scores

_RIDGE = 1e-9  # keeps Newton finite on perfectly separable training data


def _features(scores: np.ndarray, quality, n_quality: int | None) -> np.ndarray:
    q = np.zeros((len(scores), 0)) if quality is None else np.asarray(quality, dtype=np.float64)
    if q.ndim == 1:
        q = q[:, None]
    if q.ndim != 2 or len(q) != len(scores):
        raise VoxflowError(f"quality must be (N,) or (N, K) with N={len(scores)} trials, got shape {q.shape}")
    if n_quality is not None and q.shape[1] != n_quality:
        raise VoxflowError(f"calibration was fitted with {n_quality} quality measure(s), got {q.shape[1]}")
    if not np.isfinite(q).all():
        raise VoxflowError("quality measures must be finite")
    return np.column_stack([scores, q, np.ones(len(scores))])


class LogisticCalibration:
    """Affine (plus quality terms) map from scores to calibrated natural-log LLRs."""

    def __init__(self, p_target: float = 0.5, max_iter: int = 100):
        if not 0.0 < p_target < 1.0:
            raise VoxflowError(f"p_target must lie in (0, 1), got {p_target}")
        self.p_target = float(p_target)
        self.max_iter = int(max_iter)
        self.weights: np.ndarray | None = None  # [a, w_1..w_K, b]

    def _objective(self, theta, phi, y, wt, offset):
        z = phi @ theta + offset
        ll = np.where(y, log_expit(z), log_expit(-z))
        return -(wt * ll).sum() + 0.5 * _RIDGE * theta[:-1] @ theta[:-1]

    def fit(self, scores, labels, quality=None) -> "LogisticCalibration":
        """Fit on training ``scores`` with 0/1 ``labels`` (and optional per-trial ``quality`` (N,) or (N, K))."""
        s, y = validate_scores(scores, labels)
        phi = _features(s, quality, None)
        # standardise the non-constant columns for conditioning; undone at the end
        centre = np.r_[phi[:, :-1].mean(axis=0), 0.0]
        scale = np.r_[phi[:, :-1].std(axis=0), 1.0]
        scale[scale == 0] = 1.0
        phi_std = (phi - centre) / scale
        p = self.p_target
        wt = np.where(y, p / y.sum(), (1 - p) / (~y).sum())
        offset = np.log(p / (1 - p))
        theta = np.zeros(phi.shape[1])
        ridge = np.r_[np.full(phi.shape[1] - 1, _RIDGE), 0.0]
        obj = self._objective(theta, phi_std, y, wt, offset)
        for _ in range(self.max_iter):
            z = phi_std @ theta + offset
            resid = expit(z) - y  # d/dz of the per-trial loss
            grad = phi_std.T @ (wt * resid) + ridge * theta
            hess = (phi_std * (wt * expit(z) * expit(-z))[:, None]).T @ phi_std + np.diag(ridge)
            step = np.linalg.solve(hess + 1e-15 * np.eye(len(theta)), grad)
            t = 1.0
            while True:  # backtracking line search
                new = theta - t * step
                new_obj = self._objective(new, phi_std, y, wt, offset)
                if new_obj <= obj or t < 1e-10:
                    break
                t *= 0.5
            converged = obj - new_obj < 1e-14 * max(1.0, abs(obj))
            theta, obj = new, new_obj
            if converged:
                break
        w = theta / scale
        w[-1] = theta[-1] - (theta[:-1] * centre[:-1] / scale[:-1]).sum()
        self.weights = w
        return self

    def transform(self, scores, quality=None) -> np.ndarray:
        """Calibrated LLRs of ``scores`` (with the same quality measures as in ``fit``)."""
        if self.weights is None:
            raise VoxflowError("calibration is not fitted")
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not np.isfinite(s).all():
            raise VoxflowError("scores must be finite")
        return _features(s, quality, len(self.weights) - 2) @ self.weights

    def save(self, path: str | os.PathLike) -> None:
        if self.weights is None:
            raise VoxflowError("calibration is not fitted")
        save_npz(path, "calibration", {"weights": self.weights, "p_target": np.array(self.p_target)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LogisticCalibration":
        arrays = load_npz(path, "calibration", required=("weights", "p_target"))
        model = cls(float(arrays["p_target"]))
        model.weights = np.asarray(arrays["weights"], dtype=np.float64)
        return model
