"""voxflow.load_model: embed, verify and diarize with an imported (Resemblyzer) model."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import voxflow
from voxflow.errors import VoxflowError

pytest.importorskip("resemblyzer")
SR = 16000


def _speech(seed: int, sex: str, seconds: float = 3.0) -> np.ndarray:
    from voxflow.demo.speech import render_speech
    from voxflow.demo.voices import random_voice

    rng = np.random.default_rng(seed)
    return (0.1 * render_speech(random_voice(f"s{seed}", rng, sex=sex), int(seconds * SR), SR, rng)).astype(np.float32)


@pytest.fixture(scope="module")
def model_and_audio(tmp_path_factory):
    from voxflow.pretrained import import_model

    tmp = tmp_path_factory.mktemp("api")
    import_model("resemblyzer", None, tmp / "rz")
    a, b = _speech(1, "f"), _speech(2, "m")
    sf.write(tmp / "a.wav", a, SR, subtype="FLOAT")
    sf.write(tmp / "b.wav", b, SR, subtype="FLOAT")
    sf.write(tmp / "ab.wav", np.concatenate([a, b, a, b]), SR, subtype="FLOAT")
    return voxflow.load_model(tmp / "rz"), a, tmp


def test_embed_path_and_array_agree(model_and_audio):
    model, a, tmp = model_and_audio
    from_path, from_array = model.embed(tmp / "a.wav"), model.embed(a)
    assert from_path.shape == (256,) and abs(np.linalg.norm(from_path) - 1) < 1e-5
    np.testing.assert_allclose(from_path, from_array, atol=1e-6)
    assert voxflow.load_model(tmp / "rz" / "model.ts").meta["sea"] == model.meta["sea"]


def test_verify_scores_and_decides(model_and_audio):
    model, _, tmp = model_and_audio
    same = model.verify(tmp / "a.wav", tmp / "a.wav")
    other = model.verify(tmp / "a.wav", tmp / "b.wav", threshold=0.99)
    assert same.score == pytest.approx(1.0, abs=1e-5) and same.same is None
    assert other.score < same.score - 0.01 and other.same is False


def test_diarize_returns_turns(model_and_audio):
    model, _, tmp = model_and_audio
    turns = model.diarize(tmp / "ab.wav", num_speakers=2)
    assert list(turns.columns) == ["file_id", "start", "duration", "speaker"] and len(turns) >= 2


def test_bad_path_is_named(tmp_path):
    with pytest.raises(VoxflowError, match="nowhere"):
        voxflow.load_model(tmp_path / "nowhere")


def test_import_voxflow_stays_light():
    code = "import sys, voxflow; assert 'torch' not in sys.modules; print(callable(voxflow.load_model))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
