"""The built-in synthetic demo corpus: speakers in VoxCeleb layout, trials, mislabels, noises, RIRs, diarization.

Layout under the output directory::

    dev/wav/<spk>/<session>/<utt>.wav     training speakers (id00001..), sessions s01.., utterances 00001..
    dev/mislabeled.csv                    utt_id,labeled_spk,true_spk of the planted mislabels
    test/wav/<spk>/<session>/<utt>.wav    held-out speakers, numbering continued
    test/trials.txt                       "<1|0> <enroll>.wav <test>.wav", paths relative to test/wav
    heldout/wav/<spk>/<session>/<utt>.wav another set of held-out speakers (only if n_heldout_speakers > 0),
                                          for validation and calibration without touching the test speakers
    noise/{noise,music,babble}/*.wav      MUSAN-like augmentation noises
    rirs/*.wav                            room impulse responses (peak 1)
    diar/wav/<conv>.wav, diar/rttm/<conv>.rttm   conversations and their reference turns
    speakers.json                         seed, settings and every speaker's voice parameters

Everything is drawn from ``seed`` through independent per-item random streams, so the same seed gives
bit-identical files. Voices come from :mod:`voxflow.demo.speech`; this module adds recording
sessions (channel EQ, background noise, level, optional reverb) and the auxiliary material.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.signal
import soundfile as sf

from voxflow.demo.speech import Style, Voice, random_style, random_voice, render_speech
from voxflow.errors import VoxflowError

# Tags that separate the random streams of different kinds of items.
_VOICE, _SESSION, _UTT, _MISLABEL, _TRIALS, _NOISE, _MUSIC, _BABBLE, _RIR, _CONV, _DEVICE, _ENVIRONMENT = range(1, 13)
_HELDOUT_VOICE = 13  # a stream of its own, so that adding held-out speakers changes nothing else

MISLABELED_DUR_S = (6.0, 8.0)
NOISE_DUR_S = (9.0, 11.0)
CONVERSATION_DUR_S = (30.0, 60.0)
TURN_DUR_S = (1.0, 6.0)
OVERLAP_FRACTION = (0.05, 0.10)
TARGETS_PER_UTT = 4
NONTARGETS_PER_UTT = 12
BABBLE_POOL = 12
N_DEVICES = 8  # microphones / channels shared by all sessions of the corpus
N_ENVIRONMENTS = 8  # background noises (and rooms) shared likewise


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _write_wav(path: Path, x: np.ndarray, sample_rate: int) -> int:
    """Write ``x`` (float, full scale 1.0) as 16-bit PCM; return the number of samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    buffer = io.BytesIO()  # one write of the finished file is much faster than libsndfile's small writes
    sf.write(buffer, pcm, sample_rate, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())
    return len(pcm)


def _peak_normalise(x: np.ndarray, peak_dbfs: float) -> np.ndarray:
    return x * (10.0 ** (peak_dbfs / 20.0) / max(float(np.max(np.abs(x))), 1e-9))


def _active_power(x: np.ndarray, sample_rate: int, floor_db: float = 30.0) -> float:
    """Mean power over 20 ms frames within ``floor_db`` of the loudest frame (speech activity)."""
    hop = max(sample_rate // 50, 1)
    n = len(x) // hop * hop
    power = np.mean(np.square(x[:n].reshape(-1, hop), dtype=np.float64), axis=1) if n else np.array([0.0])
    active = power >= power.max() * 10.0 ** (-floor_db / 10.0)
    return float(np.mean(power[active])) + 1e-20


# ----------------------------------------------------------------------------------------------
# Signal generators: coloured noise, EQ, room impulse responses, music.


def coloured_noise(rng: np.random.Generator, n: int, sample_rate: int, slope_db_per_oct: float) -> np.ndarray:
    """Unit-RMS Gaussian noise whose spectrum falls by ``-slope_db_per_oct`` per octave (0 = white)."""
    spec = scipy.fft.rfft(rng.standard_normal(n, dtype=np.float32))
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 20.0)
    spec *= (freqs / 1000.0) ** (slope_db_per_oct / (20.0 * np.log10(2.0)))
    spec[0] = 0.0
    x = scipy.fft.irfft(spec, n).astype(np.float64)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _peaking_eq(freq_hz: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One biquad section (sos row) of a peaking equaliser."""
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * freq_hz / sample_rate
    alpha = np.sin(w0) / (2.0 * q)
    b = np.array([1.0 + alpha * amp, -2.0 * np.cos(w0), 1.0 - alpha * amp])
    a = np.array([1.0 + alpha / amp, -2.0 * np.cos(w0), 1.0 - alpha / amp])
    return np.concatenate([b / a[0], a / a[0]])[None, :]


def random_channel_eq(rng: np.random.Generator, sample_rate: int, strength: float = 1.0) -> np.ndarray:
    """Second-order sections of a random microphone/line response: band limits plus two peaks/dips."""
    if rng.random() < 0.2:  # narrowband, telephone-like
        high_cut = rng.uniform(min(3400.0, 0.4 * sample_rate), min(4200.0, 0.45 * sample_rate))
    else:
        high_cut = rng.uniform(min(5000.0, 0.4 * sample_rate), min(7600.0, 0.475 * sample_rate))
    sections = [
        scipy.signal.butter(
            int(rng.integers(1, 3)), rng.uniform(50.0, 150.0), "highpass", fs=sample_rate, output="sos"
        ),
        scipy.signal.butter(int(rng.integers(2, 5)), high_cut, "lowpass", fs=sample_rate, output="sos"),
    ]
    for _ in range(2):
        freq = float(np.exp(rng.uniform(np.log(150.0), np.log(min(5000.0, 0.4 * sample_rate)))))
        gain = float(np.clip(rng.normal(0.0, 2.5 * strength), -6.0, 6.0))
        sections.append(_peaking_eq(freq, gain, rng.uniform(0.5, 2.5), sample_rate))
    return np.concatenate(sections, axis=0)


def make_rir(rng: np.random.Generator, sample_rate: int, rt60_s: float, drr_db: float) -> np.ndarray:
    """Room impulse response: direct path, sparse early reflections, band-wise exponential tail; peak 1.

    ``drr_db`` is the direct-to-reverberant energy ratio. High frequencies decay faster than low ones.
    """
    n = int(sample_rate * (rt60_s + 0.05))
    t = np.arange(n) / sample_rate
    direct = int(rng.uniform(0.0005, 0.004) * sample_rate)
    rir = np.zeros(n)
    decay_per_s = 3.0 * np.log(10.0)  # amplitude falls by 60 dB over one RT60
    # Late tail: noise in three bands, each with its own RT60, with a ~5 ms build-up.
    since = np.maximum(t - t[direct] - 0.002, 0.0)
    onset = 1.0 - np.exp(-since / 0.005)
    tail = np.zeros(n)
    bands = [("lowpass", 500.0, 1.25), ("bandpass", (500.0, 4000.0), 1.0), ("highpass", 4000.0, 0.7)]
    for kind, cut, rt_factor in bands:
        if kind != "lowpass" and np.max(cut) >= 0.5 * sample_rate:
            continue
        sos = scipy.signal.butter(4, cut, kind, fs=sample_rate, output="sos")
        band = scipy.signal.sosfilt(sos, rng.standard_normal(n))
        tail += band * np.exp(-decay_per_s * since / (rt60_s * rt_factor))
    tail *= onset
    # Early reflections: a dozen sparse taps in the first 50 ms.
    n_early = int(rng.integers(6, 15))
    taps = direct + (rng.uniform(0.002, 0.05, n_early) * sample_rate).astype(int)
    taps = taps[taps < n]
    early = np.zeros(n)
    signs = rng.choice([-1.0, 1.0], len(taps))
    np.add.at(early, taps, signs * rng.uniform(0.15, 0.6, len(taps)) * np.exp(-decay_per_s * t[taps] / rt60_s))
    reverberant = tail + early
    reverberant *= np.sqrt(10.0 ** (-drr_db / 10.0) / (np.sum(reverberant**2) + 1e-20))
    rir += reverberant
    rir[direct] = 1.0
    return rir / np.max(np.abs(rir))


def _note(sample_rate: int, freq: float, dur_s: float, harmonics: np.ndarray, attack_s: float, decay_s: float):
    """One harmonic note with an attack-decay-release envelope."""
    n = max(int(dur_s * sample_rate), 1)
    t = np.arange(n) / sample_rate
    k = np.arange(1, len(harmonics) + 1)
    keep = k * freq < 0.45 * sample_rate
    tone = np.sum(harmonics[keep, None] * np.sin(2.0 * np.pi * freq * k[keep, None] * t[None, :]), axis=0)
    envelope = np.minimum(t / attack_s, 1.0) * np.exp(-t / decay_s)
    release = min(n, int(0.03 * sample_rate))
    envelope[n - release :] *= np.linspace(1.0, 0.0, release)
    return tone * envelope


def make_music(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Synthetic music: chord pads, bass line, melody (harmonic notes) and optional drums in a tempo."""
    beat = 60.0 / rng.uniform(70.0, 150.0)
    root = int(rng.integers(45, 58))  # MIDI note of the key
    scale = np.array([0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.6 else [0, 2, 3, 5, 7, 8, 10])
    progression = rng.choice([0, 3, 4, 5], size=64)  # scale degrees of the chord roots
    out = np.zeros(n + int(4 * beat * sample_rate) + sample_rate)

    def midi_hz(note: float) -> float:
        return 440.0 * 2.0 ** ((note - 69) / 12.0)

    def timbre() -> np.ndarray:
        n_harm = int(rng.integers(3, 10))
        return np.arange(1, n_harm + 1) ** -rng.uniform(0.7, 2.0) * rng.uniform(0.5, 1.0, n_harm)

    def add(start_s: float, sig: np.ndarray, level: float) -> None:
        i = int(start_s * sample_rate)
        if i < n:
            out[i : i + len(sig)] += level * sig[: len(out) - i]

    pad_timbre, bass_timbre, lead_timbre = timbre(), timbre(), timbre()
    bar = 4 * beat
    for b in range(int(n / sample_rate / bar) + 1):
        degree = int(progression[b % len(progression)])
        for step in (0, 2, 4):  # triad
            note = root + 12 + scale[(degree + step) % 7] + 12 * ((degree + step) // 7)
            add(b * bar, _note(sample_rate, midi_hz(note), bar, pad_timbre, 0.15, 2.0 * bar), 0.12)
        for half in range(2):
            add(b * bar + half * 2 * beat, _note(sample_rate, midi_hz(root - 12 + scale[degree]), 2 * beat,
                                                  bass_timbre, 0.01, 0.6), 0.35)
    t, degree = 0.0, int(rng.integers(0, 7))
    while t < n / sample_rate:
        dur = beat * float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, 13))
        if rng.random() > 0.1:  # occasional rest
            note = root + 24 + scale[degree % 7] + 12 * (degree // 7)
            add(t, _note(sample_rate, midi_hz(note), dur, lead_timbre, 0.02, rng.uniform(0.3, 1.2)), 0.3)
        t += dur
    if rng.random() < 0.7:
        kick_t = np.arange(int(0.15 * sample_rate)) / sample_rate
        kick = np.sin(2.0 * np.pi * np.cumsum(50.0 + 90.0 * np.exp(-kick_t / 0.03)) / sample_rate)
        kick *= np.exp(-kick_t / 0.05)
        hat_sos = scipy.signal.butter(2, min(6000.0, 0.4 * sample_rate), "highpass", fs=sample_rate, output="sos")
        for i in range(int(n / sample_rate / beat) + 1):
            if i % 2 == 0:
                add(i * beat, kick, 0.6)
            for half in (0.0, 0.5):
                hat = scipy.signal.sosfilt(hat_sos, rng.standard_normal(int(0.04 * sample_rate)))
                add((i + half) * beat, hat * np.exp(-np.arange(len(hat)) / (0.008 * sample_rate)), 0.15)
    return out[:n]


def make_noise(rng: np.random.Generator, kind: int, n: int, sample_rate: int) -> np.ndarray:
    """Non-speech noise of one of six kinds (stationary coloured, hum, modulated, impulsive, engine, wind)."""
    t = np.arange(n) / sample_rate
    kind = kind % 6
    if kind == 0:
        return coloured_noise(rng, n, sample_rate, rng.uniform(-6.0, 1.5))
    if kind == 1:  # mains hum with harmonics over a little hiss
        mains = 50.0 if rng.random() < 0.5 else 60.0
        hum = sum(
            rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 6.3))
            for h in range(1, 9)
        )
        return hum + 0.1 * coloured_noise(rng, n, sample_rate, rng.uniform(-3.0, 0.0))
    if kind == 2:  # coloured noise under a slow random envelope
        env = scipy.signal.sosfiltfilt(
            scipy.signal.butter(2, rng.uniform(0.3, 2.0), fs=sample_rate, output="sos"), rng.standard_normal(n)
        )
        env = 0.2 + (env - env.min()) / (np.ptp(env) + 1e-12)
        return env * coloured_noise(rng, n, sample_rate, rng.uniform(-4.0, 0.0))
    if kind == 3:  # knocks and clicks over a quiet background
        x = 0.05 * coloured_noise(rng, n, sample_rate, -3.0)
        for _ in range(int(rng.integers(5, 21))):
            length = int(rng.uniform(0.01, 0.25) * sample_rate)
            start = int(rng.integers(0, max(n - length, 1)))
            burst = coloured_noise(rng, length, sample_rate, rng.uniform(-6.0, 0.0))
            x[start : start + length] += rng.uniform(0.3, 1.5) * burst * np.exp(-np.arange(length) / (0.2 * length))
        return x
    if kind == 4:  # engine: harmonics of a slowly wandering firing frequency plus rumble
        f_base = rng.uniform(30.0, 80.0) * (1.0 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t))
        phase = 2 * np.pi * np.cumsum(f_base) / sample_rate
        tone = sum(np.sin(h * phase) / h**0.7 for h in range(1, 13))
        return tone / 3.0 + 0.5 * coloured_noise(rng, n, sample_rate, -6.0)
    gust = scipy.signal.sosfiltfilt(  # wind: low-passed noise with strong gusts
        scipy.signal.butter(2, rng.uniform(0.2, 1.0), fs=sample_rate, output="sos"), rng.standard_normal(n)
    )
    gust = (gust - gust.min()) / (np.ptp(gust) + 1e-12)
    sos = scipy.signal.butter(2, rng.uniform(300.0, 800.0), fs=sample_rate, output="sos")
    return (0.05 + gust**2) * scipy.signal.sosfilt(sos, rng.standard_normal(n))


# ----------------------------------------------------------------------------------------------
# Recording sessions.


def _noise_loop_length(sample_rate: int) -> int:
    """A power of two of about 8 s: background noise is generated once per session and read cyclically."""
    return 2 ** int(np.ceil(np.log2(8 * sample_rate)))


@dataclass(frozen=True)
class _Session:
    """How one recording session colours every utterance recorded in it."""

    style: Style
    eq_sos: np.ndarray
    noise_loop: np.ndarray  # unit-RMS background noise, read cyclically
    snr_db: float
    peak_dbfs: float
    rir: np.ndarray | None


@dataclass(frozen=True)
class _Environment:
    """A recording place: its background noise and, sometimes, its room."""

    noise_loop: np.ndarray  # unit-RMS background noise, read cyclically
    rir: np.ndarray | None


def _random_environment(rng: np.random.Generator, sample_rate: int) -> _Environment:
    noise = coloured_noise(rng, _noise_loop_length(sample_rate), sample_rate, rng.uniform(-5.0, -1.0))
    if rng.random() < 0.2:
        noise = noise + 0.3 * make_noise(rng, 1, len(noise), sample_rate)
    if rng.random() < 0.4:
        noise = noise * make_noise_envelope(rng, len(noise), sample_rate)
    rir = None
    if rng.random() < 0.3:
        rir = make_rir(rng, sample_rate, rng.uniform(0.15, 0.4), rng.uniform(3.0, 12.0))
    return _Environment(noise_loop=noise / np.sqrt(np.mean(noise**2)), rir=rir)


def _random_session(rng: np.random.Generator, sample_rate: int, devices: list[np.ndarray],
                    environments: list[_Environment]) -> _Session:
    """Speaking style, level and SNR (5-30 dB) of one session, recorded with one of the corpus' microphones
    in one of its environments. Microphones and environments are shared by many speakers, as in real
    corpora, so a channel identifies no speaker: a model must learn the voice."""
    env = environments[int(rng.integers(len(environments)))]
    return _Session(
        style=random_style(rng),
        eq_sos=devices[int(rng.integers(len(devices)))],
        noise_loop=env.noise_loop,
        snr_db=float(5.0 + 25.0 * rng.beta(2.5, 1.5)),  # mostly clean-ish, sometimes noisy
        peak_dbfs=float(rng.uniform(-30.0, -6.0)),
        rir=env.rir,
    )


def make_noise_envelope(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """A slow positive gain curve between ~0.4 and ~1.4 (fluctuating background)."""
    knots = rng.uniform(0.4, 1.4, int(n / sample_rate) + 2)
    return np.interp(np.arange(n) / sample_rate, np.arange(len(knots)), knots)


def _record(speech: np.ndarray, session: _Session, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Place speech in the session's room and channel: reverb, EQ, background noise, level."""
    x = speech.astype(np.float64)
    if session.rir is not None:
        x = scipy.signal.oaconvolve(x, session.rir)[: len(x)]
    x = scipy.signal.sosfilt(session.eq_sos, x)
    snr_db = float(np.clip(session.snr_db + rng.normal(0.0, 1.5), 5.0, 30.0))
    start = int(rng.integers(0, len(session.noise_loop)))
    noise = np.take(session.noise_loop, np.arange(start, start + len(x)), mode="wrap")
    x = x + noise * np.sqrt(_active_power(x, sample_rate) / 10.0 ** (snr_db / 10.0))
    return _peak_normalise(x, float(np.clip(session.peak_dbfs + rng.normal(0.0, 1.0), -30.0, -6.0)))


def _utterance(voice: Voice, n: int, session: _Session, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One recorded utterance of ``n`` samples: short silences around speech, then the session's channel."""
    margin = min(0.2, 0.1 * n / sample_rate)
    lead = int(rng.uniform(0.3, 1.0) * margin * sample_rate)
    trail = int(rng.uniform(0.3, 1.0) * margin * sample_rate)
    style = Style(
        f0_shift_st=session.style.f0_shift_st + float(rng.normal(0.0, 0.4)),
        tilt_shift_db_per_oct=session.style.tilt_shift_db_per_oct + float(rng.normal(0.0, 0.4)),
        rate_factor=session.style.rate_factor * float(np.exp(rng.normal(0.0, 0.04))),
    )
    x = np.zeros(n, dtype=np.float32)
    x[lead : n - trail] = render_speech(voice, n - lead - trail, sample_rate, rng, style)
    return _record(x, session, rng, sample_rate)


# ----------------------------------------------------------------------------------------------
# Trials and conversations.


def make_trials(utt_ids: list[str], rng: np.random.Generator) -> list[tuple[int, str, str]]:
    """Enroll every utterance against targets from other sessions of its speaker and random non-targets.

    Utterance ids are ``spk/session/utt``. Unordered pairs are never repeated; no self-trials.
    """
    by_spk: dict[str, list[str]] = {}
    for u in utt_ids:
        by_spk.setdefault(u.split("/")[0], []).append(u)
    seen: set[frozenset] = set()
    trials = []
    for u in utt_ids:
        spk, session = u.split("/")[:2]
        same = [v for v in by_spk[spk] if v.split("/")[1] != session]
        other = [v for v in utt_ids if v.split("/")[0] != spk]
        for label, pool, k in ((1, same, TARGETS_PER_UTT), (0, other, NONTARGETS_PER_UTT)):
            for j in rng.choice(len(pool), size=min(k, len(pool)), replace=False) if pool else []:
                pair = frozenset((u, pool[j]))
                if pair not in seen:
                    seen.add(pair)
                    trials.append((label, u, pool[j]))
    return trials


def _conversation_turns(rng: np.random.Generator, n_speakers: int) -> tuple[list[tuple[float, float, int]], float]:
    """Turns (start_s, dur_s, speaker) of 1-6 s with pauses and 5-10% overlapped speech, and the total length.

    Every speaker talks (the first turns go round all of them); overlaps only join consecutive turns.
    Drafts are redrawn until the overlapped fraction of speech lies in OVERLAP_FRACTION (best kept).
    """
    best, best_gap = None, np.inf
    for _ in range(200):
        total = rng.uniform(*CONVERSATION_DUR_S)
        first = rng.permutation(n_speakers)
        turns: list[tuple[float, float, int]] = []
        end, spk = rng.uniform(0.3, 1.0), -1
        while True:
            if len(turns) < n_speakers:
                spk = int(first[len(turns)])
            else:
                spk = int(rng.choice([s for s in range(n_speakers) if s != spk]))
            dur = rng.uniform(*TURN_DUR_S)
            if turns and rng.random() < 0.35:
                start = end - min(rng.uniform(0.3, 1.2), 0.45 * min(dur, turns[-1][1]))
            else:
                start = end + rng.uniform(0.1, 1.2)
            if start + dur > total - 0.3 and len(turns) >= n_speakers:
                break
            turns.append((start, dur, spk))
            end = start + dur
        overlap = sum(max(0.0, a[0] + a[1] - b[0]) for a, b in zip(turns, turns[1:]))
        fraction = overlap / (sum(d for _, d, _ in turns) - overlap)
        gap = max(OVERLAP_FRACTION[0] - fraction, fraction - OVERLAP_FRACTION[1], 0.0)
        if gap < best_gap:
            best, best_gap = (turns, max(total, end + 0.3)), gap
        if gap == 0.0:
            break
    return best


def _conversation(voices: list[Voice], rng: np.random.Generator, sample_rate: int):
    """Audio of a multi-party conversation in one room, and its turns in samples (start, length, speaker)."""
    turns, total_s = _conversation_turns(rng, len(voices))
    spans = [(int(round(s * sample_rate)), int(round(d * sample_rate)), k) for s, d, k in turns]
    n = int(round(total_s * sample_rate))
    gains = 10.0 ** (rng.uniform(-3.0, 3.0, len(voices)) / 20.0)
    styles = [random_style(rng) for _ in voices]
    x = np.zeros(n)
    for start, length, k in spans:
        turn_style = Style(styles[k].f0_shift_st, styles[k].tilt_shift_db_per_oct, styles[k].rate_factor, 0.35)
        x[start : start + length] += gains[k] * render_speech(voices[k], length, sample_rate, rng, turn_style)
    room = _Session(
        style=Style(),
        eq_sos=random_channel_eq(rng, sample_rate, strength=0.5),
        noise_loop=coloured_noise(rng, _noise_loop_length(sample_rate), sample_rate, rng.uniform(-5.0, -1.0)),
        snr_db=float(rng.uniform(20.0, 30.0)),
        peak_dbfs=float(rng.uniform(-8.0, -6.0)),
        rir=make_rir(rng, sample_rate, rng.uniform(0.2, 0.5), rng.uniform(5.0, 12.0)) if rng.random() < 0.5 else None,
    )
    return _record(x, room, rng, sample_rate), spans


def _rttm(file_id: str, spans: list[tuple[int, int, int]], names: list[str], sample_rate: int) -> str:
    lines = [
        f"SPEAKER {file_id} 1 {s / sample_rate:.3f} {d / sample_rate:.3f} <NA> <NA> {names[k]} <NA> <NA>"
        for s, d, k in sorted(spans)
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# The corpus.


def _check_args(**kw) -> None:
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise VoxflowError(f"make_demo_corpus: {key}={kw[key]!r} is invalid; it must be {what}")

    for key in ("seed", "n_dev_speakers", "n_test_speakers", "n_heldout_speakers", "sessions_per_speaker",
                "utts_per_session",
                "n_mislabeled", "n_conversations", "n_noises", "n_rirs", "sample_rate"):
        need(isinstance(kw[key], (int, np.integer)) and not isinstance(kw[key], bool), key, "an integer")
    need(kw["seed"] >= 0, "seed", ">= 0")
    need(kw["n_dev_speakers"] >= 2, "n_dev_speakers", ">= 2")
    need(kw["n_test_speakers"] >= 2, "n_test_speakers", ">= 2")
    need(kw["n_heldout_speakers"] == 0 or kw["n_heldout_speakers"] >= 2, "n_heldout_speakers", "0 or >= 2")
    need(kw["sessions_per_speaker"] >= 2, "sessions_per_speaker", ">= 2 (targets come from other sessions)")
    need(kw["utts_per_session"] >= 1, "utts_per_session", ">= 1")
    need(0 <= kw["n_mislabeled"] <= kw["n_dev_speakers"], "n_mislabeled", "between 0 and n_dev_speakers")
    for key in ("n_conversations", "n_noises", "n_rirs"):
        need(kw[key] >= 0, key, ">= 0")
    need(8000 <= kw["sample_rate"] <= 48000, "sample_rate", "between 8000 and 48000")
    for key in ("min_dur_s", "max_dur_s"):
        need(isinstance(kw[key], (int, float, np.number)) and not isinstance(kw[key], bool), key, "a number")
    need(kw["min_dur_s"] >= 0.5, "min_dur_s", ">= 0.5")
    need(kw["min_dur_s"] <= kw["max_dur_s"], "max_dur_s", ">= min_dur_s")


def make_demo_corpus(
    out_dir,
    seed: int = 0,
    n_dev_speakers: int = 40,
    n_test_speakers: int = 10,
    n_heldout_speakers: int = 0,
    sessions_per_speaker: int = 3,
    utts_per_session: int = 4,
    min_dur_s: float = 2.0,
    max_dur_s: float = 8.0,
    n_mislabeled: int = 6,
    n_conversations: int = 3,
    n_noises: int = 6,
    n_rirs: int = 8,
    sample_rate: int = 16000,
) -> dict:
    """Build the synthetic demo corpus in ``out_dir`` (replacing it atomically); return a summary.

    The layout is in the module docstring; ``n_noises`` files are made for each of the noise/,
    music/ and babble/ categories. The same arguments always give bit-identical files.
    """
    settings = dict(
        seed=seed, n_dev_speakers=n_dev_speakers, n_test_speakers=n_test_speakers,
        n_heldout_speakers=n_heldout_speakers,
        sessions_per_speaker=sessions_per_speaker, utts_per_session=utts_per_session, min_dur_s=min_dur_s,
        max_dur_s=max_dur_s, n_mislabeled=n_mislabeled, n_conversations=n_conversations, n_noises=n_noises,
        n_rirs=n_rirs, sample_rate=sample_rate,
    )
    _check_args(**settings)
    settings = {k: float(v) if k.endswith("_s") else int(v) for k, v in settings.items()}
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VoxflowError(f"demo corpus output {out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    try:
        summary = _build(tmp, settings)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["out_dir"] = str(out)
    return summary


class _Cast:
    """Every voice of the corpus, created on demand from the seed; records them for speakers.json."""

    def __init__(self, seed: int, n_main: int):
        self.seed, self.n_main, self.n_extra = seed, n_main, 0
        self.params: dict[str, dict] = {}

    def _voice(self, index: int, spk_id: str, role: str, stream: int = _VOICE) -> Voice:
        voice = random_voice(spk_id, _rng(self.seed, stream, index))
        self.params[spk_id] = {"role": role, **voice.to_json()}
        return voice

    def main(self, index: int, role: str) -> Voice:
        return self._voice(index, f"id{index + 1:05d}", role)

    def heldout(self, k: int) -> Voice:
        """The k-th held-out speaker, numbered after the main ones."""
        return self._voice(k, f"id{self.n_main + k + 1:05d}", "heldout", _HELDOUT_VOICE)

    def extras(self, count: int, role: str) -> list[Voice]:
        """``count`` new speakers (ext0001, ...) who appear nowhere but where ``role`` says."""
        first, self.n_extra = self.n_extra, self.n_extra + count
        return [self._voice(self.n_main + k, f"ext{k + 1:04d}", role) for k in range(first, self.n_extra)]


def _build(root: Path, cfg: dict) -> dict:
    """Write every part of the corpus under ``root``; return the summary counts."""
    seed, sr = cfg["seed"], cfg["sample_rate"]
    n_dev, n_test, n_heldout = cfg["n_dev_speakers"], cfg["n_test_speakers"], cfg["n_heldout_speakers"]
    parts = ["dev"] * n_dev + ["test"] * n_test + ["heldout"] * n_heldout
    cast = _Cast(seed, n_dev + n_test)
    voices = [cast.main(i, part) for i, part in enumerate(parts[: n_dev + n_test])]
    voices += [cast.heldout(k) for k in range(n_heldout)]
    planted = _plan_mislabels(cfg, voices[:n_dev], cast)
    samples = {"dev": 0, "test": 0, "heldout": 0, "noise": 0, "rirs": 0, "diar": 0}

    devices = [random_channel_eq(_rng(seed, _DEVICE, k), sr) for k in range(N_DEVICES)]
    environments = [_random_environment(_rng(seed, _ENVIRONMENT, k), sr) for k in range(N_ENVIRONMENTS)]
    mislabel_rows, test_utts = [], []
    for i, (voice, part) in enumerate(zip(voices, parts)):
        for s in range(cfg["sessions_per_speaker"]):
            session = _random_session(_rng(seed, _SESSION, i, s), sr, devices, environments)
            for u in range(cfg["utts_per_session"]):
                rng = _rng(seed, _UTT, i, s, u)
                utt_id = f"{voice.spk_id}/s{s + 1:02d}/{u + 1:05d}"
                speaker = planted.get((i, s, u), voice)
                lo, hi = MISLABELED_DUR_S if speaker is not voice else (cfg["min_dur_s"], cfg["max_dur_s"])
                audio = _utterance(speaker, int(rng.uniform(lo, hi) * sr), session, rng, sr)
                samples[part] += _write_wav(root / part / "wav" / f"{utt_id}.wav", audio, sr)
                if speaker is not voice:
                    mislabel_rows.append(f"{utt_id},{voice.spk_id},{speaker.spk_id}\n")
                if part == "test":
                    test_utts.append(utt_id)
    (root / "dev" / "mislabeled.csv").write_text("utt_id,labeled_spk,true_spk\n" + "".join(sorted(mislabel_rows)))
    trials = make_trials(test_utts, _rng(seed, _TRIALS))
    (root / "test" / "trials.txt").write_text("".join(f"{lab} {a}.wav {b}.wav\n" for lab, a, b in trials))

    samples["noise"] = _write_noises(root / "noise", cfg, cast)
    for k in range(cfg["n_rirs"]):
        rng = _rng(seed, _RIR, k)
        rt60 = 0.2 + 0.6 * (k + rng.random()) / cfg["n_rirs"]  # spread over 0.2-0.8 s
        rir = make_rir(rng, sr, rt60, rng.uniform(-2.0, 10.0))
        samples["rirs"] += _write_wav(root / "rirs" / f"rir-{k + 1:03d}.wav", rir, sr)
    for c in range(cfg["n_conversations"]):
        rng = _rng(seed, _CONV, c)
        conv_id = f"conv{c + 1:03d}"
        talkers = cast.extras(int(rng.integers(2, 5)), f"diar:{conv_id}")
        audio, spans = _conversation(talkers, rng, sr)
        samples["diar"] += _write_wav(root / "diar" / "wav" / f"{conv_id}.wav", audio, sr)
        (root / "diar" / "rttm").mkdir(parents=True, exist_ok=True)
        (root / "diar" / "rttm" / f"{conv_id}.rttm").write_text(_rttm(conv_id, spans, [v.spk_id for v in talkers], sr))

    doc = {"seed": seed, "settings": cfg, "speakers": cast.params}
    (root / "speakers.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    n_target = sum(lab for lab, _, _ in trials)
    n_per_speaker = cfg["sessions_per_speaker"] * cfg["utts_per_session"]
    return {
        "seed": seed,
        "sample_rate": sr,
        "n_dev_speakers": n_dev,
        "n_test_speakers": n_test,
        "n_heldout_speakers": n_heldout,
        "n_dev_utts": n_dev * n_per_speaker,
        "n_test_utts": n_test * n_per_speaker,
        "n_heldout_utts": n_heldout * n_per_speaker,
        "n_trials": len(trials),
        "n_target_trials": n_target,
        "n_nontarget_trials": len(trials) - n_target,
        "n_mislabeled": len(mislabel_rows),
        "n_noise_files": {"noise": cfg["n_noises"], "music": cfg["n_noises"], "babble": cfg["n_noises"]},
        "n_rirs": cfg["n_rirs"],
        "n_conversations": cfg["n_conversations"],
        "n_extra_speakers": cast.n_extra,
        "duration_s": {k: round(v / sr, 3) for k, v in samples.items()},
        "total_duration_s": round(sum(samples.values()) / sr, 3),
    }


def _plan_mislabels(cfg: dict, dev_voices: list[Voice], cast: _Cast) -> dict[tuple[int, int, int], Voice]:
    """Which (speaker, session, utterance) slots get another voice: one slot for each of n_mislabeled
    distinct dev speakers; half the impostors are other dev speakers, the rest outsiders."""
    rng = _rng(cfg["seed"], _MISLABEL)
    n_mis, n_dev = cfg["n_mislabeled"], len(dev_voices)
    from_dev = rng.permutation(np.arange(n_mis) < n_mis // 2)
    outsiders = iter(cast.extras(int(n_mis - from_dev.sum()), "mislabel_source"))
    planted = {}
    for spk, dev_source in zip(rng.choice(n_dev, size=n_mis, replace=False), from_dev):
        true = dev_voices[int(rng.choice([d for d in range(n_dev) if d != spk]))] if dev_source else next(outsiders)
        slot = (int(spk), int(rng.integers(cfg["sessions_per_speaker"])), int(rng.integers(cfg["utts_per_session"])))
        planted[slot] = true
    return planted


def _write_noises(noise_dir: Path, cfg: dict, cast: _Cast) -> int:
    """MUSAN-like noise/, music/ and babble/ files (n_noises each); return the number of samples."""
    seed, sr = cfg["seed"], cfg["sample_rate"]
    babble_pool = cast.extras(BABBLE_POOL if cfg["n_noises"] else 0, "babble")
    written = 0
    for k in range(cfg["n_noises"]):
        rng = _rng(seed, _NOISE, k)
        noise = make_noise(rng, k, int(rng.uniform(*NOISE_DUR_S) * sr), sr)
        rng = _rng(seed, _MUSIC, k)
        music = make_music(rng, int(rng.uniform(*NOISE_DUR_S) * sr), sr)
        rng = _rng(seed, _BABBLE, k)
        n = int(rng.uniform(*NOISE_DUR_S) * sr)
        talkers = rng.choice(len(babble_pool), size=int(rng.integers(3, 7)), replace=False)
        babble = sum(
            10.0 ** (rng.uniform(-4.0, 4.0) / 20.0) * render_speech(babble_pool[j], n, sr, rng, random_style(rng))
            for j in talkers
        )
        babble = scipy.signal.sosfilt(random_channel_eq(rng, sr, strength=0.5), babble)
        for category, audio in (("noise", noise), ("music", music), ("babble", babble)):
            path = noise_dir / category / f"{category}-{k + 1:03d}.wav"
            written += _write_wav(path, _peak_normalise(audio, -3.0), sr)
    return written
