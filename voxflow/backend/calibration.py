"""Score calibration to log-likelihood ratios by prior-weighted linear logistic regression.

``llr = a * score + w . quality + b`` minimising the Cllr-style objective at prior ``p_target``
(Brümmer's FoCal / BOSARIS):

    p / N_tgt * sum_tgt log(1 + e^-(llr + logit p)) + (1 - p) / N_non * sum_non log(1 + e^(llr + logit p))

solved by Newton's method (the objective is convex). Quality measures (e.g. log durations of
enrollment and test, embedding norms: ``trial_quality``) enter as extra linear terms, as in the
quality-measure functions (QMF) of Wespeaker's calibration stage. Scores that separate the targets from the
non-targets perfectly would drive the slope to infinity: there each class is smoothed as in Platt scaling, a
fraction ``1 / (N + 2)`` of its weight given to the other class's label, which bounds the LLRs.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit

from voxflow.backend.npz import load_npz, save_npz
from voxflow.errors import VoxflowError
from voxflow.metrics.verification import validate_scores

_RIDGE = 1e-9  # keeps Newton finite on perfectly separable training data
_FLAT_RELATIVE = 1e-5  # a column whose standard deviation is below this fraction of its mean is constant
log = logging.getLogger(__name__)


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
        self.constant_quality: list[int] = []  # quality columns left out (weight 0) as constant

    def _objective(self, theta, phi, y, wt, offset):
        z = phi @ theta + offset
        ll = y * log_expit(z) + (1 - y) * log_expit(-z)
        return -(wt * ll).sum() + 0.5 * _RIDGE * theta[:-1] @ theta[:-1]

    def fit(self, scores, labels, quality=None) -> "LogisticCalibration":
        """Fit on training ``scores`` with 0/1 ``labels`` (and optional per-trial ``quality`` (N,) or (N, K))."""
        s, labels = validate_scores(scores, labels)
        phi = _features(s, quality, None)
        y, wt = self._targets(s, labels)
        # standardise the non-constant columns for conditioning; undone at the end
        centre = np.r_[phi[:, :-1].mean(axis=0), 0.0]
        scale = np.r_[phi[:, :-1].std(axis=0), 1.0]
        # quality columns constant up to rounding (e.g. norms of L2-normalised embeddings) carry no information
        # but would let separable training data drive their weights to anything: their weight is fixed at 0
        flat = scale[:-1] <= _FLAT_RELATIVE * np.abs(centre[:-1])
        self.constant_quality = [int(j) for j in np.flatnonzero(flat[1:])]
        if self.constant_quality:
            log.warning("quality measure column(s) %s are constant; left out of the calibration",
                        self.constant_quality)
        flat[0] = s.min() == s.max()  # constant scores (warned in _targets): slope 0
        scale[scale == 0] = 1.0
        phi_std = (phi - centre) / scale
        phi_std[:, np.flatnonzero(flat)] = 0.0
        p = self.p_target
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
        if not np.isfinite(w).all():
            raise VoxflowError(f"calibration did not converge to finite weights on {len(s)} trials: {w.tolist()}")
        self.weights = w
        return self

    def _targets(self, s: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-trial regression targets and prior weights: the 0/1 labels weighted ``p / N_tgt``, ``(1 - p) / N_non``;
        Platt-smoothed (with a warning) when the scores separate the classes."""
        p, n_tgt, n_non = self.p_target, int(labels.sum()), int((~labels).sum())
        tgt, non = s[labels], s[~labels]
        if tgt.min() == tgt.max() == non.min() == non.max():
            log.warning("calibration scores are constant (%g on all %d trials): they carry no information, the "
                        "calibrated LLR does not depend on them", tgt[0], len(s))
        if not (tgt.min() > non.max() or tgt.max() < non.min()):
            return labels.astype(np.float64), np.where(labels, p / n_tgt, (1 - p) / n_non)
        a, b = 1 / (n_tgt + 2), 1 / (n_non + 2)
        log.warning("calibration scores separate all %d target from all %d non-target trials perfectly: labels "
                    "smoothed (Platt: %.3g of the targets' and %.3g of the non-targets' weight to the other label) "
                    "to keep the LLRs finite; use more calibration trials", n_tgt, n_non, a, b)
        w_tgt = np.where(labels, p * (1 - a) / n_tgt, p * b / n_non)
        w_non = np.where(labels, (1 - p) * a / n_tgt, (1 - p) * (1 - b) / n_non)
        return w_tgt / (w_tgt + w_non), w_tgt + w_non

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


QUALITY_MEASURES = ("duration", "norm")


def _side_values(values: pd.Series, ids: pd.Series, measure: str, where: str) -> np.ndarray:
    index = pd.Index(values.index)
    if not index.is_unique:
        raise VoxflowError(f"{where}: id {index[index.duplicated()][0]!r} occurs more than once")
    pos = index.get_indexer(ids)
    if (pos < 0).any():
        missing = ids[pos < 0]
        raise VoxflowError(f"{where}: {measure} of {len(set(missing))} trial id(s) unknown, e.g. {missing.iloc[0]!r}")
    return values.to_numpy(dtype=np.float64)[pos]


def embedding_norms(path: str | os.PathLike, batch_rows: int = 65536) -> pd.Series:
    """L2 norm of every embedding of an embeddings table (utt_id -> norm), read in batches (bounded memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
        ids, norms = [], []
        for batch in reader.iter_batches(batch_size=batch_rows, columns=["utt_id", "embedding"]):
            col = batch.column("embedding")
            if not pa.types.is_fixed_size_list(col.type):
                raise VoxflowError(f"{path}: column 'embedding' must be fixed_size_list<float32>, got {col.type}")
            x = col.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(batch), -1)
            norms.append(np.sqrt(np.einsum("ij,ij->i", x, x)))
            ids.extend(batch.column("utt_id").to_pylist())
    except (OSError, KeyError, pa.ArrowException) as exc:
        raise VoxflowError(f"{path}: cannot read embeddings (utt_id, embedding): {exc}") from exc
    return pd.Series(np.concatenate(norms) if norms else np.zeros(0), index=pd.Index(ids, name="utt_id"))


def quality_columns(measures) -> list[str]:
    """Names of the columns ``trial_quality`` makes for ``measures``."""
    return [f"{m}_{side}" for m in measures for side in ("min", "max")]


def trial_quality(trials: pd.DataFrame, measures, durations: pd.Series | None = None,
                  norms: pd.Series | None = None, where: str = "trials") -> np.ndarray:
    """Per-trial quality measures, (N, 2 x len(measures)): for each measure the smaller and the larger of the
    enrolment and test values (symmetric in the two sides). ``duration``: log seconds from ``durations``
    (utterance id -> duration_s); ``norm``: the raw embedding L2 norm from ``norms`` (id -> norm)."""
    cols = []
    for measure in measures:
        if measure not in QUALITY_MEASURES:
            raise VoxflowError(f"{where}: quality measure {measure!r} unknown; choose from {QUALITY_MEASURES}")
        values = durations if measure == "duration" else norms
        if values is None:
            raise VoxflowError(f"{where}: quality measure {measure!r} needs its per-utterance values")
        e = _side_values(values, trials["enroll_id"], measure, where)
        t = _side_values(values, trials["test_id"], measure, where)
        if measure == "duration":
            if (np.r_[e, t] <= 0).any():
                raise VoxflowError(f"{where}: durations must be positive")
            e, t = np.log(e), np.log(t)
        cols += [np.minimum(e, t), np.maximum(e, t)]
    return np.column_stack(cols) if cols else np.zeros((len(trials), 0))


def calibrate_scores(cal_scores: pd.DataFrame, scores: pd.DataFrame, p_target: float = 0.01, quality=(),
                     cal_values: dict | None = None, values: dict | None = None,
                     where: str = "") -> tuple[pd.DataFrame, LogisticCalibration]:
    """Fit a calibration on the labelled scores table ``cal_scores`` and apply it to the scores table ``scores``.

    ``quality`` names measures of ``QUALITY_MEASURES``; ``cal_values`` / ``values`` map each to its per-utterance
    values (a Series indexed by utterance id) for the calibration and the evaluation trials. Returns the
    calibrated table (``score`` the LLR, ``raw_score`` the input score) and the fitted model.
    """
    quality = list(quality)
    cal_values, values = cal_values or {}, values or {}
    q_cal = trial_quality(cal_scores, quality, cal_values.get("duration"), cal_values.get("norm"),
                          where=f"{where} calibration trials")
    q_eval = trial_quality(scores, quality, values.get("duration"), values.get("norm"), where=f"{where} trials")
    labels = cal_scores["label"].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise VoxflowError(f"{where}: calibration trials need 0/1 labels, found {labels[~np.isin(labels, (0, 1))][0]}")
    try:
        model = LogisticCalibration(p_target).fit(cal_scores["score"].to_numpy(), labels, q_cal if quality else None)
    except VoxflowError as exc:
        raise VoxflowError(f"{where}: calibration trials ({len(cal_scores)}): {exc}; the calibration trial list needs "
                           "both target and non-target trials (a calibration corpus with at least 2 speakers, and "
                           "at least 2 utterances for some of them)") from exc
    raw = scores["score"].to_numpy(dtype=np.float64)
    out = scores.assign(score=model.transform(raw, q_eval if quality else None), raw_score=raw)
    return out, model
