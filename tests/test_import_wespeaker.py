"""`voxflow model import --from wespeaker`: parity with Wespeaker's own outputs (tests/data/wespeaker, made with
Wespeaker's code), the CLI and ONNX paths, the other architectures, and named errors."""

import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml

from voxflow import cli
from voxflow.audio.io import read_audio
from voxflow.data.manifests import read_embeddings
from voxflow.embed.extract import Embedder
from voxflow.errors import VoxflowError
from voxflow.pretrained.wespeaker import load_source
from voxflow.train.export import load_torchscript
from voxflow.train.network import load_network

DATA = Path(__file__).parent / "data" / "wespeaker"
REPO = Path(__file__).resolve().parents[1]
FIXTURES = ["resnet34", "ecapa_tdnn_glob_c512"]


def spec_state(spec: dict) -> dict:
    """The checkpoint a weights_spec.json describes (see tests/data/wespeaker/README.md)."""
    rng = np.random.default_rng(spec["seed"])
    state = {}
    for t in spec["tensors"]:
        if t["dtype"] != "float32":
            state[t["key"]] = torch.full(t["shape"], t["value"], dtype=getattr(torch, t["dtype"]))
            continue
        x = rng.standard_normal(t["shape"]) * t["std"] + t["mean"]
        state[t["key"]] = torch.from_numpy(np.asarray(np.exp(x) if t["transform"] == "exp" else x, np.float32))
    return state


def write_experiment(directory: Path, config: dict, state: dict, weights: str = "avg_model.pt") -> Path:
    (directory / weights).parent.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(state, directory / weights)
    return directory


def fixture_config(name: str) -> dict:
    return yaml.safe_load((DATA / name / "config.yaml").read_text())


@pytest.fixture(scope="module")
def states():
    return {name: spec_state(json.loads((DATA / name / "weights_spec.json").read_text())) for name in FIXTURES}


def run_cli(*args) -> tuple[int, str, str]:
    """`voxflow *args` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "argv", ["voxflow", *map(str, args)]), redirect_stdout(out), redirect_stderr(err):
        try:
            cli.main()
        except SystemExit as exc:
            return int(exc.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def imported_all(states, tmp_path_factory):
    """Fixture name -> (output directory, meta): each fixture model imported once by `voxflow model import`
    (ONNX export included), the ECAPA one from a Wespeaker experiment layout (models/model_N.pt)."""
    out = {}
    for name, weights in zip(FIXTURES, ["avg_model.pt", "models/model_12.pt"]):
        exp = write_experiment(tmp_path_factory.mktemp(name) / "exp", fixture_config(name), states[name], weights)
        status, stdout, stderr = run_cli("model", "import", "--from", "wespeaker", exp, "--out", exp.parent / "out")
        assert status == 0 and "embeddings" in stdout, stderr
        out[name] = exp.parent / "out", json.loads((exp.parent / "out" / "meta.json").read_text())
    return out


@pytest.fixture(params=FIXTURES)
def imported(request, imported_all):
    return (request.param, *imported_all[request.param])


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embeddings_from_features_match_wespeaker(imported):
    name, out, meta = imported
    feats = torch.from_numpy(np.load(DATA / "feats.npy"))
    expected = np.load(DATA / name / "expected_from_feats.npy")
    model, _ = load_torchscript(out / "model.ts")
    rebuilt, model_cfg, _ = load_network(out / "model.pt")  # the registry rebuilds it (fine-tuning, the DAG)
    with torch.no_grad():
        assert np.abs(model(feats).numpy() - expected).max() <= 1e-4
        assert np.abs(rebuilt(feats[:1]).numpy() - expected[:1]).max() <= 1e-4
    assert model_cfg == meta["model_cfg"] and meta["wespeaker"]["weights"].endswith(
        "avg_model.pt" if name == "resnet34" else "models/model_12.pt")


def test_embedding_from_wav_through_voxflow_features(imported):
    name, out, _ = imported
    embedder = Embedder(*load_torchscript(out / "model.ts"))
    wav, sr = read_audio(DATA / "input.wav")
    feats = embedder.features(wav, sr)
    assert np.abs(feats.numpy() - np.load(DATA / "feats.npy")[0]).max() < 1e-3
    got = embedder.embed_feature_batch([feats])[0]
    expected = np.load(DATA / name / "expected_from_wav.npy").reshape(-1)
    assert cosine(got, expected) >= 0.9999 and np.abs(got - expected).max() <= 1e-4


def test_onnx_matches_wespeaker(imported):
    import onnxruntime as ort

    name, out, _ = imported
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feats = np.load(DATA / "feats.npy")
    (got,) = session.run(None, {"feats": feats})
    assert np.abs(got - np.load(DATA / name / "expected_from_feats.npy")).max() <= 1e-4


def test_voxflow_embed_command_gives_wespeakers_embedding(imported_all, tmp_path):
    name = "ecapa_tdnn_glob_c512"
    model_ts = imported_all[name][0] / "model.ts"
    done = subprocess.run([sys.executable, "-m", "voxflow.cli", "embed", str(model_ts), str(DATA / "input.wav"),
                           "--mode", "full", "--out", str(tmp_path / "e.parquet")], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    _, matrix, _ = read_embeddings(tmp_path / "e.parquet")
    assert cosine(matrix[0], np.load(DATA / name / "expected_from_wav.npy").reshape(-1)) >= 0.9999


# Wespeaker state dicts of the architectures without a fixture, from the architecture descriptions
# (Wespeaker's resnet.py, ecapa_tdnn.py, tdnn.py, pooling_layers.py): key -> shape.

def _bn(prefix: str, n: int, affine: bool = True) -> dict:
    out = {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,)} if affine else {}
    return {**out, f"{prefix}.running_mean": (n,), f"{prefix}.running_var": (n,), f"{prefix}.num_batches_tracked": ()}


def _lin(prefix: str, out_dim: int, *in_shape: int) -> dict:
    return {f"{prefix}.weight": (out_dim, *in_shape), f"{prefix}.bias": (out_dim,)}


def ws_resnet(blocks, bottleneck: bool, feat=80, embed=256, two_emb=False) -> dict:
    exp = 4 if bottleneck else 1
    keys = {"conv1.weight": (32, 1, 3, 3), **_bn("bn1", 32)}
    in_planes = 32
    for i, count in enumerate(blocks):
        planes = 32 * 2**i
        for j in range(count):
            p = f"layer{i + 1}.{j}"
            convs = ([(planes, in_planes, 1, 1), (planes, planes, 3, 3), (planes * 4, planes, 1, 1)] if bottleneck
                     else [(planes, in_planes, 3, 3), (planes, planes, 3, 3)])
            for k, shape in enumerate(convs, 1):
                keys.update({f"{p}.conv{k}.weight": shape, **_bn(f"{p}.bn{k}", shape[0])})
            if (i > 0 and j == 0) or in_planes != planes * exp:
                keys.update({f"{p}.shortcut.0.weight": (planes * exp, in_planes, 1, 1), **_bn(f"{p}.shortcut.1",
                                                                                             planes * exp)})
            in_planes = planes * exp
    keys.update(_lin("seg_1", embed, 2 * (feat // 8) * 256 * exp))
    if two_emb:
        keys.update({**_bn("seg_bn_1", embed, affine=False), **_lin("seg_2", embed, embed)})
    return keys


def ws_ecapa(channels: int, glob: bool, feat=80, embed=192, mfa=1536, emb_bn=False) -> dict:
    width = channels // 8
    keys = {**_lin("layer1.conv", channels, feat, 5), **_bn("layer1.bn", channels)}
    for layer in (2, 3, 4):
        p = f"layer{layer}.se_res2block"
        for k in (0, 2):
            keys.update({**_lin(f"{p}.{k}.conv", channels, channels, 1), **_bn(f"{p}.{k}.bn", channels)})
        for j in range(7):
            keys.update({**_lin(f"{p}.1.convs.{j}", width, width, 3), **_bn(f"{p}.1.bns.{j}", width)})
        keys.update({**_lin(f"{p}.3.linear1", 128, channels), **_lin(f"{p}.3.linear2", channels, 128)})
    keys.update({**_lin("conv", mfa, 3 * channels, 1), **_lin("pool.linear1", 128, mfa * (3 if glob else 1), 1),
                 **_lin("pool.linear2", mfa, 128, 1), **_bn("bn", 2 * mfa), **_lin("linear", embed, 2 * mfa)})
    return {**keys, **(_bn("bn2", embed) if emb_bn else {})}


def ws_xvec(feat=80, embed=512) -> dict:
    keys = {}
    for i, (out_dim, in_dim, k) in enumerate([(512, feat, 5), (512, 512, 3), (512, 512, 3), (512, 512, 1),
                                              (1500, 512, 1)], 1):
        keys.update({**_lin(f"frame_{i}.conv_1d", out_dim, in_dim, k), **_bn(f"frame_{i}.bn", out_dim, affine=False)})
    return {**keys, **_lin("seg_1", embed, 3000), **_bn("seg_bn_1", embed, affine=False), **_lin("seg_2", embed, embed)}


def random_state(shapes: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.02
    return {**state, "projection.weight": torch.zeros(10, 4)}


OTHERS = [
    ("ResNet221", {"embed_dim": 256, "pooling_func": "TSTP"}, ws_resnet([6, 16, 48, 3], True)),
    ("ResNet293", {"embed_dim": 256}, ws_resnet([10, 20, 64, 3], True)),
    ("ResNet34", {"embed_dim": 256, "two_emb_layer": True, "pooling_func": "ASTP"},
     {**ws_resnet([3, 4, 6, 3], False, two_emb=True), **_lin("pool.linear1", 128, 2560, 1),
      **_lin("pool.linear2", 2560, 128, 1)}),
    ("ECAPA_TDNN_c512", {"embed_dim": 192}, ws_ecapa(512, glob=False)),
    ("ECAPA_TDNN_c1024", {"embed_dim": 192, "emb_bn": True}, ws_ecapa(1024, glob=False, emb_bn=True)),
    ("ECAPA_TDNN_GLOB_c1024", {"embed_dim": 192}, ws_ecapa(1024, glob=True, mfa=3072)),  # Wespeaker before 1536
    ("XVEC", {"embed_dim": 512}, ws_xvec()),
]


@pytest.mark.parametrize("arch,args,shapes", OTHERS, ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(OTHERS)])
def test_other_architectures_import_and_run(arch, args, shapes, tmp_path, one_thread):
    state = random_state(shapes)
    config = {"model": arch, "model_args": {"feat_dim": 80, **args},
              "dataset_args": {"resample_rate": 16000, "fbank_args": {"num_mel_bins": 80, "frame_shift": 10,
                                                                       "frame_length": 25, "dither": 1.0}}}
    model, model_cfg, data_cfg, _ = load_source(write_experiment(tmp_path / "exp", config, state))
    assert data_cfg == {"sample_rate": 16000, "features": {"kind": "fbank", "num_mel_bins": 80, "frame_length_ms": 25.0,
                                                           "frame_shift_ms": 10.0, "dither": 1.0, "cmn": "utterance"}}
    with torch.no_grad():
        emb = model(torch.randn(1, 20, 80))
    assert emb.shape == (1, args["embed_dim"]) and torch.isfinite(emb).all()
    own = model.state_dict()
    n_params = sum(v.numel() for k, v in state.items() if not k.startswith("projection."))
    n_own = sum(v.numel() for k, v in own.items())
    affine_free = sum(own[k].numel() for k in own if arch == "XVEC" and ("norm.weight" in k or "norm.bias" in k))
    assert n_own - affine_free == n_params  # every Wespeaker tensor used, nothing else added


# Named errors. ---------------------------------------------------------------------------------------------


@pytest.fixture
def ecapa_dir(states, tmp_path):
    name = "ecapa_tdnn_glob_c512"
    return write_experiment(tmp_path / "exp", fixture_config(name), states[name])


def _edit(directory: Path, config=None, state=None) -> Path:
    if config is not None:
        (directory / "config.yaml").write_text(yaml.safe_dump(config))
    if state is not None:
        torch.save(state, directory / "avg_model.pt")
    return directory


def test_unknown_architecture_lists_known(ecapa_dir):
    config = {**fixture_config("ecapa_tdnn_glob_c512"), "model": "CAMPPlus"}
    with pytest.raises(VoxflowError, match=r"'CAMPPlus' is not supported.*ResNet34, ResNet221, .*ECAPA_TDNN_GLOB_c1024"
                                           r", XVEC"):
        load_source(_edit(ecapa_dir, config=config))


def test_missing_config_and_weights_name_the_directory(ecapa_dir):
    (ecapa_dir / "avg_model.pt").unlink()
    with pytest.raises(VoxflowError, match=re.escape(f"{ecapa_dir}: no weights file avg_model.pt or model_N.pt")):
        load_source(ecapa_dir)
    (ecapa_dir / "config.yaml").unlink()
    with pytest.raises(VoxflowError, match=re.escape(f"{ecapa_dir}: no config.yaml")):
        load_source(ecapa_dir)


def test_removed_tensor_is_named(ecapa_dir, states):
    state = {k: v for k, v in states["ecapa_tdnn_glob_c512"].items() if k != "layer3.se_res2block.1.convs.4.weight"}
    with pytest.raises(VoxflowError, match=r"missing \['layer3.se_res2block.1.convs.4.weight' \(voxflow "
                                           r"'blocks.1.body.1.convs.4.conv.weight'\)\]"):
        load_source(_edit(ecapa_dir, state=state))


def test_unexpected_tensor_is_named(ecapa_dir, states):
    state = {**states["ecapa_tdnn_glob_c512"], "bn2.weight": torch.ones(192)}
    with pytest.raises(VoxflowError, match=r"unexpected \['bn2.weight'\]"):
        load_source(_edit(ecapa_dir, state=state))


@pytest.mark.parametrize("key,shape,expected", [
    ("pool.linear1.weight", (128, 1536, 1), (128, 4608, 1)),
    ("layer2.se_res2block.3.linear1.weight", (64, 512), (128, 512, 1)),
])
def test_misshaped_tensor_names_key_and_both_shapes(ecapa_dir, states, key, shape, expected):
    state = {**states["ecapa_tdnn_glob_c512"], key: torch.zeros(shape)}
    with pytest.raises(VoxflowError, match=re.escape(f"has shape {shape}, the network expects {expected}")) as err:
        load_source(_edit(ecapa_dir, state=state))
    assert f"tensor '{key}' (voxflow " in str(err.value)


def test_model_n_without_avg_model_takes_the_highest(ecapa_dir):
    (ecapa_dir / "avg_model.pt").rename(ecapa_dir / "model_40.pt")
    (ecapa_dir / "model_9.pt").write_bytes(b"not the newest; never read")
    assert load_source(ecapa_dir)[3]["wespeaker"]["weights"] == str(ecapa_dir / "model_40.pt")
    assert load_source(ecapa_dir / "model_40.pt")[1]["name"] == "ecapa_tdnn"  # the weights file itself
    (ecapa_dir / "model_100.pt").write_bytes(b"truncated")
    with pytest.raises(VoxflowError, match=re.escape(f"{ecapa_dir / 'model_100.pt'}: corrupt or truncated")):
        load_source(ecapa_dir)


@pytest.mark.parametrize("dataset_args,message", [
    ({"fbank_args": {"num_mel_bins": 80, "window_type": "povey"}}, r"fbank_args.window_type='povey' cannot be"),
    ({"fbank_args": {"use_energy": True}}, r"fbank_args.use_energy=True cannot be"),
    ({"fbank_args": {"low_freq": 20, "warp": 2}}, r"fbank_args.warp is not supported"),
    ({"resample_rate": 16000, "fbank_args": {"sample_frequency": 8000}}, r"fbank_args.sample_frequency differs"),
    ({"cmvn_args": {"norm_var": True}}, r"dataset_args.cmvn_args.norm_var"),
    ({"frontend": "s3prl"}, r"dataset_args.frontend 's3prl'"),
    ({"fbank_args": {"num_mel_bins": 64}}, r"num_mel_bins 64 differs from model_args.feat_dim 80"),
])
def test_unsupported_feature_settings_are_named(ecapa_dir, dataset_args, message):
    config = {**fixture_config("ecapa_tdnn_glob_c512"), "dataset_args": dataset_args}
    with pytest.raises(VoxflowError, match=message):
        load_source(_edit(ecapa_dir, config=config))


def test_unsupported_model_args_are_named(ecapa_dir):
    config = fixture_config("ecapa_tdnn_glob_c512")
    with pytest.raises(VoxflowError, match=r"pooling_func 'MQMHASTP' is not supported; known: TAP, TSTP, ASTP"):
        load_source(_edit(ecapa_dir, config={**config, "model_args": {**config["model_args"],
                                                                       "pooling_func": "MQMHASTP"}}))
    with pytest.raises(VoxflowError, match=r"model_args 'channels' not supported"):
        load_source(_edit(ecapa_dir, config={**config, "model_args": {**config["model_args"], "channels": 8}}))


def test_cli_reports_errors_in_one_line(tmp_path):
    status, _, stderr = run_cli("model", "import", "--from", "wespeaker", tmp_path, "--out", tmp_path / "out")
    assert status == 1 and stderr == (f"error: {tmp_path}: no config.yaml in this directory "
                                      "(not a Wespeaker experiment or model folder)\n")
    status, _, stderr = run_cli("model", "import", "--from", "kaldi", tmp_path, "--out", tmp_path / "out")
    assert status == 2 and "invalid choice: 'kaldi'" in stderr
