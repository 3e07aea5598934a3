"""Diarization choices: Silero / oracle VAD, spectral / AHC clustering, speaker counts, the CLI flags."""

from __future__ import annotations

import glob
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voxflow.cluster.ahc import ahc_cluster
from voxflow.cluster.spectral import spectral_cluster
from voxflow.demo.speech import render_speech
from voxflow.demo.voices import random_voice
from voxflow.diarize.pipeline import diarize_detailed
from voxflow.diarize.rttm import read_rttm
from voxflow.diarize.run import diarize_files, speaker_counts
from voxflow.diarize.vad import silero_vad, speech_regions
from voxflow.errors import VoxflowError

SR = 16000
VOICES = os.environ.get("VOXFLOW_TEST_VOICES", "/usr/share/games/hedgewars/Data/Sounds/voices")


def place(pieces, total_s, seed=0):
    """Pieces [(start_s, waveform)] on a quiet background, each trimmed to samples above 5 % of its peak;
    returns the signal and each piece's (start, end)."""
    wav = 1e-3 * np.random.default_rng(seed).normal(size=int(total_s * SR))
    spans = []
    for start, x in pieces:
        loud = np.flatnonzero(np.abs(x) > 0.05 * np.abs(x).max())  # trimmed to where the sound is
        x = x[loud[0] : loud[-1] + 1]
        wav[int(start * SR) : int(start * SR) + len(x)] += x
        spans.append((start, start + len(x) / SR))
    return wav, spans


def assert_boundaries(regions, spans, tol=0.1):
    """Each span's speech starts and ends within ``tol`` of its edges; nothing is detected between spans."""
    for s, e in spans:
        inside = [r for r in regions if r[1] > s - tol and r[0] < e + tol]
        assert inside and abs(inside[0][0] - s) <= tol and abs(inside[-1][1] - e) <= tol, (regions, (s, e))
    assert all(any(r[1] > s - tol and r[0] < e + tol for s, e in spans) for r in regions), regions


def test_silero_finds_synthetic_speech_boundaries():
    rng = np.random.default_rng(0)
    voice = random_voice("a", rng)
    # render_speech pauses inside its speech; 0.6 s stretches are one breath group each
    wav, spans = place([(t, 0.1 * render_speech(voice, int(0.6 * SR), SR, rng)) for t in (1.0, 3.0, 5.5)], 7.0)
    assert_boundaries(silero_vad(wav, SR), spans)
    assert silero_vad(np.zeros(2 * SR), SR) == []


@pytest.mark.skipif(not glob.glob(f"{VOICES}/*/*.ogg"), reason="no recorded voices (hedgewars-data; VOXFLOW_TEST_VOICES)")
def test_silero_finds_real_speech_boundaries():
    files = sorted(glob.glob(f"{VOICES}/*/*.ogg"))[:3]
    from scipy.signal import resample_poly

    clips = []
    for f in files:
        x, sr = sf.read(f, dtype="float64", always_2d=True)
        clips.append(0.5 * resample_poly(x.mean(1), SR, sr) / np.abs(x).max())
    wav, spans = place([(1.0 + 3.0 * i, c) for i, c in enumerate(clips)], 3.0 * len(clips) + 1.5)
    assert_boundaries(silero_vad(wav, SR, speech_pad_ms=0), spans)  # the 30 ms pad widens by design


def test_oracle_vad_is_the_union_of_reference_turns(tmp_path):
    ref = pd.DataFrame({"file_id": "r", "start": [3.0, 0.5, 1.0, 6.0], "duration": [1.0, 1.0, 1.5, 0.0],
                        "speaker": ["b", "a", "b", "a"]})
    assert speech_regions(np.zeros(8 * SR), SR, "oracle", ref) == [(0.5, 2.5), (3.0, 4.0)]
    _, table = diarize_detailed(np.zeros(8 * SR), SR, "r", lambda c: np.eye(len(c), 4) + 1.0, vad="oracle",
                                ref_turns=ref, num_speakers=1)
    assert (table.start.min(), table.end.max()) == (0.5, 4.0)
    with pytest.raises(VoxflowError, match="oracle needs"):
        speech_regions(np.zeros(SR), SR, "oracle")
    with pytest.raises(VoxflowError, match="unknown setting"):
        speech_regions(np.zeros(SR), SR, "energy", threshold=0.5)


def clusters(sizes=(15, 10, 20), dim=16, spread=0.2, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    X = centres[labels] / np.linalg.norm(centres, axis=1)[labels, None] + spread / np.sqrt(dim) * rng.normal(
        size=(len(labels), dim))
    return X, labels


@pytest.mark.parametrize("cluster", [spectral_cluster, ahc_cluster])
def test_clustering_recovers_centres_and_honours_counts(cluster):
    X, truth = clusters()
    assert (cluster(X) == truth).all()
    assert len(set(cluster(X, num_speakers=2))) == 2 and len(set(cluster(X, num_speakers=5))) == 5
    assert len(set(cluster(X, max_speakers=2))) == 2
    assert len(set(cluster(X, min_speakers=4))) >= 4 and len(set(cluster(X, min_speakers=4, max_speakers=4))) == 4
    with pytest.raises(VoxflowError, match="min_speakers"):
        cluster(X, min_speakers=3, max_speakers=2)


def test_ahc_threshold_and_p_pruning():
    X, truth = clusters()
    assert len(set(ahc_cluster(X, threshold=1.9))) == 1 and len(set(ahc_cluster(X, threshold=0.0))) == 10
    for p, k in [(0.01, 10), (0.1, 3), (0.2, 5), (0.3, 1)]:  # pruned graphs of several densities
        assert (spectral_cluster(X, p_pruning=p, min_neighbors=k) == truth).all(), (p, k)


def test_speaker_counts(tmp_path):
    table = tmp_path / "counts.txt"
    table.write_text("a 2\nb 3\n")
    assert speaker_counts(str(table), ["a", "b"]) == {"a": 2, "b": 3}
    assert speaker_counts(None, ["a"]) == {"a": None} and speaker_counts(4, ["a"]) == {"a": 4}
    ref = pd.DataFrame({"file_id": "a", "start": [0.0, 1.0], "duration": [1.0, 1.0], "speaker": ["x", "y"]})
    assert speaker_counts("oracle", ["a"], {"a": ref}) == {"a": 2}
    with pytest.raises(VoxflowError, match="no speaker count for 1 recording.*: c"):
        speaker_counts(str(table), ["a", "c"])
    with pytest.raises(VoxflowError, match="neither an integer"):
        speaker_counts(str(tmp_path / "nope.txt"), ["a"])


class ToneEmbedder:
    """A stand-in Embedder: the embedding of a window is its spectrum's energy in a few bands, so tones of
    different pitch are different speakers."""

    sample_rate = SR

    def embed_waveforms(self, wavs, sr):
        out = []
        for w in wavs:
            spec = np.abs(np.fft.rfft(w, n=SR))[:2000]
            out.append(spec.reshape(20, 100).sum(axis=1) + 1e-3)
        return np.stack(out)


@pytest.fixture
def conversation(tmp_path):
    """Three turns of two 'speakers' (tones of 300 and 1300 Hz) with a reference RTTM."""
    t = np.arange(12 * SR) / SR
    wav = 1e-4 * np.random.default_rng(0).normal(size=t.size)
    lines = []
    for start, end, hz, spk in [(0.5, 3.5, 300, "A"), (4.0, 7.5, 1300, "B"), (8.0, 11.5, 300, "A")]:
        m = (t >= start) & (t < end)
        wav[m] += 0.3 * np.sin(2 * np.pi * hz * t[m])
        lines.append(f"SPEAKER conv 1 {start:.3f} {end - start:.3f} <NA> <NA> {spk} <NA> <NA>\n")
    sf.write(tmp_path / "conv.wav", wav, SR)
    (tmp_path / "conv.rttm").write_text("".join(lines))
    return tmp_path


@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    """Resemblyzer's pretrained speaker encoder (weights in the installed package), imported as a voxflow model."""
    from voxflow.pretrained import import_model

    out = tmp_path_factory.mktemp("resemblyzer")
    import_model("resemblyzer", None, out)
    return out / "model.ts"


def test_cli_diarize_flags(tmp_path, real_model):
    """`voxflow diarize` with oracle VAD, AHC and a fixed count on two synthetic voices, through the real CLI."""
    rng = np.random.default_rng(1)
    voices = {"A": random_voice("a", rng, sex="f"), "B": random_voice("b", rng, sex="m")}
    turns = [(0.5, 3.5, "A"), (4.0, 7.5, "B"), (8.0, 11.5, "A")]
    wav = 1e-4 * rng.normal(size=12 * SR)
    for start, end, spk in turns:
        n = int((end - start) * SR)
        wav[int(start * SR) : int(start * SR) + n] += 0.1 * render_speech(voices[spk], n, SR, rng)
    sf.write(tmp_path / "conv.wav", wav, SR)
    (tmp_path / "conv.rttm").write_text("".join(
        f"SPEAKER conv 1 {s:.3f} {e - s:.3f} <NA> <NA> {spk} <NA> <NA>\n" for s, e, spk in turns))
    out = tmp_path / "hyp.rttm"
    proc = subprocess.run(
        [sys.executable, "-m", "voxflow.cli", "diarize", str(real_model), str(tmp_path / "conv.wav"), "--rttm",
         str(out), "--vad", "oracle", "--ref-rttm", str(tmp_path / "conv.rttm"), "--clustering", "ahc",
         "--num-speakers", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hyp = read_rttm(out)
    end = hyp.start + hyp.duration
    assert hyp.speaker.nunique() == 2 and hyp.start.min() == 0.5 and end.max() == pytest.approx(11.5)
    first, middle, last = (hyp[(hyp.start < m) & (end > m)].speaker.iloc[0] for m in (2.0, 5.75, 9.75))
    assert first == last != middle


def test_oracle_without_reference_names_the_set(conversation):
    with pytest.raises(VoxflowError, match="diarization set demo: vad oracle"):
        diarize_files(ToneEmbedder(), [conversation / "conv.wav"], {"vad": {"name": "oracle"}}, None,
                      where="diarization set demo")
    with pytest.raises(VoxflowError, match="subseg_cmn=False needs an Embedder"):
        diarize_detailed(np.ones(SR), SR, "x", lambda c: np.ones((len(c), 2)), vad="oracle", subseg_cmn=False,
                         ref_turns=pd.DataFrame({"start": [0.0], "duration": [1.0]}))


def test_silero_probabilities_equal_the_packages_own():
    """voxflow calls Silero's ONNX session directly; the probabilities and regions are the package's exactly."""
    import torch
    from silero_vad import get_speech_timestamps

    from voxflow.diarize.vad import _silero_model, silero_probabilities

    rng = np.random.default_rng(1)
    voice = random_voice("a", rng)
    wav, _ = place([(t, 0.1 * render_speech(voice, int(0.8 * SR), SR, rng)) for t in (0.7, 2.9, 4.4)], 6.3)
    x = torch.from_numpy(wav.astype(np.float32))
    model = _silero_model()
    own = [model(torch.nn.functional.pad(x[i : i + 512], (0, max(0, i + 512 - len(x)))), SR).item()
           for i in range(0, len(x), 512)]
    assert np.array_equal(np.float32(own), silero_probabilities(wav, SR))
    stamps = get_speech_timestamps(x, _silero_model(), sampling_rate=SR)
    assert silero_vad(wav, SR) == [(s["start"] / SR, s["end"] / SR) for s in stamps] and stamps
