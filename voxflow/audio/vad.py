"""Kaldi's frame-level energy VAD (``compute-vad``), used by features (Margin Matters) and diarization."""

from __future__ import annotations

import numpy as np

from voxflow.errors import VoxflowError


def kaldi_energy_vad(
    log_energy,
    energy_threshold: float = 5.5,
    energy_mean_scale: float = 0.5,
    frames_context: int = 2,
    proportion_threshold: float = 0.12,
) -> np.ndarray:
    """Kaldi ``compute-vad``: boolean speech mask over frames.

    ``log_energy`` is the natural log of each frame's raw energy on the int16 sample scale (MFCC C0 with
    --use-energy). The threshold is energy_threshold + energy_mean_scale * mean(log_energy) over the
    utterance; frame t is voiced if at least proportion_threshold of the frames in [t - context, t + context]
    (clipped to the utterance) exceed it. Defaults are the Kaldi VoxCeleb/SRE recipe vad.conf (5.5, 0.5,
    2, 0.12); compute-vad's own defaults are (5.0, 0.5, 0, 0.6).
    """
    e = np.asarray(log_energy, dtype=np.float64)
    if e.ndim != 1:
        raise VoxflowError(f"log_energy: expected a 1-D per-frame vector, got shape {e.shape}")
    if not np.isfinite(e).all():
        raise VoxflowError(f"log_energy: frame {int(np.flatnonzero(~np.isfinite(e))[0])} is not finite")
    if frames_context < 0:
        raise VoxflowError(f"frames_context={frames_context!r} must be >= 0")
    if len(e) == 0:
        return np.zeros(0, dtype=bool)
    threshold = energy_threshold + energy_mean_scale * e.mean()
    above = np.concatenate([[0], np.cumsum(e > threshold)])
    t = np.arange(len(e))
    lo = np.maximum(t - frames_context, 0)
    hi = np.minimum(t + frames_context, len(e) - 1) + 1
    return (above[hi] - above[lo]) >= proportion_threshold * (hi - lo)
