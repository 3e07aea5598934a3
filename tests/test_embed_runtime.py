"""Extraction in ONNX Runtime (embedding.runtime): the same embeddings as PyTorch through the real CLI, the
engine each runtime resolves to, and the embed rule's inputs and command under each runtime (dry runs)."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from voxflow.data.manifests import read_embeddings
from voxflow.embed.runtime import OnnxNetwork, load_network, read_meta, resolve_runtime
from voxflow.errors import VoxflowError
from voxflow.models import build
from voxflow.train.export import export_onnx, export_torchscript, load_torchscript

DATA_CFG = {"sample_rate": 16000, "features": {"kind": "mfcc", "num_mel_bins": 30, "num_ceps": 30, "cmn": "sliding"}}
# ONNX Runtime vs PyTorch, these files, embeddings of norm ~0.5: measured max |difference| 1.2e-7 .. 2.4e-7 over 3
# network seeds x 1 and 2 threads; bound 5e-6 (20x the largest).
TOLERANCE = 5e-6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = build("xvector", feat_dim=30, channels=64, stats_channels=192, embed_dim=32).eval()
    export_torchscript(model, {"data_cfg": DATA_CFG, "feat_dim": 30, "embed_dim": 32}, tmp / "model.ts")
    export_onnx(model, tmp / "model.onnx")
    rng = np.random.default_rng(3)
    for i, seconds in enumerate([1.3, 2.9, 5.2]):
        t = np.arange(int(seconds * 16000)) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (110 + 35 * i) * t) * (1 + np.sin(7 * t)) + 0.05 * rng.standard_normal(t.size)
        sf.write(tmp / f"u{i}.wav", wav.astype(np.float32), 16000, subtype="PCM_16")
    return tmp


def cli_embed(model_dir, out, *extra):
    cmd = [sys.executable, "-m", "voxflow.cli", "embed", str(model_dir / "model.ts"),
           *(str(model_dir / f"u{i}.wav") for i in range(3)), "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_onnx_embeddings_equal_torch_through_the_cli(model_dir, tmp_path):
    assert "(torch)" in cli_embed(model_dir, tmp_path / "torch.parquet", "--runtime", "torch")
    assert "(onnx)" in cli_embed(model_dir, tmp_path / "auto.parquet")  # the default on the CPU: ONNX Runtime
    ids_t, torch_emb, _ = read_embeddings(tmp_path / "torch.parquet")
    ids_o, onnx_emb, _ = read_embeddings(tmp_path / "auto.parquet")
    assert ids_t == ids_o and torch_emb.shape == (3, 32)
    assert np.abs(onnx_emb - torch_emb).max() < TOLERANCE  # two engines: equal within rounding
    assert not np.allclose(torch_emb[0], torch_emb[1], atol=1e-3)  # the utterances differ: the check has teeth


def test_runtime_resolution_per_device():
    assert resolve_runtime("auto", "cpu") == "onnx"
    assert resolve_runtime("auto", "cuda:1") == "torch"
    assert resolve_runtime("torch", "cpu") == "torch" and resolve_runtime("onnx", "cpu") == "onnx"
    with pytest.raises(VoxflowError, match="runs on the CPU only"):
        resolve_runtime("onnx", "cuda")
    with pytest.raises(VoxflowError, match="embedding runtime 'tensorrt' unknown"):
        resolve_runtime("tensorrt", "cpu")


def test_meta_and_missing_onnx_model(model_dir, tmp_path):
    assert read_meta(model_dir / "model.ts") == load_torchscript(model_dir / "model.ts")[1]
    lone = tmp_path / "model.ts"
    lone.write_bytes((model_dir / "model.ts").read_bytes())
    _, meta, engine = load_network(lone, "auto", "cpu")  # no model.onnx beside it: PyTorch
    assert engine == "torch" and meta["embed_dim"] == 32
    with pytest.raises(VoxflowError, match=r"model.onnx: ONNX model not found"):
        load_network(lone, "onnx", "cpu")
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(VoxflowError, match=r"model.onnx: not a loadable ONNX model"):
        OnnxNetwork(tmp_path / "model.onnx")


@pytest.mark.workflow
def test_embed_rule_runs_the_runtime_of_the_config(tmp_path):
    from test_workflow import snakemake, tiny_config, write_config  # pytest puts tests/ on sys.path

    target = "exp/xvector_aam_untrained/embeddings/demo_test.parquet"
    cfg = tiny_config()
    write_config(tmp_path, cfg)
    out = snakemake(tmp_path, "-n", "-p", target).stdout
    command = next(line for line in out.splitlines() if "embed.py utterances" in line)
    assert "--onnx exp/xvector_aam_untrained/model.onnx" in command and '"runtime": "auto"' in command
    export = next(line for line in out.splitlines() if "export.py --untrained-config" in line)
    assert "--onnx exp/xvector_aam_untrained/model.onnx" in export
    cfg["embedding"] = {**cfg.get("embedding", {}), "runtime": "torch"}
    write_config(tmp_path, cfg)
    out = snakemake(tmp_path, "-n", "-p", target).stdout
    command = next(line for line in out.splitlines() if "embed.py utterances" in line)
    assert "--onnx" not in command and '"runtime": "torch"' in command
