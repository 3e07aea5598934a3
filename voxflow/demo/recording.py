"""Recording synthetic speech: sessions (microphone, environment, style, level, SNR) and what they do to it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

from voxflow.demo.acoustics import coloured_noise, make_noise, make_noise_envelope, make_rir
from voxflow.demo.speech import render_speech
from voxflow.demo.voices import Style, Voice, random_style


def peak_normalise(x: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """``x`` scaled so that its peak lies at ``peak_dbfs`` dB re full scale."""
    return x * (10.0 ** (peak_dbfs / 20.0) / max(float(np.max(np.abs(x))), 1e-9))


def active_power(x: np.ndarray, sample_rate: int, floor_db: float = 30.0) -> float:
    """Mean power over 20 ms frames within ``floor_db`` of the loudest frame (speech activity)."""
    hop = max(sample_rate // 50, 1)
    n = len(x) // hop * hop
    power = np.mean(np.square(x[:n].reshape(-1, hop), dtype=np.float64), axis=1) if n else np.array([0.0])
    active = power >= power.max() * 10.0 ** (-floor_db / 10.0)
    return float(np.mean(power[active])) + 1e-20


def noise_loop_length(sample_rate: int) -> int:
    """A power of two of about 8 s: background noise is generated once per session and read cyclically."""
    return 2 ** int(np.ceil(np.log2(8 * sample_rate)))


@dataclass(frozen=True)
class Session:
    """How one recording session colours every utterance recorded in it."""

    style: Style
    eq_sos: np.ndarray
    noise_loop: np.ndarray  # unit-RMS background noise, read cyclically
    snr_db: float
    peak_dbfs: float
    rir: np.ndarray | None


@dataclass(frozen=True)
class Environment:
    """A recording place: its background noise and, sometimes, its room."""

    noise_loop: np.ndarray  # unit-RMS background noise, read cyclically
    rir: np.ndarray | None


def random_environment(rng: np.random.Generator, sample_rate: int) -> Environment:
    noise = coloured_noise(rng, noise_loop_length(sample_rate), sample_rate, rng.uniform(-5.0, -1.0))
    if rng.random() < 0.2:
        noise = noise + 0.3 * make_noise(rng, 1, len(noise), sample_rate)
    if rng.random() < 0.4:
        noise = noise * make_noise_envelope(rng, len(noise), sample_rate)
    rir = None
    if rng.random() < 0.3:
        rir = make_rir(rng, sample_rate, rng.uniform(0.15, 0.4), rng.uniform(3.0, 12.0))
    return Environment(noise_loop=noise / np.sqrt(np.mean(noise**2)), rir=rir)


def random_session(rng: np.random.Generator, sample_rate: int, devices: list[np.ndarray],
                    environments: list[Environment]) -> Session:
    """Speaking style, level and SNR (5-30 dB) of one session, recorded with one of the corpus' microphones
    in one of its environments. Microphones and environments are shared by many speakers, as in real
    corpora, so a channel identifies no speaker: a model must learn the voice."""
    env = environments[int(rng.integers(len(environments)))]
    return Session(
        style=random_style(rng),
        eq_sos=devices[int(rng.integers(len(devices)))],
        noise_loop=env.noise_loop,
        snr_db=float(5.0 + 25.0 * rng.beta(2.5, 1.5)),  # mostly clean-ish, sometimes noisy
        peak_dbfs=float(rng.uniform(-30.0, -6.0)),
        rir=env.rir,
    )


def record(speech: np.ndarray, session: Session, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Place speech in the session's room and channel: reverb, EQ, background noise, level."""
    x = speech.astype(np.float64)
    if session.rir is not None:
        x = scipy.signal.oaconvolve(x, session.rir)[: len(x)]
    x = scipy.signal.sosfilt(session.eq_sos, x)
    snr_db = float(np.clip(session.snr_db + rng.normal(0.0, 1.5), 5.0, 30.0))
    start = int(rng.integers(0, len(session.noise_loop)))
    noise = np.take(session.noise_loop, np.arange(start, start + len(x)), mode="wrap")
    x = x + noise * np.sqrt(active_power(x, sample_rate) / 10.0 ** (snr_db / 10.0))
    return peak_normalise(x, float(np.clip(session.peak_dbfs + rng.normal(0.0, 1.0), -30.0, -6.0)))


def record_utterance(voice: Voice, n: int, session: Session, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
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
    return record(x, session, rng, sample_rate)
