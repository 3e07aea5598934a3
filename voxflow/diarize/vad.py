"""Voice activity detection for diarization: relative energy, Silero (neural), oracle (reference turns);
Kaldi's compute-vad rule."""

from __future__ import annotations

import numpy as np

from voxflow.audio.vad import kaldi_energy_vad  # noqa: F401  (re-exported: the frame-level Kaldi rule)
from voxflow.errors import VoxflowError


def _check_wav(wav, sr) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim != 1:
        raise VoxflowError(f"wav: expected a mono 1-D signal, got shape {wav.shape}")
    if not np.isfinite(wav).all():
        raise VoxflowError(f"wav: sample {int(np.flatnonzero(~np.isfinite(wav))[0])} is not finite")
    if not (isinstance(sr, (int, np.integer)) and sr > 0):
        raise VoxflowError(f"sr={sr!r} must be a positive integer sample rate")
    return wav


def _frame_sizes(sr: int, frame_ms: float, shift_ms: float) -> tuple[int, int]:
    frame = int(round(sr * frame_ms / 1000.0))
    shift = int(round(sr * shift_ms / 1000.0))
    if frame < 1 or shift < 1:
        raise VoxflowError(f"frame_ms={frame_ms}, shift_ms={shift_ms} give empty frames at {sr} Hz")
    return frame, shift


def frame_energy(wav, sr: int, frame_ms: float = 25.0, shift_ms: float = 10.0, snip_edges: bool = True) -> np.ndarray:
    """Sum of squared samples of each frame (frame t starts at t * shift).

    ``snip_edges=True`` (Kaldi) keeps only whole frames: 1 + (N - frame) // shift of them. Otherwise
    frames continue until one reaches the end of the signal, zero-padded.
    """
    wav = _check_wav(wav, sr)
    frame, shift = _frame_sizes(sr, frame_ms, shift_ms)
    n = len(wav)
    if snip_edges:
        n_frames = 0 if n < frame else 1 + (n - frame) // shift
    else:
        n_frames = 0 if n == 0 else 1 + -(-max(n - frame, 0) // shift)
    if n_frames == 0:
        return np.zeros(0)
    need = (n_frames - 1) * shift + frame
    padded = np.pad(wav, (0, max(need - n, 0)))
    return _frame_stats(padded, frame, shift, n_frames, demean=False)


def _frame_stats(wav: np.ndarray, frame: int, shift: int, n_frames: int, demean: bool) -> np.ndarray:
    """Per-frame sum of squares (of the frame minus its mean if ``demean``), summed exactly per frame.

    Frames are processed in blocks so memory stays small; no long running sums, so no precision loss.
    """
    view = np.lib.stride_tricks.sliding_window_view(wav, frame)
    out = np.empty(n_frames)
    block = 4096
    for b in range(0, n_frames, block):
        fr = view[np.arange(b, min(b + block, n_frames)) * shift]
        if demean:
            fr = fr - fr.mean(axis=1, keepdims=True)
        out[b : b + len(fr)] = np.einsum("ij,ij->i", fr, fr)
    return out


def energy_vad(
    wav,
    sr: int,
    frame_ms: float = 25.0,
    shift_ms: float = 10.0,
    threshold_db: float = -35.0,
    min_speech_s: float = 0.25,
    min_silence_s: float = 0.2,
    ref_percentile: float = 99.0,
    floor_db: float = -80.0,
) -> list[tuple[float, float]]:
    """Speech regions ``[(start_s, end_s), ...]`` from frame energy relative to the utterance's loud frames.

    Rule: frame power in dB (mean square, 10 log10) is speech if it exceeds both
    ``percentile_{ref_percentile}(frame dB) + threshold_db`` and the absolute ``floor_db`` (full scale 1.0;
    keeps digital silence silent). A voiced run of frames [a, b] spans the frame centres +- shift / 2.
    Smoothing, in this order: silent gaps shorter than ``min_silence_s`` between speech are filled, then
    speech regions shorter than ``min_speech_s`` are dropped.
    """
    wav = _check_wav(wav, sr)
    frame, shift = _frame_sizes(sr, frame_ms, shift_ms)
    energy = frame_energy(wav, sr, frame_ms, shift_ms, snip_edges=False)
    if len(energy) == 0:
        return []
    db = 10.0 * np.log10(energy / frame + 1e-20)
    voiced = (db > np.percentile(db, ref_percentile) + threshold_db) & (db > floor_db)

    # Runs of voiced frames as [first, last] frame indices.
    edges = np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]]))
    first, last = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    duration = len(wav) / sr
    starts = np.clip((first * shift + frame / 2.0 - shift / 2.0) / sr, 0.0, duration)
    ends = np.clip((last * shift + frame / 2.0 + shift / 2.0) / sr, 0.0, duration)

    regions: list[list[float]] = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        if regions and s - regions[-1][1] < min_silence_s:
            regions[-1][1] = e
        else:
            regions.append([s, e])
    return [(s, e) for s, e in regions if e - s >= min_speech_s]


def kaldi_log_energy(wav, sr: int, frame_ms: float = 25.0, shift_ms: float = 10.0) -> np.ndarray:
    """Kaldi's raw log-energy per frame: snip-edges framing, per-frame DC offset removed, no dither,
    floored at float32 epsilon. Pass int16-scale samples for the thresholds of ``kaldi_energy_vad``."""
    wav = _check_wav(wav, sr)
    frame, shift = _frame_sizes(sr, frame_ms, shift_ms)
    if len(wav) < frame:
        return np.zeros(0)
    energy = _frame_stats(wav, frame, shift, 1 + (len(wav) - frame) // shift, demean=True)
    return np.log(np.maximum(energy, np.finfo(np.float32).eps))


def silero_vad(
    wav,
    sr: int,
    threshold: float = 0.5,
    min_speech_duration_ms: int = 250,
    min_silence_duration_ms: int = 100,
    speech_pad_ms: int = 30,
) -> list[tuple[float, float]]:
    """Speech regions ``[(start_s, end_s), ...]`` from Silero VAD (``silero-vad`` package, its packaged ONNX
    model on CPU with onnxruntime). Rates other than 8 or 16 kHz are resampled to 16 kHz first.

    The speech probabilities come from :func:`silero_probabilities`, the regions from them by the package's own
    rule (thresholds, durations, padding).
    """
    from scipy.signal import resample_poly
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    wav = _check_wav(wav, sr)
    if sr not in (8000, 16000):
        g = np.gcd(sr, 16000)
        wav, sr = resample_poly(wav, 16000 // g, sr // g), 16000
    if len(wav) < 512:
        return []
    stamps = get_speech_timestamps_from_probs(
        silero_probabilities(wav, sr).tolist(), sampling_rate=sr, threshold=threshold,
        min_speech_duration_ms=min_speech_duration_ms, min_silence_duration_ms=min_silence_duration_ms,
        speech_pad_ms=speech_pad_ms, audio_length_samples=len(wav),
    )
    return [(t["start"] / sr, t["end"] / sr) for t in stamps]


def silero_probabilities(wav, sr: int) -> np.ndarray:
    """Silero's speech probability for each window (512 samples at 16 kHz, 256 at 8 kHz; the last zero-padded),
    the windows run in order from the reset state with the previous window's last samples as context, as the
    package's model wrapper does, but calling the ONNX session directly with NumPy arrays: the same numbers,
    without the wrapper's per-window tensor conversions (about half the time of a window on one core)."""
    win, context = (512, 64) if sr == 16000 else (256, 32)
    n = -(-len(wav) // win)
    padded = np.zeros(context + n * win, dtype=np.float32)
    padded[context : context + len(wav)] = wav
    session = _silero_model().session
    state = np.zeros((2, 1, 128), dtype=np.float32)
    rate = np.array(sr, dtype=np.int64)
    probs = np.empty(n, dtype=np.float32)
    for i in range(n):
        x = padded[i * win : (i + 1) * win + context][None]
        out, state = session.run(None, {"input": x, "state": state, "sr": rate})
        probs[i] = out[0, 0]
    return probs


_SILERO = []


def _silero_model():
    """The packaged Silero ONNX model, loaded once per process."""
    if not _SILERO:
        try:
            from silero_vad import load_silero_vad
        except ImportError as exc:
            raise VoxflowError("vad silero needs the silero-vad package (pip install silero-vad==6.2.3)") from exc
        _SILERO.append(load_silero_vad(onnx=True))
    model = _SILERO[0]
    model.reset_states()
    return model


def oracle_vad(turns) -> list[tuple[float, float]]:
    """Speech regions: the union of reference turns (DataFrame with start, duration), in time order."""
    regions: list[list[float]] = []
    for s, d in sorted(zip(turns["start"].astype(float), turns["duration"].astype(float))):
        if d <= 0:
            continue
        if regions and s <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], s + d)
        else:
            regions.append([s, s + d])
    return [(s, e) for s, e in regions]


VAD_SETTINGS = {
    "energy": ("frame_ms", "shift_ms", "threshold_db", "min_speech_s", "min_silence_s", "ref_percentile", "floor_db"),
    "silero": ("threshold", "min_speech_duration_ms", "min_silence_duration_ms", "speech_pad_ms"),
    "oracle": (),
}


def speech_regions(wav, sr: int, name: str = "energy", ref_turns=None, **settings) -> list[tuple[float, float]]:
    """Speech regions of one recording by the VAD ``name`` (energy, silero, oracle) with its ``settings``.

    ``oracle`` takes the recording's reference turns (``ref_turns``). Unknown settings are an error.
    """
    if name not in VAD_SETTINGS:
        raise VoxflowError(f"vad {name!r}: must be one of {sorted(VAD_SETTINGS)}")
    unknown = sorted(set(settings) - set(VAD_SETTINGS[name]))
    if unknown:
        raise VoxflowError(f"vad {name}: unknown setting(s) {unknown}; it takes {list(VAD_SETTINGS[name])}")
    if name == "oracle":
        if ref_turns is None:
            raise VoxflowError("vad oracle needs the recording's reference RTTM turns")
        return oracle_vad(ref_turns)
    return (energy_vad if name == "energy" else silero_vad)(wav, sr, **settings)
