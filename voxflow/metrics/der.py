"""Diarization error rate (md-eval / pyannote.metrics definition), computed exactly on segment boundaries.

Per file, the time axis is cut at every reference, hypothesis, collar and UEM boundary; on each
elementary interval the reference and hypothesis speaker sets are constant. With N_ref and N_hyp
speakers active and N_correct of them paired by the speaker mapping:

    miss = max(0, N_ref - N_hyp), false alarm = max(0, N_hyp - N_ref),
    confusion = min(N_ref, N_hyp) - N_correct,  total = N_ref   (each times the duration),

summed over the scored intervals. The mapping is the one-to-one reference/hypothesis pairing
maximising their total co-occurrence in the scored region (Hungarian algorithm). Scored is:
inside the UEM (default: everywhere), outside the no-score zones of +-``collar`` seconds around
every reference segment start and end (md-eval's convention; pyannote's ``collar`` argument is
the total width, i.e. 2 * ``collar``), and, with ``skip_overlap``, where at most one reference
speaker talks. Overlapping segments of one speaker count once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from voxflow.errors import VoxflowError

SECONDS_KEYS = ("scored_speech_s", "miss_s", "false_alarm_s", "confusion_s", "reference_speech_s", "scored_time_s")


def _segments(df: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = [c for c in ("file_id", "start", "duration", "speaker") if c not in df.columns]
    if missing:
        raise VoxflowError(f"{what} segments lack column(s) {missing}; have {list(df.columns)}")
    out = pd.DataFrame(
        {
            "file_id": df["file_id"].astype(str).to_numpy(),
            "start": df["start"].to_numpy(np.float64),
            "end": df["start"].to_numpy(np.float64) + df["duration"].to_numpy(np.float64),
            "speaker": df["speaker"].astype(str).to_numpy(),
        }
    )
    bad = ~(np.isfinite(out["start"]) & np.isfinite(out["end"])) | (out["end"] < out["start"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise VoxflowError(
            f"{what} segment #{row} (file {out['file_id'][row]!r}) has non-finite time or negative duration"
        )
    return out[out["end"] > out["start"]]  # empty segments carry no speech and no boundaries


def _uem_segments(uem) -> dict[str, np.ndarray]:
    """UEM as {file_id: (M, 2) array of [start, end]} from a DataFrame(file_id, start, end) or a dict."""
    if isinstance(uem, pd.DataFrame):
        missing = [c for c in ("file_id", "start", "end") if c not in uem.columns]
        if missing:
            raise VoxflowError(f"UEM table lacks column(s) {missing}; has {list(uem.columns)}")
        return {
            str(f): g[["start", "end"]].to_numpy(np.float64) for f, g in uem.groupby("file_id", sort=False)
        }
    return {str(f): np.asarray(v, dtype=np.float64).reshape(-1, 2) for f, v in dict(uem).items()}


def _coverage(points: np.ndarray, starts: np.ndarray, ends: np.ndarray, groups=None, n_groups: int = 1):
    """Count, on each elementary interval between ``points``, the spans [start, end) covering it (per group)."""
    k = len(points) - 1
    counts = np.zeros((k + 1, n_groups), dtype=np.int64)
    g = np.zeros(len(starts), dtype=np.int64) if groups is None else groups
    np.add.at(counts, (np.searchsorted(points, starts), g), 1)
    np.add.at(counts, (np.searchsorted(points, ends), g), -1)
    return np.cumsum(counts, axis=0)[:k]


def _file_error(ref: pd.DataFrame, hyp: pd.DataFrame, collar: float, skip_overlap: bool, uem) -> dict:
    r_codes, r_names = pd.factorize(ref["speaker"])
    h_codes, h_names = pd.factorize(hyp["speaker"])
    rs, re_ = ref["start"].to_numpy(), ref["end"].to_numpy()
    hs, he = hyp["start"].to_numpy(), hyp["end"].to_numpy()
    if uem is None:
        lo = min(rs.min(initial=np.inf), hs.min(initial=np.inf))
        hi = max(re_.max(initial=-np.inf), he.max(initial=-np.inf))
        uem = np.array([[lo, hi]]) if hi > lo else np.zeros((0, 2))
    bounds = np.r_[rs, re_]
    c_starts, c_ends = (bounds - collar, bounds + collar) if collar > 0 else (np.zeros(0), np.zeros(0))
    points = np.unique(np.r_[rs, re_, hs, he, c_starts, c_ends, uem[:, 0], uem[:, 1]])
    if len(points) < 2:
        return _result(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    dur = np.diff(points)
    active_r = _coverage(points, rs, re_, r_codes, len(r_names)) > 0
    active_h = _coverage(points, hs, he, h_codes, len(h_names)) > 0
    n_ref = active_r.sum(axis=1)
    n_hyp = active_h.sum(axis=1)
    scored = _coverage(points, uem[:, 0], uem[:, 1])[:, 0] > 0
    if collar > 0:
        scored &= _coverage(points, c_starts, c_ends)[:, 0] == 0
    if skip_overlap:
        scored &= n_ref <= 1
    w = dur * scored
    correct = 0.0
    if len(r_names) and len(h_names):
        cooc = active_r.T.astype(np.float64) @ (active_h * w[:, None])
        rows, cols = linear_sum_assignment(cooc, maximize=True)
        correct = float(cooc[rows, cols].sum())
    return _result(
        scored_speech=float(w @ n_ref),
        miss=float(w @ np.maximum(n_ref - n_hyp, 0)),
        false_alarm=float(w @ np.maximum(n_hyp - n_ref, 0)),
        confusion=float(w @ np.minimum(n_ref, n_hyp)) - correct,
        reference_speech=float(dur @ n_ref),
        scored_time=float(w.sum()),
    )


def _result(scored_speech, miss, false_alarm, confusion, reference_speech, scored_time) -> dict:
    confusion = max(confusion, 0.0)  # guard -1e-16 from float cancellation
    if scored_speech > 0:
        rates = [(miss + false_alarm + confusion) / scored_speech, miss / scored_speech,
                 false_alarm / scored_speech, confusion / scored_speech]
    else:
        rates = [float("nan")] * 4
    return {
        "der": rates[0], "miss": rates[1], "false_alarm": rates[2], "confusion": rates[3],
        "scored_speech_s": scored_speech, "miss_s": miss, "false_alarm_s": false_alarm,
        "confusion_s": confusion, "reference_speech_s": reference_speech, "scored_time_s": scored_time,
    }


def diarization_error(
    reference_df: pd.DataFrame,
    hypothesis_df: pd.DataFrame,
    collar: float = 0.25,
    skip_overlap: bool = False,
    uem=None,
) -> dict:
    """DER with its miss / false-alarm / confusion parts, pooled over files, plus a ``files`` entry per file.

    Inputs are DataFrame(file_id, start, duration, speaker) as from ``read_rttm``; ``uem`` is a
    DataFrame(file_id, start, end) (``read_uem``) or {file_id: [(start, end), ...]}. Rates are
    fractions of the scored reference speech (NaN when there is none); ``*_s`` values are
    seconds. Files are those of the reference (and of the UEM when given); a hypothesis file
    outside them, or a reference file missing from the UEM, raises VoxflowError.
    """
    if not np.isfinite(collar) or collar < 0:
        raise VoxflowError(f"collar must be a finite number >= 0, got {collar}")
    ref = _segments(reference_df, "reference")
    hyp = _segments(hypothesis_df, "hypothesis")
    uem_map = None if uem is None else _uem_segments(uem)
    files = pd.unique(pd.Series(reference_df["file_id"].astype(str).to_numpy())).tolist()
    if uem_map is not None:
        not_in_uem = [f for f in files if f not in uem_map]
        if not_in_uem:
            raise VoxflowError(f"reference file(s) {not_in_uem[:5]} have no UEM entry ({len(not_in_uem)} in all)")
        files += [f for f in uem_map if f not in set(files)]
    known = set(files)
    extra = [f for f in pd.unique(hyp["file_id"]) if f not in known]
    if extra:
        raise VoxflowError(
            f"hypothesis file(s) {extra[:5]} are absent from the reference{' and UEM' if uem_map else ''}"
            f" ({len(extra)} in all)"
        )
    ref_by_file = dict(tuple(ref.groupby("file_id", sort=False)))
    hyp_by_file = dict(tuple(hyp.groupby("file_id", sort=False)))
    empty = ref.iloc[:0]
    per_file = {}
    for f in sorted(files):
        per_file[f] = _file_error(
            ref_by_file.get(f, empty), hyp_by_file.get(f, empty), collar, skip_overlap,
            None if uem_map is None else uem_map[f],
        )
    sums = {k: float(sum(r[k] for r in per_file.values())) for k in SECONDS_KEYS}
    pooled = _result(
        sums["scored_speech_s"], sums["miss_s"], sums["false_alarm_s"], sums["confusion_s"],
        sums["reference_speech_s"], sums["scored_time_s"],
    )
    pooled["files"] = per_file
    return pooled


def diarization_error_by_file(
    reference_df: pd.DataFrame,
    hypothesis_df: pd.DataFrame,
    collar: float = 0.25,
    skip_overlap: bool = False,
    uem=None,
) -> pd.DataFrame:
    """Per-file DER table: one row per file with the keys of ``diarization_error``'s per-file entries."""
    files = diarization_error(reference_df, hypothesis_df, collar, skip_overlap, uem)["files"]
    return pd.DataFrame([{"file_id": f, **v} for f, v in files.items()])
