"""Multi-party conversations of the demo corpus (diar/): turn plans with overlaps, their audio and RTTM."""

from __future__ import annotations

import numpy as np

from voxflow.demo.acoustics import coloured_noise, make_rir, random_channel_eq
from voxflow.demo.recording import Session, noise_loop_length, record
from voxflow.demo.speech import render_speech
from voxflow.demo.voices import Style, Voice, random_style

CONVERSATION_DUR_S = (30.0, 60.0)
TURN_DUR_S = (1.0, 6.0)
OVERLAP_FRACTION = (0.05, 0.10)


def conversation_turns(rng: np.random.Generator, n_speakers: int) -> tuple[list[tuple[float, float, int]], float]:
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


def render_conversation(voices: list[Voice], rng: np.random.Generator, sample_rate: int):
    """Audio of a multi-party conversation in one room, and its turns in samples (start, length, speaker)."""
    turns, total_s = conversation_turns(rng, len(voices))
    spans = [(int(round(s * sample_rate)), int(round(d * sample_rate)), k) for s, d, k in turns]
    n = int(round(total_s * sample_rate))
    gains = 10.0 ** (rng.uniform(-3.0, 3.0, len(voices)) / 20.0)
    styles = [random_style(rng) for _ in voices]
    x = np.zeros(n)
    for start, length, k in spans:
        turn_style = Style(styles[k].f0_shift_st, styles[k].tilt_shift_db_per_oct, styles[k].rate_factor, 0.35)
        x[start : start + length] += gains[k] * render_speech(voices[k], length, sample_rate, rng, turn_style)
    room = Session(
        style=Style(),
        eq_sos=random_channel_eq(rng, sample_rate, strength=0.5),
        noise_loop=coloured_noise(rng, noise_loop_length(sample_rate), sample_rate, rng.uniform(-5.0, -1.0)),
        snr_db=float(rng.uniform(20.0, 30.0)),
        peak_dbfs=float(rng.uniform(-8.0, -6.0)),
        rir=make_rir(rng, sample_rate, rng.uniform(0.2, 0.5), rng.uniform(5.0, 12.0)) if rng.random() < 0.5 else None,
    )
    return record(x, room, rng, sample_rate), spans


def rttm_text(file_id: str, spans: list[tuple[int, int, int]], names: list[str], sample_rate: int) -> str:
    lines = [
        f"SPEAKER {file_id} 1 {s / sample_rate:.3f} {d / sample_rate:.3f} <NA> <NA> {names[k]} <NA> <NA>"
        for s, d, k in sorted(spans)
    ]
    return "\n".join(lines) + "\n"
