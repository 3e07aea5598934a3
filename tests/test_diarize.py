"""Tests for energy VAD, Kaldi VAD, sub-segmentation, turn building and the diarization pipeline."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from voxflow.diarize.pipeline import diarize, diarize_detailed, subsegments_to_turns
from voxflow.diarize.subsegment import subsegments
from voxflow.diarize.vad import energy_vad, frame_energy, kaldi_energy_vad, kaldi_log_energy
from voxflow.errors import VoxflowError

SR = 16000


def tone_bursts(bursts, total_s, sr=SR, freq=440.0, noise=1e-4, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(total_s * sr)) / sr
    wav = noise * rng.normal(size=t.size)
    for start, end, amp in bursts:
        m = (t >= start) & (t < end)
        wav[m] += amp * np.sin(2 * np.pi * freq * t[m])
    return wav


# ---------------------------------------------------------------- energy VAD


def test_energy_vad_finds_tone_bursts_within_20ms():
    bursts = [(0.50, 1.20, 0.5), (1.70, 2.50, 0.05), (3.00, 3.60, 0.3)]  # the second is 20 dB quieter
    regions = energy_vad(tone_bursts(bursts, 4.0), SR)
    assert len(regions) == 3
    for (s, e), (bs, be, _) in zip(regions, bursts):
        assert abs(s - bs) <= 0.02 and abs(e - be) <= 0.02


def test_energy_vad_smoothing_rules():
    # A 0.1 s gap is filled (< min_silence_s 0.2); a 0.1 s blip is dropped (< min_speech_s 0.25).
    wav = tone_bursts([(0.5, 1.0, 0.5), (1.1, 1.6, 0.5), (2.5, 2.6, 0.5)], 3.5)
    regions = energy_vad(wav, SR)
    assert len(regions) == 1
    assert regions[0][0] == pytest.approx(0.5, abs=0.02) and regions[0][1] == pytest.approx(1.6, abs=0.02)
    # With the smoothing disabled both gaps and the blip reappear.
    raw = energy_vad(wav, SR, min_speech_s=0.0, min_silence_s=0.0)
    assert len(raw) == 3


def test_energy_vad_threshold_and_silence():
    wav = tone_bursts([(0.5, 1.5, 0.5), (2.0, 3.0, 0.005)], 3.5)  # second burst 40 dB down
    assert len(energy_vad(wav, SR, threshold_db=-35.0)) == 1
    assert len(energy_vad(wav, SR, threshold_db=-45.0)) == 2
    assert energy_vad(np.zeros(SR), SR) == []
    assert energy_vad(np.zeros(0), SR) == []
    with pytest.raises(VoxflowError, match="mono"):
        energy_vad(np.zeros((2, 100)), SR)


def test_frame_energy_framing():
    wav = np.arange(1.0, 1001.0)
    e = frame_energy(wav, 1000, frame_ms=100, shift_ms=50)  # frames of 100 samples every 50
    assert len(e) == 1 + (1000 - 100) // 50
    assert e[3] == pytest.approx(np.sum(wav[150:250] ** 2))
    longer = np.arange(1.0, 1021.0)  # 20 frames; the last one, from 950, is zero-padded
    e2 = frame_energy(longer, 1000, frame_ms=100, shift_ms=50, snip_edges=False)
    assert len(e2) == 20 and e2[-1] == pytest.approx(np.sum(longer[950:] ** 2))


# ---------------------------------------------------------------- Kaldi VAD


def kaldi_vad_loop(e, thr, scale, ctx, prop):
    t_abs = thr + scale * np.mean(e)
    out = []
    for t in range(len(e)):
        window = [e[u] for u in range(t - ctx, t + ctx + 1) if 0 <= u < len(e)]
        out.append(sum(v > t_abs for v in window) >= prop * len(window))
    return np.array(out, dtype=bool)


def test_kaldi_vad_known_answer():
    e = np.array([10.0, 0.0, 10.0, 10.0, 0.0])  # threshold 5.5 + 0.5 * 6 = 8.5
    assert kaldi_energy_vad(e, frames_context=0, proportion_threshold=0.6).tolist() == [1, 0, 1, 1, 0]
    assert kaldi_energy_vad(e, frames_context=1, proportion_threshold=0.6).tolist() == [0, 1, 1, 1, 0]


@pytest.mark.parametrize("ctx,prop", [(0, 0.6), (2, 0.12), (5, 0.5)])
def test_kaldi_vad_matches_loop(ctx, prop):
    e = np.random.default_rng(ctx).normal(12.0, 4.0, size=300)
    np.testing.assert_array_equal(kaldi_energy_vad(e, frames_context=ctx, proportion_threshold=prop),
                                  kaldi_vad_loop(e, 5.5, 0.5, ctx, prop))


def test_kaldi_log_energy_against_loop():
    wav = np.random.default_rng(1).normal(0, 1000, size=4000) + 300.0
    le = kaldi_log_energy(wav, 8000)  # 200-sample frames every 80
    assert len(le) == 1 + (4000 - 200) // 80
    for t in (0, 7, len(le) - 1):
        fr = wav[t * 80 : t * 80 + 200]
        assert le[t] == pytest.approx(np.log(np.sum((fr - fr.mean()) ** 2)))
    assert kaldi_log_energy(np.zeros(400), 8000)[0] == pytest.approx(np.log(np.finfo(np.float32).eps))


# ---------------------------------------------------------------- sub-segments


@pytest.mark.parametrize(
    "region,expected",
    [
        ((0.0, 1.0), [(0.0, 1.0)]),
        ((0.0, 1.5), [(0.0, 1.5)]),
        ((2.0, 5.0), [(2.0, 3.5), (2.75, 4.25), (3.5, 5.0)]),
        ((0.0, 4.0), [(0.0, 1.5), (0.75, 2.25), (1.5, 3.0), (2.25, 3.75), (3.0, 4.0)]),
        ((10.0, 11.6), [(10.0, 11.5), (10.75, 11.6)]),
        ((0.3, 2.1), [(0.3, 1.8), (1.05, 2.1)]),
    ],
)
def test_subsegments_hand_cases(region, expected):
    got = subsegments([region])
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_subsegments_invariants_and_order():
    rng = np.random.default_rng(2)
    regions, t = [], 0.0
    for _ in range(30):
        t += rng.uniform(0.1, 1.0)
        length = rng.uniform(0.05, 6.0)
        regions.append((t, t + length))
        t += length
    out = subsegments(regions, window_s=1.5, shift_s=0.75)
    i = 0
    for s, e in regions:
        mine = [w for w in out if s <= w[0] < e]
        assert out[i : i + len(mine)] == mine  # region order preserved
        i += len(mine)
        assert mine[0][0] == s and mine[-1][1] == pytest.approx(e, abs=1e-12)
        for a, b in mine:
            assert b - a <= 1.5 + 1e-9
        if len(mine) > 1:
            assert np.allclose(np.diff([w[0] for w in mine]), 0.75)
            assert mine[-1][1] - mine[-1][0] > 0.75 - 1e-9
            assert mine[-2][1] < e  # no window before the last already reached the end
    assert i == len(out)


def test_subsegments_bad_input():
    with pytest.raises(VoxflowError, match=r"regions\[1\]"):
        subsegments([(0.0, 1.0), (2.0, 2.0)])
    with pytest.raises(VoxflowError, match="shift_s"):
        subsegments([(0.0, 1.0)], shift_s=0.0)


# ---------------------------------------------------------------- turns


def test_turns_split_overlaps_at_midpoint_and_merge():
    starts = [0.0, 0.75, 1.5, 2.25, 5.0, 6.0]
    ends = [1.5, 2.25, 3.0, 3.75, 6.0, 7.0]
    labels = [0, 0, 1, 1, 0, 0]
    turns = subsegments_to_turns(starts, ends, labels, "f")
    assert list(turns.columns) == ["file_id", "start", "duration", "speaker"]
    assert turns["speaker"].tolist() == ["spk0", "spk1", "spk0"]
    np.testing.assert_allclose(turns["start"], [0.0, 1.875, 5.0])
    np.testing.assert_allclose(turns["start"] + turns["duration"], [1.875, 3.75, 7.0])
    assert (turns["file_id"] == "f").all()


def test_turns_keep_same_speaker_gaps_and_handle_empty():
    turns = subsegments_to_turns([0.0, 2.0], [1.0, 3.0], [1, 1], "f")
    assert turns["start"].tolist() == [0.0, 2.0] and turns["speaker"].tolist() == ["spk1", "spk1"]
    assert len(subsegments_to_turns([], [], [], "f")) == 0


# ---------------------------------------------------------------- pipeline


def voice(duration, f0, formants, sr=SR, seed=0):
    """Harmonic 'voice': f0 with slow vibrato, harmonics weighted by a formant-like envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration * sr)) / sr
    f_inst = f0 * (1.0 + 0.03 * np.sin(2 * np.pi * 5.0 * t + rng.uniform(0, 6.28)))
    phase = 2 * np.pi * np.cumsum(f_inst) / sr
    wav = np.zeros_like(t)
    for h in range(1, int(4000 / f0)):
        f = h * f0
        gain = sum(np.exp(-0.5 * ((f - fc) / bw) ** 2) for fc, bw in formants) + 0.02
        wav += gain * np.sin(h * phase)
    syll = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 3.0 * t))  # syllable-rate amplitude modulation
    return 0.1 * wav * syll / np.max(np.abs(wav))


def spectral_embed(chunks):
    """Mean-removed log power in 40 linear bands up to 4 kHz, averaged over 32 ms frames."""
    out = []
    for x in chunks:
        frames = np.lib.stride_tricks.sliding_window_view(x, 512)[::256] * np.hanning(512)
        power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)[:128]
        bands = np.log(np.add.reduceat(power, np.linspace(0, 128, 41).astype(int)[:-1]) + 1e-10)
        out.append(bands - bands.mean())
    return np.array(out)


def conversation(seed=0):
    a = dict(f0=110.0, formants=[(500.0, 150.0), (1500.0, 300.0)])
    b = dict(f0=230.0, formants=[(900.0, 200.0), (2600.0, 300.0)])
    plan = [(0.3, 3.3, "A"), (3.8, 6.8, "B"), (7.3, 9.3, "A"), (9.3, 11.8, "B"), (12.3, 14.3, "A")]
    wav = np.zeros(int(15.0 * SR))
    for i, (s, e, who) in enumerate(plan):
        seg = voice(e - s, seed=seed + i, **(a if who == "A" else b))
        wav[int(s * SR) : int(s * SR) + len(seg)] += seg
    wav += 1e-4 * np.random.default_rng(seed).normal(size=wav.size)
    return wav, plan


def frame_labels(intervals, n, step=0.01):
    lab = np.full(n, "", dtype=object)
    for s, e, who in intervals:
        lab[int(round(s / step)) : int(round(e / step))] = who
    return lab


def test_diarize_recovers_two_alternating_voices():
    wav, plan = conversation()
    turns, table = diarize_detailed(wav, SR, "conv", spectral_embed)
    assert list(turns.columns) == ["file_id", "start", "duration", "speaker"]
    assert sorted(turns["speaker"].unique()) == ["spk0", "spk1"]
    ends = (turns["start"] + turns["duration"]).to_numpy()
    assert (turns["duration"] > 0).all() and np.all(turns["start"].to_numpy()[1:] >= ends[:-1] - 1e-12)
    assert len(table) > 10 and set(table.columns) == {"file_id", "start", "end", "label", "speaker"}

    n = 1500
    ref = frame_labels(plan, n)
    hyp = frame_labels(zip(turns["start"], ends, turns["speaker"]), n)
    speech = ref != ""
    best = max(
        np.mean([m.get(h) == r for r, h in zip(ref[speech], hyp[speech])])
        for perm in itertools.permutations(["spk0", "spk1"])
        for m in [dict(zip(perm, ["A", "B"]))]
    )
    assert best > 0.9
    # The first speaker heard is spk0.
    assert turns["speaker"].iloc[0] == "spk0"


def test_diarize_num_speakers_silence_and_bad_embed():
    wav, _ = conversation(seed=3)
    assert diarize(wav, SR, "c", spectral_embed, num_speakers=3)["speaker"].nunique() == 3
    calls = []
    empty = diarize(np.zeros(SR), SR, "quiet", lambda chunks: calls.append(1))
    assert len(empty) == 0 and list(empty.columns) == ["file_id", "start", "duration", "speaker"] and not calls
    with pytest.raises(VoxflowError, match="cluster_kwargs"):
        diarize(wav, SR, "c", spectral_embed, cluster_kwargs={"num_speakers": 2})
    with pytest.raises(VoxflowError, match="embed_fn returned shape"):
        diarize(wav, SR, "c", lambda chunks: np.ones((len(chunks) - 1, 4)))
