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
speaker talks. Overlapping segments of one speaker count once, in the reference and the hypothesis
(as md-eval; pyannote's DER counts them twice unless the annotations are ``support()``-ed), and
turns of several hypothesis speakers at once are scored like reference overlap.

JER (Jaccard error rate, DIHARD-II; pyannote.metrics ``JaccardErrorRate``) uses the same scored
region and the same mapping: each reference speaker with scored speech has the error
1 - |r & h| / |r | h| against its mapped hypothesis speaker h (durations in the scored region),
or 1 when unmapped or the pair never co-occurs; ``jer`` averages it over the reference speakers of
all files pooled (as pyannote's accumulated metric and dscore's global JER; a file's ``jer`` over
its own speakers, NaN without any). dscore instead picks the mapping minimising the summed speaker
JER, so its JER can be lower when the two mappings differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from voxflow.errors import VoxflowError

SECONDS_KEYS = ("scored_speech_s", "miss_s", "false_alarm_s", "confusion_s", "reference_speech_s", "scored_time_s")
JER_KEYS = ("jer_speaker_error", "jer_speakers")  # summed per-speaker JER, number of reference speakers scored


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
    r_dur = w @ active_r  # scored speech of each reference speaker
    speakers = r_dur > 0
    correct, jer_error = 0.0, float(speakers.sum())  # each scored reference speaker starts at JER 1
    if len(r_names) and len(h_names):
        cooc = active_r.T.astype(np.float64) @ (active_h * w[:, None])
        rows, cols = linear_sum_assignment(cooc, maximize=True)
        inter = cooc[rows, cols]
        correct = float(inter.sum())
        paired = inter > 0  # pyannote's mapping keeps only co-occurring pairs
        union = r_dur[rows] + (w @ active_h)[cols] - inter
        jer_error -= float((inter[paired] / union[paired]).sum())
    return _result(
        scored_speech=float(w @ n_ref),
        miss=float(w @ np.maximum(n_ref - n_hyp, 0)),
        false_alarm=float(w @ np.maximum(n_hyp - n_ref, 0)),
        confusion=float(w @ np.minimum(n_ref, n_hyp)) - correct,
        reference_speech=float(dur @ n_ref),
        scored_time=float(w.sum()),
        jer_speaker_error=jer_error,
        jer_speakers=int(speakers.sum()),
    )


def _result(scored_speech, miss, false_alarm, confusion, reference_speech, scored_time,
            jer_speaker_error=0.0, jer_speakers=0) -> dict:
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
        "jer": max(jer_speaker_error, 0.0) / jer_speakers if jer_speakers else float("nan"),
        "jer_speaker_error": max(jer_speaker_error, 0.0), "jer_speakers": jer_speakers,
    }


def _files(reference_df: pd.DataFrame, hypothesis_df: pd.DataFrame, uem) -> dict:
    """Validated inputs as {file_id: (reference, hypothesis, uem array or None)}, files sorted."""
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
    return {f: (ref_by_file.get(f, empty), hyp_by_file.get(f, empty), None if uem_map is None else uem_map[f])
            for f in sorted(files)}


def _check_collar(collar: float) -> None:
    if not np.isfinite(collar) or collar < 0:
        raise VoxflowError(f"collar must be a finite number >= 0, got {collar}")


def _score(files: dict, collar: float, skip_overlap: bool) -> dict:
    per_file = {f: _file_error(r, h, collar, skip_overlap, u) for f, (r, h, u) in files.items()}
    sums = {k: sum(r[k] for r in per_file.values()) for k in SECONDS_KEYS + JER_KEYS}
    pooled = _result(*(float(sums[k]) for k in SECONDS_KEYS), sums["jer_speaker_error"], sums["jer_speakers"])
    pooled["files"] = per_file
    return pooled


def diarization_error(
    reference_df: pd.DataFrame,
    hypothesis_df: pd.DataFrame,
    collar: float = 0.25,
    skip_overlap: bool = False,
    uem=None,
) -> dict:
    """DER with its miss / false-alarm / confusion parts and JER, pooled over files, plus a ``files`` entry per file.

    Inputs are DataFrame(file_id, start, duration, speaker) as from ``read_rttm``; ``uem`` is a
    DataFrame(file_id, start, end) (``read_uem``) or {file_id: [(start, end), ...]}. Rates are
    fractions of the scored reference speech (NaN when there is none); ``*_s`` values are
    seconds. Files are those of the reference (and of the UEM when given); a hypothesis file
    outside them, or a reference file missing from the UEM, raises VoxflowError.
    """
    _check_collar(collar)
    return _score(_files(reference_df, hypothesis_df, uem), collar, skip_overlap)


def protocol_key(collar: float, skip_overlap: bool) -> str:
    """The name of a scoring protocol in der.json's ``protocols``, e.g. ``collar0.25_overlap``."""
    return f"collar{collar:g}_{'skipoverlap' if skip_overlap else 'overlap'}"


def protocol_label(collar: float, skip_overlap: bool) -> str:
    """A protocol in words, e.g. ``collar 0.25 s, overlap scored``."""
    return f"collar {collar:g} s, overlap {'skipped' if skip_overlap else 'scored'}"


def diarization_protocols(
    reference_df: pd.DataFrame, hypothesis_df: pd.DataFrame, collars=(0.25, 0.0), uem=None
) -> dict[str, dict]:
    """``diarization_error`` under every collar of ``collars`` with overlap scored and skipped, keyed by
    ``protocol_key``, each also naming its ``collar``, ``skip_overlap`` and ``protocol`` (``protocol_label``);
    the inputs are read and checked once."""
    for c in collars:
        _check_collar(c)
    files = _files(reference_df, hypothesis_df, uem)
    out = {}
    for c in dict.fromkeys(float(c) for c in collars):
        for skip in (False, True):
            out[protocol_key(c, skip)] = {"protocol": protocol_label(c, skip), "collar": c, "skip_overlap": skip,
                                          **_score(files, c, skip)}
    return out


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
