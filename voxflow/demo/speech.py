"""Source-filter speech synthesiser: renders an utterance in a voice of :mod:`voxflow.demo.voices`.

An utterance is a random syllable sequence rendered as a glottal pulse train (plus aspiration) through a
time-varying cascade of five formant resonators, mixed with filtered-noise frication. Filtering is done
frame-wise in the frequency domain (overlap-add) so that whole utterances are processed with vectorised numpy.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from voxflow.demo.voices import (
    ASPIRATE,
    BASE_BANDWIDTHS_HZ,
    CONSONANTS,
    FRICATIVE,
    HIGH_FORMANTS_HZ,
    N_VOWELS,
    NASAL,
    PLOSIVE,
    Consonant,
    Style,
    Voice,
)

_ONSET_WEIGHTS = np.array([c.weight for c in CONSONANTS])
_CODA_WEIGHTS = np.where([c.name not in ("h", "w", "y") for c in CONSONANTS], _ONSET_WEIGHTS, 0.0)
_ONSET_CDF = np.cumsum(_ONSET_WEIGHTS)[:-1] / _ONSET_WEIGHTS.sum()  # for inverse-CDF sampling
_CODA_CDF = np.cumsum(_CODA_WEIGHTS)[:-1] / _CODA_WEIGHTS.sum()

FRAME_S = 0.010  # hop of the time-varying filter (frames are two hops long)
MEAN_SYLLABLE_S = 0.235  # mean syllable duration of the planner before rate scaling


# ----------------------------------------------------------------------------------------------
# Planning: syllables -> phone segments with acoustic targets.

# Columns of the per-segment target table.
_DUR, _VOICE, _ASP, _FRIC, _FC, _BW, _F1, _F2, _F3, _KIND, _F0ST = range(11)
_KIND_PAUSE, _KIND_VOWEL, _KIND_CONS, _KIND_NASAL = 0.0, 1.0, 2.0, 3.0


def _plan_segments(voice: Voice, duration_s: float, style: Style, rng: np.random.Generator) -> np.ndarray:
    """Random phrases of syllables filling exactly ``duration_s``; one row of targets per segment.

    Speech starts at 0 and ends at ``duration_s`` (no leading or trailing pause). Formant columns
    are NaN where the formants should be interpolated from the neighbours; F0ST holds the
    intonation target (semitones re the speaker's mean) at vowels and NaN elsewhere.
    """
    time_scale = (1.0 / (voice.syllable_rate * style.rate_factor)) / MEAN_SYLLABLE_S
    rows: list[list[float]] = []
    nan = float("nan")
    total, phrase_len, pos = 0.0, 0, 0
    declination, question = 0.0, False
    while total < duration_s:
        # Random numbers for a batch of syllables, drawn at once (drawing one at a time is slow).
        k = int(duration_s * voice.syllable_rate * style.rate_factor * 1.3) + 8
        u = rng.random((k, 12))
        tempo = time_scale * np.exp(0.18 * rng.standard_normal(k))
        cons_stretch = np.exp(0.15 * rng.standard_normal((k, 2)))
        onset = np.searchsorted(_ONSET_CDF, u[:, 2], side="right")
        coda = np.searchsorted(_CODA_CDF, u[:, 7], side="right")
        vowels = rng.integers(N_VOWELS, size=k)
        formants = voice.vowel_targets_hz()[vowels]
        for i in range(k):
            if pos == phrase_len:  # start a new phrase (after a pause unless it is the first)
                if rows:
                    pause = 0.12 + u[i, 8] * max(style.max_pause_s - 0.12, 0.01)
                    rows.append([pause, 0.0, 0.0, 0.0, 0.0, 0.0, nan, nan, nan, _KIND_PAUSE, nan])
                    total += pause
                phrase_len, pos = 3 + int(u[i, 9] * 8), 0
                declination = voice.f0_range_st * (0.4 + 0.5 * u[i, 10])
                question = u[i, 11] < 0.15
            stressed = u[i, 0] < 0.35
            if u[i, 1] < 0.8:
                total += _add_consonant(rows, CONSONANTS[onset[i]], voice, tempo[i] * cons_stretch[i, 0])
            vdur = tempo[i] * (0.09 + 0.07 * u[i, 3]) * (1.35 if stressed else 1.0)
            st = declination * (0.5 - pos / max(phrase_len - 1, 1))
            if stressed:
                st += voice.f0_range_st * (0.3 + 0.7 * u[i, 4])
            if question and pos == phrase_len - 1:
                st += 1.5 * voice.f0_range_st
            amp = 0.75 + 0.25 * u[i, 5] if stressed else 0.5 + 0.35 * u[i, 5]
            rows.append([vdur, amp, 0.0, 0.0, 0.0, 0.0, *formants[i], _KIND_VOWEL, st])
            total += vdur
            if u[i, 6] < 0.35:
                total += _add_consonant(rows, CONSONANTS[coda[i]], voice, tempo[i] * cons_stretch[i, 1])
            pos += 1
            if total >= duration_s:
                break
    seg = np.array(rows, dtype=np.float64)
    seg[:, _DUR] *= duration_s / seg[:, _DUR].sum()
    return seg


def _add_consonant(rows: list, c: Consonant, voice: Voice, tempo: float) -> float:
    """Append the segments of consonant ``c`` (durations scaled by ``tempo``); return their duration."""
    nan = float("nan")
    scale = voice.formant_scale
    locus = [v * scale for v in c.locus_hz] if c.locus_hz is not None else [nan, nan, nan]
    fc = c.fric_hz * voice.fricative_scale
    dur = c.dur_s * tempo
    if c.manner == PLOSIVE:
        closure, burst = dur * 0.7, 0.012 + 0.03 * dur
        rows.append([closure, 0.12 if c.voiced else 0.0, 0.0, 0.0, fc, c.fric_bw_hz, *locus, _KIND_CONS, nan])
        rows.append([burst, 0.0, 0.0, c.fric_level * 2.0, fc, c.fric_bw_hz, *locus, _KIND_CONS, nan])
        added = closure + burst
        if not c.voiced:
            asp = 0.025 + 0.3 * dur
            rows.append([asp, 0.0, 0.5, 0.0, fc, c.fric_bw_hz, nan, nan, nan, _KIND_CONS, nan])
            added += asp
        return added
    if c.manner == FRICATIVE:
        voicing = 0.35 if c.voiced else 0.0
        rows.append([dur, voicing, 0.0, c.fric_level, fc, c.fric_bw_hz, *locus, _KIND_CONS, nan])
    elif c.manner == ASPIRATE:
        rows.append([dur, 0.0, 0.7, 0.0, 0.0, 0.0, *locus, _KIND_CONS, nan])
    elif c.manner == NASAL:
        rows.append([dur, 0.3, 0.0, 0.0, 0.0, 0.0, *locus, _KIND_NASAL, nan])
    else:
        rows.append([dur, 0.55, 0.0, 0.0, 0.0, 0.0, *locus, _KIND_CONS, nan])
    return dur


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along axis 0 with edge padding (same length)."""
    if width <= 1:
        return x
    pad = width // 2
    padded = np.pad(x, [(pad, width - 1 - pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    csum = np.cumsum(padded, axis=0)
    csum = np.concatenate([np.zeros((1,) + x.shape[1:]), csum], axis=0)
    return (csum[width:] - csum[:-width]) / width


def _frame_tracks(seg: np.ndarray, voice: Voice, style: Style, frame_t: np.ndarray, rng: np.random.Generator):
    """Per-frame acoustic parameters from the segment table."""
    ends = np.cumsum(seg[:, _DUR])
    starts = ends - seg[:, _DUR]
    idx = np.minimum(np.searchsorted(ends, frame_t, side="right"), len(seg) - 1)
    hold = seg[idx]
    voice_amp = _smooth(hold[:, _VOICE], 2)
    asp_amp = _smooth(hold[:, _ASP], 2)
    fric_amp = _smooth(hold[:, _FRIC], 2)
    fric_hz, fric_bw = hold[:, _FC], hold[:, _BW]

    # Formants: breakpoints at 30%/70% of vowels and mid-consonant loci, interpolated in log-frequency.
    kinds = seg[:, _KIND]
    vowel = kinds == _KIND_VOWEL
    cons = (kinds >= _KIND_CONS) & ~np.isnan(seg[:, _F1])
    bp_t = np.concatenate(
        [starts[vowel] + 0.3 * seg[vowel, _DUR], starts[vowel] + 0.7 * seg[vowel, _DUR], (starts + ends)[cons] / 2]
    )
    bp_f = np.concatenate([seg[vowel][:, _F1:_F3 + 1], seg[vowel][:, _F1:_F3 + 1], seg[cons][:, _F1:_F3 + 1]])
    order = np.argsort(bp_t, kind="stable")
    bp_t, bp_f = bp_t[order], np.log(bp_f[order])
    formants = np.empty((len(frame_t), 5))
    for k in range(3):
        formants[:, k] = np.interp(frame_t, bp_t, bp_f[:, k])
    formants[:, :3] = np.exp(_smooth(formants[:, :3], 4))
    f4, f5 = HIGH_FORMANTS_HZ * voice.formant_scale * voice.high_formant_offsets
    formants[:, 3] = np.maximum(f4, formants[:, 2] + 350.0)
    formants[:, 4] = np.maximum(f5, formants[:, 3] + 400.0)
    bandwidths = np.broadcast_to(BASE_BANDWIDTHS_HZ * voice.bandwidth_scale, formants.shape).copy()
    bandwidths[:, 0] *= 1.0 + 2.0 * voice.aspiration  # breathy voices have damped F1
    nasal = hold[:, _KIND] == _KIND_NASAL
    bandwidths[nasal, :2] *= 2.0

    # Intonation: targets at vowel centres, smoothed, plus a slow wander.
    st_t = (starts + ends)[vowel] / 2
    st = np.interp(frame_t, st_t, seg[vowel, _F0ST])
    st = _smooth(st, 9)
    wander_hz = rng.uniform(0.2, 0.8, size=2)
    wander_ph = rng.uniform(0, 2 * np.pi, size=2)
    st = st + 0.4 * np.sin(2 * np.pi * wander_hz[0] * frame_t + wander_ph[0])
    st = st + 0.25 * np.sin(2 * np.pi * wander_hz[1] * frame_t + wander_ph[1])
    f0 = voice.f0_mean_hz * 2.0 ** ((st + style.f0_shift_st) / 12.0)
    return voice_amp, asp_amp, fric_amp, fric_hz, fric_bw, formants, bandwidths, f0


# ----------------------------------------------------------------------------------------------
# Rendering.


_PULSE_TABLE_SIZE = 4096


def _pulse_table(open_quotient: float) -> np.ndarray:
    """One period of the glottal flow derivative (raised-cosine opening, quarter-cosine closing)."""
    frac = np.arange(_PULSE_TABLE_SIZE + 1) / _PULSE_TABLE_SIZE
    t_open, t_close = open_quotient * 2.0 / 3.0, open_quotient / 3.0
    rising = (0.5 * np.pi / t_open) * np.sin(np.pi * np.minimum(frac, t_open) / t_open)
    falling = -(0.5 * np.pi / t_close) * np.sin(0.5 * np.pi * np.clip(frac - t_open, 0.0, t_close) / t_close)
    return np.where(frac < t_open, rising, np.where(frac < open_quotient, falling, 0.0)).astype(np.float32)


def _glottal_source(f0_samples: np.ndarray, voice: Voice, sample_rate: int, rng: np.random.Generator):
    """Glottal flow derivative pulses with jitter/shimmer; returns (pulses, open_phase_mask)."""
    phase = np.cumsum(f0_samples / sample_rate)
    period = phase.astype(np.int64)
    jitter = 1.0 + voice.jitter * rng.standard_normal(int(period[-1]) + 2)
    phase = np.cumsum(f0_samples * jitter[period] / sample_rate)
    period = phase.astype(np.int64)
    table_idx = ((phase - period) * _PULSE_TABLE_SIZE).astype(np.int32)
    pulses = _pulse_table(voice.open_quotient)[table_idx]
    shimmer = np.maximum(1.0 + voice.shimmer * rng.standard_normal(int(period[-1]) + 1), 0.3).astype(np.float32)
    pulses *= shimmer[period]
    return pulses, table_idx < int(voice.open_quotient * _PULSE_TABLE_SIZE)


def _upsample_linear(track: np.ndarray, hop: int, n_samples: int) -> np.ndarray:
    """Linear interpolation of a frame track (frames at samples 0, hop, 2*hop, ...) to every sample."""
    track = track.astype(np.float32)
    ramp = np.arange(hop, dtype=np.float32) / hop
    out = track[:-1, None] + (track[1:] - track[:-1])[:, None] * ramp
    return out.reshape(-1)[:n_samples]


@functools.lru_cache(maxsize=16)
def _delay_tables(order: int, nfft: int) -> tuple[np.ndarray, np.ndarray]:
    """cos(k w) and sin(k w) for k < order on the rfft frequency grid."""
    k_omega = np.arange(order)[:, None] * (2.0 * np.pi * np.arange(nfft // 2 + 1) / nfft)[None, :]
    return np.cos(k_omega), np.sin(k_omega)


def _polynomial_response(coefs: np.ndarray, nfft: int) -> np.ndarray:
    """Evaluate real polynomials in z^-1 (rows of ``coefs``) on the rfft grid; returns complex64."""
    cos_t, sin_t = _delay_tables(coefs.shape[1], nfft)
    out = np.empty((coefs.shape[0], cos_t.shape[1]), dtype=np.complex64)
    out.real = coefs @ cos_t
    out.imag = -(coefs @ sin_t)
    return out


def _resonator_cascade(formants: np.ndarray, bandwidths: np.ndarray, colour: np.ndarray, nfft: int, sr: int):
    """Frequency responses (frames x bins) of cascaded unity-DC-gain two-pole resonators times ``colour``."""
    freqs = np.minimum(formants, 0.47 * sr)
    r = np.exp(-np.pi * bandwidths / sr)
    c1 = -2.0 * r * np.cos(2.0 * np.pi * freqs / sr)
    c2 = r * r
    denom = np.ones((len(formants), 1))
    for k in range(formants.shape[1]):  # multiply out the quadratics: one degree-10 polynomial per frame
        quad = np.stack([np.ones(len(formants)), c1[:, k], c2[:, k]], axis=1)
        new = np.zeros((len(formants), denom.shape[1] + 2))
        for j in range(3):
            new[:, j : j + denom.shape[1]] += quad[:, j, None] * denom
        denom = new
    gain = np.prod(1.0 + c1 + c2, axis=1).astype(np.float32)
    return np.outer(gain, colour) / _polynomial_response(denom, nfft)


def _bandpass_response(fc: np.ndarray, bw: np.ndarray, level: np.ndarray, nfft: int, sr: int) -> np.ndarray:
    """Responses of two-pole bandpass filters (zeros at DC and Nyquist), one per frame, mean power level^2."""
    fc = np.clip(fc, 200.0, 0.45 * sr)
    r = np.exp(-np.pi * np.maximum(bw, 100.0) / sr)
    denom = np.stack([np.ones_like(r), -2.0 * r * np.cos(2.0 * np.pi * fc / sr), r * r], axis=1)
    numer = _polynomial_response(np.array([[1.0, 0.0, -1.0]]), nfft)
    h = numer / _polynomial_response(denom, nfft)
    power = np.mean(np.square(h.real), axis=1) + np.mean(np.square(h.imag), axis=1)
    return h * (level / np.sqrt(np.maximum(power, 1e-12)))[:, None].astype(np.float32)


def _frames_spectrum(x: np.ndarray, hop: int, frames_idx: np.ndarray, window: np.ndarray, nfft: int) -> np.ndarray:
    """Spectra of Hann-windowed frames centred on samples ``frames_idx * hop`` (zero padded to nfft)."""
    win = len(window)
    n_frames = -(-len(x) // hop) + 1
    padded = np.zeros(hop + n_frames * hop + win, dtype=np.float32)
    padded[hop : hop + len(x)] = x
    frames = np.zeros((len(frames_idx), nfft), dtype=np.float32)
    frames[:, :win] = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop][frames_idx] * window
    return scipy.fft.rfft(frames, axis=1)


def _overlap_add(spectra: np.ndarray, hop: int, nfft: int, n_out: int) -> np.ndarray:
    """Inverse of :func:`_frames_spectrum` for (filtered) spectra of all frames: overlap-add."""
    frames = scipy.fft.irfft(spectra, n=nfft, axis=1)
    n_frames = frames.shape[0]
    blocks = -(-nfft // hop)
    if blocks * hop != nfft:
        frames = np.pad(frames, [(0, 0), (0, blocks * hop - nfft)])
    out = np.zeros((n_frames + blocks) * hop, dtype=np.float32)
    for b in range(blocks):
        out[b * hop : b * hop + n_frames * hop] += frames[:, b * hop : (b + 1) * hop].reshape(-1)
    return out[hop : hop + n_out]


def render_speech(
    voice: Voice, n_samples: int, sample_rate: int, rng: np.random.Generator, style: Style = Style()
) -> np.ndarray:
    """Synthesise ``n_samples`` of continuous speech (float32, RMS ~1 in voiced stretches) in ``voice``."""
    seg = _plan_segments(voice, n_samples / sample_rate, style, rng)
    hop = max(int(round(FRAME_S * sample_rate)), 16)
    nfft = int(2 ** np.ceil(np.log2(3.2 * hop)))  # room for ~1.2 hops of resonator ringing
    n_frames = -(-n_samples // hop) + 1
    frame_t = np.arange(n_frames) * (hop / sample_rate)
    voice_amp, asp_amp, fric_amp, fric_hz, fric_bw, formants, bandwidths, f0 = _frame_tracks(
        seg, voice, style, frame_t, rng
    )

    voice_s = _upsample_linear(voice_amp, hop, n_samples)
    asp_s = _upsample_linear(asp_amp, hop, n_samples)
    pulses, open_phase = _glottal_source(_upsample_linear(f0, hop, n_samples), voice, sample_rate, rng)
    strong_s = voice_s > 0.3
    pulse_rms = float(np.sqrt(np.mean(np.square(pulses[strong_s])))) if np.any(strong_s) else 1.0
    breath = np.float32(voice.aspiration) * voice_s * np.where(open_phase, np.float32(1.0), np.float32(0.35))
    noise = rng.standard_normal(n_samples, dtype=np.float32)
    source = voice_s * pulses + np.float32(pulse_rms) * (asp_s + breath) * noise

    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(2 * hop) / (2 * hop))).astype(np.float32)
    window_energy = float(np.sum(window**2))
    freqs = np.arange(nfft // 2 + 1) * (sample_rate / nfft)
    colour = (10.0 ** (voice.colour_db(freqs, style.tilt_shift_db_per_oct) / 20.0)).astype(np.float32)

    spectra = _frames_spectrum(source, hop, np.arange(n_frames), window, nfft)
    spectra *= _resonator_cascade(formants, bandwidths, colour, nfft, sample_rate)
    # Unit RMS in strongly voiced stretches: a frame's mean |X|^2 is its windowed energy (Parseval).
    strong = np.flatnonzero(voice_amp > 0.5)[::3]
    probe = spectra[strong] if len(strong) else spectra
    ref_power = float(np.mean(np.square(probe.real)) + np.mean(np.square(probe.imag)))
    spectra *= np.float32(np.sqrt(window_energy / (ref_power + 1e-20)))

    fricative = np.flatnonzero(fric_amp > 1e-3)
    if len(fricative):  # frication noise has unit RMS at fric_amp 1 before the 0.35 level factor
        fric_noise = rng.standard_normal(n_samples, dtype=np.float32)
        fric = _frames_spectrum(fric_noise, hop, fricative, window, nfft)
        level = 0.35 * fric_amp[fricative]
        fric *= _bandpass_response(fric_hz[fricative], fric_bw[fricative], level, nfft, sample_rate)
        spectra[fricative] += fric
    return _overlap_add(spectra, hop, nfft, n_samples)
