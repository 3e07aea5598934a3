"""Synthetic speaker voices: the parameters that make a voice recognisable, and how sessions vary them.

A voice is a set of physiological and habitual parameters (vocal-tract length, per-vowel formant
habits and vowel-space size, f0 and intonation range, jitter/shimmer, source tilt, open quotient and
breathiness, piriform and nasal spectral dips, speaking rate); a style is a session's or utterance's
deviation from it (pitch, effort, tempo). :mod:`voxflow.demo.speech` renders speech in a voice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np


# Reference F1-F3 (Hz) of an average adult male voice for ten vowels (i, ɪ, ɛ, æ, ɑ, ɔ, ʊ, u, ʌ, ɝ).
VOWEL_FORMANTS_HZ = np.array(
    [
        [270, 2290, 3010],
        [390, 1990, 2550],
        [530, 1840, 2480],
        [660, 1720, 2410],
        [730, 1090, 2440],
        [570, 840, 2410],
        [440, 1020, 2240],
        [300, 870, 2240],
        [640, 1190, 2390],
        [490, 1350, 1690],
    ],
    dtype=np.float64,
)
N_VOWELS = len(VOWEL_FORMANTS_HZ)
_LOG_SCHWA = np.log([500.0, 1500.0, 2500.0])  # neutral vowel of the reference voice
HIGH_FORMANTS_HZ = np.array([3400.0, 4300.0])  # F4, F5 reference
BASE_BANDWIDTHS_HZ = np.array([70.0, 90.0, 130.0, 190.0, 250.0])

# Manner classes of consonants.
PLOSIVE, FRICATIVE, NASAL, APPROXIMANT, ASPIRATE = range(5)


@dataclass(frozen=True)
class Consonant:
    """One consonant: manner, voicing, duration, formant locus and frication spectrum."""

    name: str
    manner: int
    voiced: bool
    dur_s: float
    locus_hz: tuple[float, float, float] | None  # F1-F3 target during the consonant (reference voice)
    fric_hz: float = 0.0  # centre of the frication / burst noise band (reference voice)
    fric_bw_hz: float = 0.0
    fric_level: float = 0.0
    weight: float = 1.0  # relative frequency of use


CONSONANTS = (
    Consonant("p", PLOSIVE, False, 0.075, (250, 900, 2200), 1200, 1800, 0.5, 1.0),
    Consonant("t", PLOSIVE, False, 0.075, (250, 1750, 2700), 4200, 2500, 0.8, 1.4),
    Consonant("k", PLOSIVE, False, 0.08, (250, 1900, 2300), 2200, 1200, 0.7, 1.1),
    Consonant("b", PLOSIVE, True, 0.06, (220, 900, 2200), 1200, 1800, 0.3, 0.8),
    Consonant("d", PLOSIVE, True, 0.06, (220, 1750, 2700), 4000, 2500, 0.4, 1.1),
    Consonant("g", PLOSIVE, True, 0.065, (220, 1900, 2300), 2200, 1200, 0.4, 0.6),
    Consonant("f", FRICATIVE, False, 0.10, (300, 1000, 2300), 5500, 5000, 0.25, 0.7),
    Consonant("th", FRICATIVE, False, 0.09, (300, 1500, 2600), 6000, 5000, 0.2, 0.4),
    Consonant("s", FRICATIVE, False, 0.11, (300, 1700, 2700), 6000, 2200, 1.0, 1.4),
    Consonant("sh", FRICATIVE, False, 0.11, (300, 1900, 2400), 3200, 1600, 0.9, 0.5),
    Consonant("v", FRICATIVE, True, 0.07, (280, 1000, 2300), 5000, 5000, 0.15, 0.5),
    Consonant("z", FRICATIVE, True, 0.09, (280, 1700, 2700), 5800, 2200, 0.5, 0.6),
    Consonant("h", ASPIRATE, False, 0.07, None, 0.0, 0.0, 0.0, 0.6),
    Consonant("m", NASAL, True, 0.07, (250, 1100, 2200), 0.0, 0.0, 0.0, 1.0),
    Consonant("n", NASAL, True, 0.065, (250, 1500, 2500), 0.0, 0.0, 0.0, 1.3),
    Consonant("l", APPROXIMANT, True, 0.06, (360, 1100, 2700), 0.0, 0.0, 0.0, 1.0),
    Consonant("r", APPROXIMANT, True, 0.06, (350, 1250, 1650), 0.0, 0.0, 0.0, 0.9),
    Consonant("w", APPROXIMANT, True, 0.055, (300, 700, 2200), 0.0, 0.0, 0.0, 0.6),
    Consonant("y", APPROXIMANT, True, 0.05, (280, 2200, 2900), 0.0, 0.0, 0.0, 0.4),
)


@dataclass(frozen=True)
class Voice:
    """The parameters that make one synthetic speaker sound like themselves."""

    spk_id: str
    sex: str  # "m" or "f"
    formant_scale: float  # inverse vocal-tract length: multiplies every formant
    vowel_offsets: np.ndarray = field(repr=False)  # (N_VOWELS, 3) multiplicative F1-F3 habits
    high_formant_offsets: np.ndarray = field(repr=False)  # (2,) multiplicative F4, F5
    bandwidth_scale: float
    f0_mean_hz: float
    f0_range_st: float  # intonation excursion in semitones
    jitter: float  # relative std of period-to-period f0
    shimmer: float  # relative std of period-to-period amplitude
    tilt_db_per_oct: float  # extra glottal-source tilt above 500 Hz
    open_quotient: float  # fraction of the glottal period with the glottis open
    aspiration: float  # breathiness: aspiration noise relative to the voiced source
    syllable_rate: float  # syllables per second
    fricative_scale: float  # scales frication noise centre frequencies
    vowel_centralisation: float  # 0 = full vowel space, >0 shrinks vowels towards schwa, <0 expands
    piriform_hz: float  # centre of the hypopharyngeal (piriform fossa) spectral dip
    piriform_depth_db: float
    nasal_zero_hz: float  # habitual nasal coupling: a shallow anti-resonance
    nasal_depth_db: float

    def to_json(self) -> dict:
        """The parameters as plain JSON-able values (rounded)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                out[f.name] = np.round(value, 4).tolist()
            elif isinstance(value, float):
                out[f.name] = round(value, 5)
            elif f.name != "spk_id":
                out[f.name] = value
        return out

    def vowel_targets_hz(self) -> np.ndarray:
        """(N_VOWELS, 3) F1-F3 of this speaker's vowels."""
        log_f = np.log(VOWEL_FORMANTS_HZ * self.vowel_offsets)
        log_f = _LOG_SCHWA + (1.0 - self.vowel_centralisation) * (log_f - _LOG_SCHWA)
        return np.exp(log_f) * self.formant_scale

    def colour_db(self, freqs: np.ndarray, tilt_shift_db_per_oct: float = 0.0) -> np.ndarray:
        """Fixed spectral shaping of this voice (source tilt, piriform and nasal dips) in dB."""
        octaves = np.log2(np.maximum(freqs, 500.0) / 500.0)
        colour = (self.tilt_db_per_oct + tilt_shift_db_per_oct) * octaves
        colour -= self.piriform_depth_db * np.exp(-0.5 * ((freqs - self.piriform_hz) / (0.08 * self.piriform_hz)) ** 2)
        colour -= self.nasal_depth_db * np.exp(-0.5 * ((freqs - self.nasal_zero_hz) / (0.15 * self.nasal_zero_hz)) ** 2)
        return colour


def random_voice(spk_id: str, rng: np.random.Generator, sex: str | None = None) -> Voice:
    """Draw a voice; female voices have shorter vocal tracts and higher f0 than male ones."""
    if sex is None:
        sex = "f" if rng.random() < 0.5 else "m"
    female = sex == "f"
    scale = float(np.clip(rng.normal(1.1 if female else 0.92, 0.06), 0.8, 1.2))
    f0_lo, f0_hi = (165.0, 255.0) if female else (85.0, 155.0)
    return Voice(
        spk_id=spk_id,
        sex=sex,
        formant_scale=scale,
        vowel_offsets=np.exp(rng.normal(0.0, 0.07, size=(N_VOWELS, 3))),
        high_formant_offsets=np.exp(rng.normal(0.0, 0.08, size=2)),
        bandwidth_scale=float(np.exp(rng.normal(0.0, 0.3))),
        f0_mean_hz=float(rng.uniform(f0_lo, f0_hi)),
        f0_range_st=float(rng.uniform(1.5, 4.5)),
        jitter=float(rng.uniform(0.003, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.10)),
        tilt_db_per_oct=float(rng.uniform(-8.0, 3.0)),
        open_quotient=float(rng.uniform(0.4, 0.8)),
        aspiration=float(np.exp(rng.uniform(np.log(0.02), np.log(0.3)))),
        syllable_rate=float(rng.uniform(3.2, 6.2)),
        fricative_scale=float(scale * np.exp(rng.normal(0.0, 0.08))),
        vowel_centralisation=float(rng.uniform(-0.1, 0.4)),
        piriform_hz=float(rng.uniform(4000.0, 5200.0) * scale),
        piriform_depth_db=float(rng.uniform(4.0, 16.0)),
        nasal_zero_hz=float(rng.uniform(600.0, 1400.0)),
        nasal_depth_db=float(rng.uniform(0.0, 10.0)),
    )


@dataclass(frozen=True)
class Style:
    """Session- or utterance-level deviations of a speaker from their habitual voice."""

    f0_shift_st: float = 0.0
    tilt_shift_db_per_oct: float = 0.0  # vocal effort
    rate_factor: float = 1.0
    max_pause_s: float = 0.45  # longest pause between phrases


def random_style(rng: np.random.Generator) -> Style:
    """Moderate session-to-session variation of pitch, effort and tempo."""
    return Style(
        f0_shift_st=float(rng.normal(0.0, 1.0)),
        tilt_shift_db_per_oct=float(rng.normal(0.0, 0.6)),
        rate_factor=float(np.exp(rng.normal(0.0, 0.08))),
    )
