"""Speaker-verification metrics: EER, minDCF / actual DCF, DET points and Cllr, all exact and O(N log N).

Convention: a trial is accepted when ``score >= threshold``. The operating points are the
thresholds at each distinct score (equal scores form one step) plus a final threshold above
every score (reject all).
"""

from __future__ import annotations

import numpy as np

from voxflow.errors import VoxflowError


def validate_scores(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Return (float64 scores, bool labels), checking shape, finiteness and that both classes occur."""
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels)
    if s.ndim != 1 or lab.ndim != 1:
        raise VoxflowError(f"scores and labels must be 1-D, got shapes {s.shape} and {lab.shape}")
    if len(s) != len(lab):
        raise VoxflowError(f"scores and labels differ in length: {len(s)} scores, {len(lab)} labels")
    if lab.dtype != bool:
        if not np.isin(lab, (0, 1)).all():
            bad = lab[~np.isin(lab, (0, 1))][0]
            raise VoxflowError(f"labels must be 0/1 (or bool), found {bad!r}")
        lab = lab.astype(bool)
    finite = np.isfinite(s)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise VoxflowError(f"scores must be finite: score #{i} is {s[i]} ({int((~finite).sum())} non-finite)")
    n_tgt = int(lab.sum())
    if n_tgt == 0 or n_tgt == len(lab):
        raise VoxflowError(
            f"need both target and nontarget trials, got {n_tgt} target and {len(lab) - n_tgt} nontarget"
        )
    return s, lab


def _operating_points(s: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (distinct scores ascending, then +inf) with their false-alarm and miss rates."""
    s_sorted = np.sort(s)
    tgt_sorted = np.sort(s[lab])
    n = len(s_sorted)
    n_tgt = len(tgt_sorted)
    n_non = n - n_tgt
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])  # first index of each distinct score
    thresholds = s_sorted[starts]
    tgt_below = np.r_[np.searchsorted(tgt_sorted, thresholds, side="left"), n_tgt]  # targets with score < t
    all_below = np.r_[starts, n]
    p_miss = tgt_below / n_tgt
    p_fa = (n_non - (all_below - tgt_below)) / n_non
    return np.r_[thresholds, np.inf], p_fa, p_miss


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (p_fa, p_miss, thresholds) at every distinct score and at +inf (reject all).

    p_fa decreases and p_miss increases along the arrays; the first point accepts everything.
    """
    s, lab = validate_scores(scores, labels)
    thresholds, p_fa, p_miss = _operating_points(s, lab)
    return p_fa, p_miss, thresholds


def _eer_from_points(thresholds, p_fa, p_miss) -> tuple[float, float]:
    diff = p_miss - p_fa  # increases from -1 (accept all) to +1 (reject all)
    k = int(np.searchsorted(diff, 0.0, side="left"))  # first point with p_miss >= p_fa
    if diff[k] == 0.0:
        return float(p_miss[k]), float(thresholds[k])
    # crossing strictly inside segment (k-1, k)
    a = -diff[k - 1] / (diff[k] - diff[k - 1])
    eer = p_miss[k - 1] + a * (p_miss[k] - p_miss[k - 1])
    t0, t1 = thresholds[k - 1], thresholds[k]
    threshold = t0 if not np.isfinite(t1) else t0 + a * (t1 - t0)
    return float(eer), float(threshold)


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate and its threshold.

    The EER is where the false-alarm and miss rates cross, linearly interpolated between the
    two adjacent operating points (a straight ROC segment between them); the threshold is
    interpolated alike (the highest score when the crossing lies beyond it).
    """
    s, lab = validate_scores(scores, labels)
    return _eer_from_points(*_operating_points(s, lab))


def _check_costs(p_target: float, c_miss: float, c_fa: float) -> None:
    if not 0.0 < p_target < 1.0:
        raise VoxflowError(f"p_target must lie in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise VoxflowError(f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}")


def _min_dcf_from_points(thresholds, p_fa, p_miss, p_target, c_miss, c_fa, max_score) -> tuple[float, float]:
    c_det = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    c_def = min(c_miss * p_target, c_fa * (1.0 - p_target))
    k = int(np.argmin(c_det))
    threshold = thresholds[k] if np.isfinite(thresholds[k]) else np.nextafter(max_score, np.inf)
    return float(c_det[k] / c_def), float(threshold)


def min_dcf(scores, labels, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Minimum normalised detection cost over all thresholds, and the threshold reaching it.

    DCF = (c_miss * p_target * P_miss + c_fa * (1 - p_target) * P_fa) / min(c_miss * p_target,
    c_fa * (1 - p_target)), as in NIST SRE and Kaldi's compute_min_dcf. When rejecting every
    trial is best, the threshold returned is the next float above the highest score.
    """
    _check_costs(p_target, c_miss, c_fa)
    s, lab = validate_scores(scores, labels)
    return _min_dcf_from_points(*_operating_points(s, lab), p_target, c_miss, c_fa, s.max())


def actual_dcf(scores, labels, threshold: float, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised detection cost at a fixed ``threshold`` (accept when score >= threshold)."""
    _check_costs(p_target, c_miss, c_fa)
    s, lab = validate_scores(scores, labels)
    accept = s >= threshold
    p_miss = np.count_nonzero(~accept & lab) / np.count_nonzero(lab)
    p_fa = np.count_nonzero(accept & ~lab) / np.count_nonzero(~lab)
    c_def = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float((c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa) / c_def)


def cllr(llr_scores, labels) -> float:
    """Log-likelihood-ratio cost (bits) of natural-log LLR scores; 1.0 for an uninformative system."""
    s, lab = validate_scores(llr_scores, labels)
    c_tgt = np.logaddexp(0.0, -s[lab]).mean()
    c_non = np.logaddexp(0.0, s[~lab]).mean()
    return float(0.5 * (c_tgt + c_non) / np.log(2.0))


def summarize(scores, labels) -> dict:
    """EER (with threshold), minDCF at p_target 0.01 and 0.001, and trial counts, as plain Python numbers."""
    s, lab = validate_scores(scores, labels)
    points = _operating_points(s, lab)
    e, t = _eer_from_points(*points)
    max_score = s.max()
    n_tgt = int(lab.sum())
    return {
        "eer": e,
        "eer_threshold": t,
        "min_dcf_0.01": _min_dcf_from_points(*points, 0.01, 1.0, 1.0, max_score)[0],
        "min_dcf_0.001": _min_dcf_from_points(*points, 0.001, 1.0, 1.0, max_score)[0],
        "n_target": n_tgt,
        "n_nontarget": int(len(lab) - n_tgt),
    }


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The natural-log LLR above which accepting costs less: ``log(c_fa (1 - p) / (c_miss p))``."""
    _check_costs(p_target, c_miss, c_fa)
    return float(np.log(c_fa * (1.0 - p_target) / (c_miss * p_target)))


def summarize_llr(llr_scores, labels, p_target: float = 0.01) -> dict:
    """``summarize`` plus, for calibrated natural-log LLRs, Cllr and the actual DCF at the Bayes threshold of
    ``p_target`` (``act_dcf``) and of 0.01 and 0.001 (``act_dcf_0.01``, ``act_dcf_0.001``)."""
    out = summarize(llr_scores, labels)
    out["cllr"] = cllr(llr_scores, labels)
    for p in (0.01, 0.001):
        out[f"act_dcf_{p:g}"] = actual_dcf(llr_scores, labels, bayes_threshold(p), p)
    out["act_dcf"] = actual_dcf(llr_scores, labels, bayes_threshold(p_target), p_target)
    out["p_target"] = float(p_target)
    return out
