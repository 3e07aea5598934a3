"""Sounds and rooms of the demo corpus: coloured and environmental noise, music, microphone EQ, room impulse
responses. Every generator draws from the ``rng`` it is given, so a seeded stream gives the same signal."""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.signal


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


def make_noise_envelope(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """A slow positive gain curve between ~0.4 and ~1.4 (fluctuating background)."""
    knots = rng.uniform(0.4, 1.4, int(n / sample_rate) + 2)
    return np.interp(np.arange(n) / sample_rate, np.arange(len(knots)), knots)
