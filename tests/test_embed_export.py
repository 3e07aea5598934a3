"""Export (TorchScript with configs inside, ONNX) and embedding extraction (SEA, whole, segments)."""

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import soundfile as sf
import torch

from voxflow.audio.features import extract_features
from voxflow.embed.extract import Embedder, embed_segments, embed_utterances, window_frames
from voxflow.errors import VoxflowError
from voxflow.models import build
from voxflow.train.export import export_onnx, export_torchscript, load_torchscript

DATA_CFG = {"sample_rate": 16000, "features": {"kind": "mfcc", "num_mel_bins": 30, "num_ceps": 30, "cmn": "sliding"}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = build("xvector", feat_dim=30, channels=32, stats_channels=64, embed_dim=16).eval()
    meta = {"data_cfg": DATA_CFG, "feat_dim": 30, "embed_dim": 16}
    export_torchscript(model, meta, tmp / "model.ts")
    export_onnx(model, tmp / "model.onnx")
    return model, tmp


@pytest.fixture(scope="module")
def utterances(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(1)
    rows = []
    for i, seconds in enumerate([1.2, 3.0, 4.37]):
        t = np.arange(int(seconds * 16000)) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (120 + 40 * i) * t) + 0.05 * rng.standard_normal(t.size)
        path = tmp / f"u{i}.wav"
        sf.write(path, wav.astype(np.float32), 16000, subtype="PCM_16")
        rows.append({"utt_id": f"spk{i}/s1/u{i}", "spk_id": f"spk{i}", "path": str(path), "duration_s": seconds})
    return pd.DataFrame(rows)


def test_window_frames_known_answers():
    assert window_frames(150, 200, 50) == [(0, 150)]
    assert window_frames(200, 200, 50) == [(0, 200)]
    wins = window_frames(1000, 200, 50)
    assert len(wins) == 17 and wins[-1] == (800, 1000)
    assert window_frames(1030, 200, 50)[-2:] == [(800, 1000), (830, 1030)]  # last one aligned to the end


def test_torchscript_and_onnx_match_the_network(exported):
    model, tmp = exported
    loaded, meta = load_torchscript(tmp / "model.ts")
    assert meta["data_cfg"] == DATA_CFG and meta["embed_dim"] == 16
    x = torch.randn(3, 237, 30)
    with torch.no_grad():
        ref = model(x).numpy()
        assert np.allclose(loaded(x).numpy(), ref, atol=1e-5)
    session = ort.InferenceSession(str(tmp / "model.onnx"))
    for frames in (120, 431):
        x = torch.randn(2, frames, 30)
        with torch.no_grad():
            ref = model(x).numpy()
        out = session.run(None, {"feats": x.numpy()})[0]
        assert np.allclose(out, ref, atol=1e-4)


def test_load_torchscript_errors_name_the_file(tmp_path):
    bad = tmp_path / "model.ts"
    bad.write_bytes(b"not a model")
    with pytest.raises(VoxflowError, match="model.ts"):
        load_torchscript(bad)


def test_sea_is_the_spherical_mean_of_window_embeddings(exported, utterances):
    _, tmp = exported
    loaded, meta = load_torchscript(tmp / "model.ts")
    embedder = Embedder(loaded, meta)
    ids, sea = embed_utterances(embedder, utterances, window_s=2.0, hop_s=0.5, mode="sea")
    _, full = embed_utterances(embedder, utterances, mode="full")
    assert ids == utterances.utt_id.tolist() and sea.shape == (3, 16)
    assert np.allclose(np.linalg.norm(sea, axis=1), 1.0, atol=1e-5)
    for i, row in utterances.iterrows():
        wav, _ = sf.read(row.path, dtype="float32")
        feats = extract_features(torch.from_numpy(wav), 16000, DATA_CFG["features"])
        with torch.no_grad():
            wins = [loaded(feats[s:e][None])[0].numpy() for s, e in window_frames(feats.shape[0], 200, 50)]
            whole = loaded(feats[None])[0].numpy()
        unit = np.stack([w / np.linalg.norm(w) for w in wins])
        mean = unit.mean(0)
        assert np.allclose(sea[i], mean / np.linalg.norm(mean), atol=1e-4)
        assert np.allclose(full[i], whole / np.linalg.norm(whole), atol=1e-4)
    assert np.allclose(sea[0], full[0], atol=1e-4)  # shorter than one window: SEA is the whole utterance


def test_segments_cover_each_utterance(exported, utterances):
    model, _ = exported
    embedder = Embedder(model, {"data_cfg": DATA_CFG})
    segments, matrix = embed_segments(embedder, utterances, window_s=2.0, hop_s=1.0)
    assert len(segments) == matrix.shape[0]
    per_utt = segments.groupby("utt_id").size().to_dict()
    assert per_utt == {"spk0/s1/u0": 1, "spk1/s1/u1": 2, "spk2/s1/u2": 4}
    last = segments[segments.utt_id == "spk2/s1/u2"].iloc[-1]
    assert last.end_s == pytest.approx(4.35, abs=0.02) and last.end_s - last.start_s == pytest.approx(2.0)
    assert segments.segment_id.is_unique


def test_too_short_utterances_are_named_not_a_torch_error(exported, tmp_path):
    """The x-vector's TDNN context (frame1-3: +-2, +-2, +-3 frames) needs 15 frames = 25 + 14 x 10 ms = 165 ms;
    a shorter real file gives a VoxflowError naming it, its length and the minimum: from the manifest's
    duration_s before any audio is read, else per file (here also for a file under one 25 ms frame)."""
    model, tmp = exported
    embedder = Embedder(*load_torchscript(tmp / "model.ts"))
    assert embedder.min_frames == 15 and embedder.min_duration_s() == pytest.approx(0.165)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        model(torch.zeros(1, 14, 30))  # what the check replaces
    rng = np.random.default_rng(0)
    rows = []
    for name, seconds in (("ok", 0.165), ("short", 0.1), ("tiny", 0.01), ("long", 1.0)):
        sf.write(tmp_path / f"{name}.wav", (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32),
                 16000, subtype="PCM_16")
        rows.append({"utt_id": name, "spk_id": "s", "path": str(tmp_path / f"{name}.wav"), "duration_s": seconds})
    utts = pd.DataFrame(rows)
    with pytest.raises(VoxflowError, match=r"^2 utterance\(s\) shorter than the 165 ms \(15 frames\) the model "
                                           r"needs: short \(100 ms\), tiny \(10 ms\)"):
        embed_utterances(embedder, utts, mode="full")
    unknown = utts.assign(duration_s=np.nan)
    for name, ms, frames in (("short", 100, 8), ("tiny", 10, 0)):
        with pytest.raises(VoxflowError, match=rf"{tmp_path}/{name}.wav \(utterance {name}\): {ms} ms of audio gives "
                                               rf"{frames} feature frame\(s\) after framing; the model needs at "
                                               r"least 15 \(165 ms\)"):
            embed_utterances(embedder, unknown[unknown.utt_id.isin(["ok", name])], mode="sea")
    ids, emb = embed_utterances(embedder, utts[utts.utt_id.isin(["ok", "long"])], mode="full")
    assert ids == ["ok", "long"] and np.isfinite(emb).all()  # 165 ms: exactly 15 frames, embedded
