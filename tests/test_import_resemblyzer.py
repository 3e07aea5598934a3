"""Resemblyzer's GE2E encoder imported as a voxflow model: parity with resemblyzer 0.1.4 (a test dependency).

Audio: real human speech when the Hedgewars voice packs are on the machine (``VOXFLOW_SPEECH_DIR`` or the
hedgewars-data install path; ``apt-get download hedgewars-data && dpkg-deb -x`` gives them), else voxflow's
synthetic voice. Clips are joined with 1 s pauses so that Resemblyzer's silence trimming has work to do.

Not reproduced, by design: ``preprocess_wav``'s webrtcvad trimming of long silences. The parity tests feed both
sides samples already preprocessed by Resemblyzer; ``test_silence_trimming_is_not_reproduced`` measures the
difference on untrimmed audio. The volume normalisation (-30 dBFS, increase only) is reproduced by the features.
"""

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import soundfile as sf
import torch

resemblyzer = pytest.importorskip("resemblyzer")
from resemblyzer import VoiceEncoder, audio as rz_audio  # noqa: E402

from voxflow.audio.features import extract_features, num_frames, validate_features_cfg  # noqa: E402
from voxflow.audio.io import read_audio  # noqa: E402
from voxflow.data.config import validate_data_cfg  # noqa: E402
from voxflow.embed.extract import Embedder, embed_utterances, partial_windows  # noqa: E402
from voxflow.errors import VoxflowError  # noqa: E402
from voxflow.pretrained import import_model  # noqa: E402
from voxflow.pretrained.resemblyzer import DATA_CFG, MODEL_CFG, packaged_weights  # noqa: E402
from voxflow.train.export import load_torchscript  # noqa: E402
from voxflow.train.network import Classifier, build_classifier, load_network, neck_dim  # noqa: E402

SR = 16000
SPEECH_DIRS = [os.environ.get("VOXFLOW_SPEECH_DIR", ""), "/usr/share/games/hedgewars/Data/Sounds/voices"]
CLIPS = ["British/Missed.ogg", "British/Nooo.ogg", "British/Coward.ogg", "British/Flyaway.ogg",
         "British/Kamikaze.ogg"]


def _speech() -> tuple[np.ndarray, str]:
    pause = np.zeros(SR, np.float32)
    for d in SPEECH_DIRS:
        if d and all((Path(d) / c).is_file() for c in CLIPS):
            parts = [read_audio(Path(d) / c, expected_sr=SR, resample=True)[0] for c in CLIPS]
            return np.concatenate([p for part in parts for p in (part, pause)]).astype(np.float32), "hedgewars"
    from voxflow.demo.speech import render_speech
    from voxflow.demo.voices import random_voice

    rng = np.random.default_rng(3)
    voice = random_voice("s", rng)
    parts = [0.1 * render_speech(voice, int(1.8 * SR), SR, rng) for _ in range(4)]
    return np.concatenate([p for part in parts for p in (part, pause)]).astype(np.float32), "synthetic"


@pytest.fixture(scope="module")
def speech():
    """(raw audio with pauses, the same after Resemblyzer's preprocess_wav, which audio it is)."""
    wav, kind = _speech()
    return wav, resemblyzer.preprocess_wav(wav), kind


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("ge2e")
    meta = import_model("resemblyzer", None, out)
    return out, meta


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(1)
    return VoiceEncoder("cpu", verbose=False)


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_mel_power_matches_wav_to_mel_spectrogram(speech):
    _, pre, _ = speech
    ref = rz_audio.wav_to_mel_spectrogram(pre)
    ours = extract_features(pre, SR, DATA_CFG["features"]).numpy()
    assert ours.shape == ref.shape == (num_frames(len(pre), SR, DATA_CFG["features"]), 40)
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-5  # measured 1.3e-6 (hedgewars speech)
    quiet = 0.01 * pre  # about -70 dBFS: the volume normalisation raises it back to -30 dBFS
    ref_quiet = rz_audio.wav_to_mel_spectrogram(rz_audio.normalize_volume(quiet, -30, increase_only=True))
    ours_quiet = extract_features(quiet, SR, DATA_CFG["features"]).numpy()
    assert np.abs(ours_quiet - ref_quiet).max() / np.abs(ref_quiet).max() < 1e-5


def test_mel_power_config_checks():
    with pytest.raises(VoxflowError, match="volume_norm_dbfs"):
        validate_features_cfg({"kind": "fbank", "volume_norm_dbfs": -30})
    with pytest.raises(VoxflowError, match="vad"):
        validate_features_cfg({"kind": "mel_power", "vad": True})
    with pytest.raises(VoxflowError, match="mel_power"):
        validate_features_cfg({"kind": "log_mel"})
    assert validate_data_cfg(DATA_CFG)["features"] == DATA_CFG["features"]


def test_forward_matches_voice_encoder(speech, imported, encoder):
    out, meta = imported
    mels = torch.from_numpy(rz_audio.wav_to_mel_spectrogram(speech[1])[None, :300])
    model, model_cfg, data_cfg = load_network(out / "model.pt")
    assert model_cfg == MODEL_CFG and data_cfg == DATA_CFG and meta["embed_dim"] == 256
    with torch.no_grad():
        ref = encoder(mels).numpy()
        got = model(mels).numpy()
        ts, _ = load_torchscript(out / "model.ts")
        got_ts = ts(mels).numpy()
    got_onnx = ort.InferenceSession(str(out / "model.onnx")).run(None, {"feats": mels.numpy()})[0]
    assert np.abs(got - ref).max() <= 1e-4  # measured 0
    assert np.abs(got_ts - ref).max() <= 1e-4 and np.abs(got_onnx - ref).max() <= 1e-4


def test_one_partial_from_wav(speech, imported, encoder):
    _, pre, _ = speech
    ts, meta = load_torchscript(imported[0] / "model.ts")
    seg = pre[: 159 * 160]  # 160 centred frames: one partial
    ours = Embedder(ts, meta).embed_waveforms([seg], SR)[0]
    with torch.no_grad():
        ref = encoder(torch.from_numpy(rz_audio.wav_to_mel_spectrogram(seg)[None])).numpy()[0]
    assert _cos(ours, ref) >= 0.9999


def test_partial_windows_are_resemblyzers():
    for n in list(range(1, 40000, 997)) + [25440, 25600, 37920, 38080, 160000]:
        _, mel_slices = VoiceEncoder.compute_partial_slices(n, rate=1.3, min_coverage=0.75)
        assert partial_windows(n, 160, 160, 77, 0.75) == [(s.start, s.stop) for s in mel_slices], n


class _Onnx(torch.nn.Module):
    """model.onnx behind the module interface Embedder expects."""

    def __init__(self, path):
        super().__init__()
        self.session = ort.InferenceSession(str(path))

    def forward(self, feats):
        return torch.from_numpy(self.session.run(None, {"feats": feats.numpy()})[0])


@pytest.mark.parametrize("seconds", [None, 2.0, 1.0])  # whole utterance; 2 partials, last padded; one padded
def test_utterance_embedding_matches_embed_utterance(speech, imported, encoder, tmp_path, seconds):
    _, pre, _ = speech
    wav = pre if seconds is None else pre[: int(seconds * SR)]
    path = tmp_path / "u.wav"
    sf.write(path, wav, SR, subtype="FLOAT")
    ref = encoder.embed_utterance(wav)
    ts, meta = load_torchscript(imported[0] / "model.ts")
    for model in (ts, _Onnx(imported[0] / "model.onnx")):
        _, emb = embed_utterances(Embedder(model, meta), pd.DataFrame({"utt_id": ["u"], "path": [str(path)]}))
        assert _cos(emb[0], ref) >= 0.999, type(model)  # measured 1.0000 (hedgewars speech)


def test_silence_trimming_is_not_reproduced(speech, imported, encoder, tmp_path):
    """voxflow embeds the pauses Resemblyzer's webrtcvad would trim: close but not equal on untrimmed audio."""
    raw, pre, kind = speech
    assert len(pre) < len(raw) - SR  # preprocess_wav removed most of the 1 s pauses
    path = tmp_path / "raw.wav"
    sf.write(path, raw, SR, subtype="FLOAT")
    model, meta = load_torchscript(imported[0] / "model.ts")
    _, emb = embed_utterances(Embedder(model, meta), pd.DataFrame({"utt_id": ["u"], "path": [str(path)]}))
    cos = _cos(emb[0], encoder.embed_utterance(pre))
    assert 0.8 < cos < 0.99, (kind, cos)  # measured 0.918 (hedgewars speech), 0.960 (synthetic)


def test_trainable_like_any_model(imported):
    model, model_cfg, data_cfg = load_network(imported[0] / "model.pt")
    assert neck_dim(model, 40) == 256 and model.feat_dim == 40
    net = Classifier(model.train(), build_classifier({"name": "aamsoftmax"}, 256, 5))
    loss = torch.nn.functional.cross_entropy(net(torch.randn(3, 50, 40).abs(), torch.tensor([0, 1, 2])),
                                             torch.tensor([0, 1, 2]))
    loss.backward()
    assert model.lstm.weight_ih_l0.grad is not None and torch.isfinite(model.lstm.weight_ih_l0.grad).all()


def test_bad_sources(tmp_path):
    with pytest.raises(VoxflowError, match="nowhere.pt"):
        import_model("resemblyzer", tmp_path / "nowhere.pt", tmp_path / "out")
    state = torch.load(packaged_weights(), map_location="cpu", weights_only=True)["model_state"]
    missing = {k: v for k, v in state.items() if k != "lstm.bias_hh_l2"}
    torch.save({"model_state": missing}, tmp_path / "missing.pt")
    with pytest.raises(VoxflowError, match=r"missing \['lstm.bias_hh_l2'\]"):
        import_model("resemblyzer", tmp_path / "missing.pt", tmp_path / "out")
    torch.save({**state, "linear.weight": state["linear.weight"][:128]}, tmp_path / "pretrained.pt")
    with pytest.raises(VoxflowError, match=r"'linear.weight' has shape \(128, 256\).*\(256, 256\)"):
        import_model("resemblyzer", tmp_path, tmp_path / "out")  # a directory holding pretrained.pt
