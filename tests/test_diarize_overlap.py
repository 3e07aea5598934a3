"""Overlap assignment: a window between two speakers' clusters also gives the second speaker its stretch of time."""

import numpy as np
import pandas as pd
import pytest

from voxflow.diarize.overlap import merge_pieces, second_speakers
from voxflow.diarize.pipeline import diarize, subsegments_to_turns
from voxflow.diarize.run import overlap_margin
from voxflow.errors import VoxflowError
from voxflow.metrics.der import diarization_error

SR = 16000


def band_energies(wavs):
    """Embedding of a window: its spectrum's energy in 20 bands of 100 Hz (tones of other pitch: other
    'speakers'; a window with both tones lies between their clusters)."""
    return np.stack([np.abs(np.fft.rfft(w, n=SR))[:2000].reshape(20, 100).sum(axis=1) + 1e-3 for w in wavs])


def two_talkers(tmp_path=None):
    """A (300 Hz) alone 0.5-8 s, A and B (1300 Hz) together 8-12 s, B alone 12-19.5 s; reference turns."""
    t = np.arange(20 * SR) / SR
    wav = 1e-4 * np.random.default_rng(0).normal(size=t.size)
    wav += 0.3 * np.sin(2 * np.pi * 300 * t) * ((t >= 0.5) & (t < 12.0))
    wav += 0.3 * np.sin(2 * np.pi * 1300 * t) * ((t >= 8.0) & (t < 19.5))
    ref = pd.DataFrame({"file_id": "talk", "start": [0.5, 8.0], "duration": [11.5, 11.5], "speaker": ["A", "B"]})
    return wav, ref


def speakers_at(turns, t):
    return set(turns.speaker[(turns.start <= t) & (turns.start + turns.duration > t)])


def overlapping_pairs(turns):
    rows = list(zip(turns.start, turns.start + turns.duration, turns.speaker))
    return [(a, b) for a, b in zip(rows, rows[1:]) if b[0] < a[1] - 1e-9]


def test_overlapped_region_gets_both_speakers_and_off_gives_none():
    wav, ref = two_talkers()
    on = diarize(wav, SR, "talk", band_energies, num_speakers=2, overlap_margin=0.1)
    off = diarize(wav, SR, "talk", band_energies, num_speakers=2)
    for t in np.arange(8.8, 11.3, 0.25):  # windows wholly inside the overlap
        assert len(speakers_at(on, t)) == 2, (t, on)
    for t in list(np.arange(0.6, 7.2, 0.5)) + list(np.arange(12.8, 19.4, 0.5)):  # windows with one tone
        assert len(speakers_at(on, t)) == 1, (t, on)
    assert speakers_at(on, 3.0) != speakers_at(on, 16.0)
    assert not overlapping_pairs(off.sort_values("start")) and overlapping_pairs(on.sort_values("start"))
    # the second speaker takes the overlap's miss away: DER (collar 0) falls by most of the 4 s of overlap
    der_on = diarization_error(ref, on, collar=0.0)
    der_off = diarization_error(ref, off, collar=0.0)
    assert der_off["miss_s"] > 3.0 and der_on["miss_s"] < 1.0, (der_off, der_on)
    assert der_on["der"] < der_off["der"] - 0.1


def test_second_speaker_rule():
    X = np.array([[1.0, 0.0], [0.99, 0.1], [0.75, 0.65], [0.1, 1.0], [0.0, 1.0]])
    labels = np.array([0, 0, 0, 1, 1])
    assert second_speakers(X, labels, 0.1).tolist() == [-1, -1, 1, -1, -1]
    assert second_speakers(X, labels, 0.0).tolist() == [-1, -1, -1, -1, -1]
    assert (second_speakers(X, labels, 1.9)[[0, 1, 2]] == 1).all()  # any margin above the gap: everyone
    assert second_speakers(X, np.zeros(5, dtype=int), 0.5).tolist() == [-1] * 5  # one cluster: no second
    with pytest.raises(VoxflowError, match="overlap_margin"):
        second_speakers(X, labels, -0.1)


def test_turns_with_second_speakers_unite_per_speaker():
    turns = subsegments_to_turns([0.0, 1.0, 2.0], [1.5, 2.5, 3.5], [0, 0, 1], "f", second=[-1, 1, -1])
    spans = {(round(s, 3), round(s + d, 3), k) for s, d, k in zip(turns.start, turns.duration, turns.speaker)}
    assert spans == {(0.0, 2.25, "spk0"), (1.25, 3.5, "spk1")}
    assert merge_pieces([(0, 1, 0), (1.0005, 2, 0), (0.5, 0.5, 1)], 1e-3) == [(0, 2, 0)]


def test_overlap_config():
    assert overlap_margin({}) is None and overlap_margin({"overlap": False, "overlap_margin": 0.3}) is None
    assert overlap_margin({"overlap": True, "overlap_margin": 0.05}) == 0.05
    assert overlap_margin({"overlap": True}) > 0
    with pytest.raises(VoxflowError, match="overlap_margin"):
        overlap_margin({"overlap": True, "overlap_margin": -1})


def test_cli_flags_reach_every_setting():
    from voxflow.cli import build_parser, diarize_config

    args = build_parser().parse_args(
        "diarize m.ts a.wav --rttm h.rttm --vad silero --vad-setting threshold=0.3 --clustering umap_hdbscan "
        "--umap-neighbors 8 --umap-components 4 --umap-min-dist 0.1 --merge-threshold 0.2 --min-cluster-size 3 "
        "--cluster-setting seed=7 --num-speakers 2 --max-speakers 5 --block-s 120 --overlap --overlap-margin 0.05 "
        "--window-s 2 --shift-s 1 --no-subseg-cmn".split())
    cfg = diarize_config(args)
    assert cfg["vad"] == {"name": "silero", "threshold": 0.3}
    assert cfg["clustering"] == {"name": "umap_hdbscan", "n_neighbors": 8, "n_components": 4, "min_dist": 0.1,
                                 "merge_threshold": 0.2, "min_cluster_size": 3, "seed": 7}
    assert (cfg["num_speakers"], cfg["max_speakers"], cfg["block_s"], cfg["window_s"], cfg["shift_s"]) == (
        "2", 5, 120.0, 2.0, 1.0)
    assert cfg["overlap"] is True and cfg["overlap_margin"] == 0.05 and cfg["subseg_cmn"] is False
    args = build_parser().parse_args("diarize m.ts a.wav --rttm h.rttm --p-pruning auto --min-neighbors 5".split())
    cfg = diarize_config(args)
    assert cfg["clustering"] == {"name": "spectral", "p_pruning": "auto", "min_neighbors": 5} and not cfg["overlap"]
    with pytest.raises(VoxflowError, match="KEY=VALUE"):
        diarize_config(build_parser().parse_args("diarize m a --rttm h --vad-setting x".split()))


def test_set_config_changes_one_set():
    from voxflow.diarize.run import set_config

    base = {"vad": {"name": "energy", "threshold_db": -30.0}, "clustering": {"name": "spectral"}, "collar": 0.25}
    oracle = set_config(base, {"vad": {"name": "oracle"}, "collar": 0.0}, "dev_oracle")
    assert oracle["vad"] == {"name": "oracle", "threshold_db": -30.0} and oracle["collar"] == 0.0
    assert set_config(base, {"vad": "silero"}, "s")["vad"]["name"] == "silero" and base["vad"]["name"] == "energy"
    assert set_config(base, None, "s") == base
    with pytest.raises(VoxflowError, match="diarization_sets.s.diarization: unknown key"):
        set_config(base, {"vda": "silero"}, "s")
