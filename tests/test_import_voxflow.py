"""`voxflow model import --from voxflow`: a model of an earlier voxflow run (training checkpoint, exported model.ts,
model directory, experiment directory) rewritten as a model directory to start from; bad sources named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_import_wespeaker import run_cli  # pytest puts tests/ on sys.path
from voxflow.errors import VoxflowError
from voxflow.pretrained import import_model
from voxflow.pretrained.common import write_model
from voxflow.train.checkpoint import load_checkpoint, save_checkpoint
from voxflow.train.export import load_torchscript
from voxflow.train.network import build_classifier, build_network

MODEL_CFG = {"name": "xvector", "channels": 16, "stats_channels": 32, "embed_dim": 16}
DATA_CFG = {"sample_rate": 16000, "features": {"kind": "fbank", "num_mel_bins": 24}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A stage checkpoint as training writes it (network, head, configs), with non-trivial batch-norm statistics."""
    torch.manual_seed(3)
    model = build_network(MODEL_CFG, DATA_CFG)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 150, 24) * 3 + 1)  # moves the running statistics off their initial values
    head = build_classifier({"name": "aamsoftmax", "scale": 16.0, "margin": 0.2}, 16, 5)
    path = tmp_path_factory.mktemp("exp") / "xv" / "finetune" / "final.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint({"model": model.state_dict(), "head": head.state_dict(), "model_cfg": json.dumps(MODEL_CFG),
                     "data_cfg": json.dumps(DATA_CFG), "head_cfg": json.dumps({"name": "aamsoftmax"})}, path)
    return path, model.eval()


def _same_weights(state: dict, model: torch.nn.Module) -> bool:
    own = model.state_dict()
    return state.keys() == own.keys() and all(torch.equal(v, own[k]) for k, v in state.items())


def test_checkpoint_import_keeps_the_network_and_drops_the_head(trained, tmp_path):
    path, model = trained
    status, stdout, stderr = run_cli("model", "import", "--from", "voxflow", path, "--out", tmp_path / "m")
    assert status == 0, stderr
    state = load_checkpoint(tmp_path / "m/model.pt")
    assert "head" not in state and _same_weights(state["model"], model)
    scripted, meta = load_torchscript(tmp_path / "m/model.ts")
    assert meta["source"] == f"voxflow:{path}" and meta["model_cfg"] == MODEL_CFG
    feats = torch.randn(2, 120, 24)
    with torch.no_grad():
        np.testing.assert_allclose(scripted(feats).numpy(), model(feats).numpy(), atol=1e-5)


def test_exported_model_and_directories(trained, tmp_path):
    """model.ts of an export (weights from TorchScript, its extra meta kept); a directory: model.pt first, then
    model.ts (an experiment directory: the weights it was scored with), then avg_model.pt, then final.pt."""
    path, model = trained
    first = tmp_path / "first"
    write_model(model, MODEL_CFG, DATA_CFG, first, source="test", extra_meta={"sea": {"window_s": 1.6, "hop_s": 0.8}})
    meta = import_model("voxflow", first / "model.ts", tmp_path / "from_ts")
    assert meta["sea"] == {"window_s": 1.6, "hop_s": 0.8} and meta["source"] == f"voxflow:{first / 'model.ts'}"
    assert _same_weights(load_checkpoint(tmp_path / "from_ts/model.pt")["model"], model)

    exp = path.parents[1]  # exp/xv: finetune/final.pt only, so far
    with pytest.raises(VoxflowError, match="holds no voxflow model .looked for model.pt, model.ts, avg_model.pt"):
        import_model("voxflow", exp, tmp_path / "none")
    save_checkpoint(load_checkpoint(path), exp / "avg_model.pt")
    assert import_model("voxflow", exp, tmp_path / "a")["source"] == f"voxflow:{exp / 'avg_model.pt'}"
    (exp / "model.ts").write_bytes((first / "model.ts").read_bytes())
    assert import_model("voxflow", exp, tmp_path / "b")["source"] == f"voxflow:{exp / 'model.ts'}"
    assert import_model("voxflow", first, tmp_path / "c")["source"] == f"voxflow:{first / 'model.pt'}"


def test_bad_sources_are_named(trained, tmp_path):
    path, _ = trained
    with pytest.raises(VoxflowError, match="voxflow: .*nothing.pt not found"):
        import_model("voxflow", tmp_path / "nothing.pt", tmp_path / "out")
    foreign = tmp_path / "avg_model.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, foreign)  # e.g. a Wespeaker checkpoint
    with pytest.raises(VoxflowError, match="is not a voxflow checkpoint .it lacks model, model_cfg and data_cfg"):
        import_model("voxflow", foreign, tmp_path / "out")
    with pytest.raises(VoxflowError, match="an ONNX file cannot be trained"):
        (tmp_path / "model.onnx").write_bytes(b"onnx")
        import_model("voxflow", tmp_path / "model.onnx", tmp_path / "out")
    with pytest.raises(VoxflowError, match="give the model's path"):
        import_model("voxflow", None, tmp_path / "out")
    state = load_checkpoint(path)
    state["model_cfg"] = json.dumps({**MODEL_CFG, "channels": 8})
    save_checkpoint(state, tmp_path / "mismatch.pt")
    with pytest.raises(VoxflowError, match="weights do not match its model config"):
        import_model("voxflow", tmp_path / "mismatch.pt", tmp_path / "out")
    status, _, stderr = run_cli("model", "import", "--from", "voxflow", tmp_path / "nothing", "--out", tmp_path / "o")
    assert status != 0 and "nothing not found" in stderr
