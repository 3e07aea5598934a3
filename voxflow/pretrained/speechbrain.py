"""SpeechBrain ECAPA-TDNN models (the ``spkrec-ecapa-voxceleb`` layout) as voxflow models.

SOURCE holds ``hyperparams.yaml`` (HyperPyYAML, read without executing it), ``embedding_model.ckpt`` (the
``ECAPA_TDNN`` state dict) and optionally ``mean_var_norm_emb.ckpt``. What EncoderClassifier.encode_batch computes
(with ``normalize=True`` when that file is there) is rebuilt from voxflow's own parts:

- ``compute_features`` (``Fbank``) -> features kind ``mel_db``; ``mean_var_norm`` (``InputNormalization``, norm_type
  sentence) -> ``cmn: utterance`` (``std_norm`` -> ``cmvn_norm_vars``);
- ``embedding_model`` (``ECAPA_TDNN``) -> ``ecapa_tdnn`` with reflect padding, batch norm after the aggregation,
  ASTP with ``hidden_norm`` and SpeechBrain's 1e-12 variance floor, the final 1x1 convolution as the linear layer;
- ``mean_var_norm_emb`` (norm_type global) with ``mean_var_norm_emb.ckpt`` -> the model's ``output_norm``.

Every voxflow tensor is looked up under its SpeechBrain name (``speechbrain_key``); a setting voxflow cannot
reproduce is a VoxflowError naming the key and its value.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from voxflow.audio.features import validate_features_cfg
from voxflow.errors import VoxflowError
from voxflow.pretrained.common import load_foreign_state, load_mapped, write_model
from voxflow.pretrained.hyperpyyaml import is_tag, new_object, read_hyperparams
from voxflow.train.network import build_network

HYPERPARAMS, EMBEDDING_CKPT, EMB_NORM_CKPT = "hyperparams.yaml", "embedding_model.ckpt", "mean_var_norm_emb.ckpt"
ARCHITECTURES = ("speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN",)
FBANK = ("speechbrain.lobes.features.Fbank",)
INPUT_NORM = ("speechbrain.processing.features.InputNormalization",)
_VAR_FLOOR = 1e-12  # AttentiveStatisticsPooling's eps: its variances are clamped to it before the square root
_NORM_EPS = 1e-10  # InputNormalization's default epsilon: stds are clamped to it
_REQUIRED = object()

# keyword -> default of the SpeechBrain classes voxflow reads (ECAPA_TDNN's input_size is required)
_ECAPA_ARGS = {"input_size": _REQUIRED, "device": "cpu", "lin_neurons": 192, "activation": "torch.nn.ReLU",
               "channels": [512, 512, 512, 512, 1536], "kernel_sizes": [5, 3, 3, 3, 1], "dilations": [1, 2, 3, 4, 1],
               "attention_channels": 128, "res2net_scale": 8, "se_channels": 128, "global_context": True,
               "groups": [1, 1, 1, 1, 1], "dropout": 0.0}
_FBANK_ARGS = {"deltas": False, "context": False, "requires_grad": False, "sample_rate": 16000, "f_min": 0,
               "f_max": None, "n_fft": 400, "n_mels": 40, "filter_shape": "triangular", "param_change_factor": 1.0,
               "param_rand_factor": 0.0, "left_frames": 5, "right_frames": 5, "win_length": 25, "hop_length": 10}
_FBANK_FIXED = {"deltas": False, "context": False, "requires_grad": False, "filter_shape": "triangular"}
_NORM_ARGS = {"mean_norm": True, "std_norm": True, "norm_type": "global", "avg_factor": None, "length_dim": 1,
              "update_until_epoch": 2, "avoid_padding_norm": False, "epsilon": _NORM_EPS, "device": "cpu"}
_NORM_FIXED = {"mean_norm": True, "avg_factor": None, "length_dim": 1, "epsilon": _NORM_EPS}


def _block(n: int) -> str:
    return f"blocks.{int(n) + 1}"


# voxflow key prefix -> SpeechBrain key prefix, first match wins
_RULES = [(r"^stem\.conv\.", "blocks.0.conv.conv."), (r"^stem\.norm\.", "blocks.0.norm.norm."),
          (r"^blocks\.(\d+)\.body\.0\.(conv|norm)\.", lambda m: f"{_block(m[1])}.tdnn1.{m[2]}.{m[2]}."),
          (r"^blocks\.(\d+)\.body\.1\.convs\.(\d+)\.(conv|norm)\.",
           lambda m: f"{_block(m[1])}.res2net_block.blocks.{m[2]}.{m[3]}.{m[3]}."),
          (r"^blocks\.(\d+)\.body\.2\.(conv|norm)\.", lambda m: f"{_block(m[1])}.tdnn2.{m[2]}.{m[2]}."),
          (r"^blocks\.(\d+)\.body\.3\.reduce\.", lambda m: f"{_block(m[1])}.se_block.conv1.conv."),
          (r"^blocks\.(\d+)\.body\.3\.expand\.", lambda m: f"{_block(m[1])}.se_block.conv2.conv."),
          (r"^aggregate\.", "mfa.conv.conv."), (r"^aggregate_norm\.", "mfa.norm.norm."),
          (r"^pool\.attention_hidden\.", "asp.tdnn.conv.conv."), (r"^pool\.attention_norm\.", "asp.tdnn.norm.norm."),
          (r"^pool\.attention_out\.", "asp.conv.conv."), (r"^pool_norm\.", "asp_bn.norm."),
          (r"^embedding\.", "fc.conv.")]
_FROM_CONV1X1 = "embedding.weight"  # SpeechBrain's fc is a 1x1 Conv1d: (out, in, 1)


def speechbrain_key(key: str) -> str:
    """The SpeechBrain ECAPA_TDNN state-dict key of voxflow ``ecapa_tdnn`` key ``key``."""
    for pattern, replacement in _RULES:
        renamed, count = re.subn(pattern, replacement, key, count=1)
        if count:
            return renamed
    return key


def import_source(source: str | os.PathLike | None, out_dir: str | os.PathLike) -> dict:
    """Import the SpeechBrain model directory ``source`` into ``out_dir`` (model.ts, model.onnx, model.pt,
    meta.json); returns the meta."""
    model, model_cfg, data_cfg, extra = load_source(source)
    return write_model(model, model_cfg, data_cfg, out_dir, source=f"speechbrain:{extra['speechbrain']['dir']}",
                       extra_meta=extra)


def load_source(source) -> tuple[torch.nn.Module, dict, dict, dict]:
    """(voxflow network with the SpeechBrain weights, model_cfg, data_cfg, extra meta) of a model directory."""
    if source is None:
        raise VoxflowError("speechbrain: give the model directory (hyperparams.yaml, embedding_model.ckpt); "
                           "SpeechBrain installs no pretrained model")
    root = Path(source)
    if not root.is_dir():
        raise VoxflowError(f"speechbrain: {root} is not a directory (expected {HYPERPARAMS} and {EMBEDDING_CKPT})")
    for name in (HYPERPARAMS, EMBEDDING_CKPT):
        if not (root / name).is_file():
            raise VoxflowError(f"speechbrain: {root / name} not found")
    where = str(root / HYPERPARAMS)
    hyper = read_hyperparams(root / HYPERPARAMS)
    ecapa = _args(new_object(hyper, "embedding_model", ARCHITECTURES, where), _ECAPA_ARGS, "embedding_model", where)
    fbank = _args(new_object(hyper, "compute_features", FBANK, where), _FBANK_ARGS, "compute_features", where)
    input_norm = _args(new_object(hyper, "mean_var_norm", INPUT_NORM, where), _NORM_ARGS, "mean_var_norm", where)
    emb_norm_args = new_object(hyper, "mean_var_norm_emb", INPUT_NORM, where, required=False)
    emb_norm_path = root / EMB_NORM_CKPT if (root / EMB_NORM_CKPT).is_file() else None
    if emb_norm_path and emb_norm_args is None:
        raise VoxflowError(f"{where}: {EMB_NORM_CKPT} is present but no mean_var_norm_emb says how to apply it")

    model_cfg = _model_cfg(ecapa, output_norm=emb_norm_path is not None, where=where)
    data_cfg = _data_cfg(fbank, input_norm, int(ecapa["input_size"]), where)
    model = build_network(model_cfg, data_cfg)
    weights = root / EMBEDDING_CKPT
    _load_weights(model, load_foreign_state(weights), str(weights))
    if emb_norm_path:
        norm = _args(emb_norm_args, _NORM_ARGS, "mean_var_norm_emb", where)
        _load_embedding_norm(model, norm, emb_norm_path, where)
    extra = {"speechbrain": {"dir": str(root), "embedding_model": ecapa, "compute_features": fbank,
                             "mean_var_norm": input_norm, "embedding_norm": str(emb_norm_path or "")}}
    return model.eval(), model_cfg, data_cfg, extra


def _args(given: dict, defaults: dict, key: str, where: str) -> dict:
    unknown = [k for k in given if k not in defaults]
    if unknown:
        raise VoxflowError(f"{where}: {key}: unknown argument(s) {', '.join(map(repr, unknown))}; "
                           f"known: {', '.join(defaults)}")
    args = {**defaults, **given}
    missing = [k for k, v in args.items() if v is _REQUIRED]
    if missing:
        raise VoxflowError(f"{where}: {key}.{missing[0]} is missing")
    return args


def _unsupported(where: str, key: str, value, why: str) -> VoxflowError:
    return VoxflowError(f"{where}: {key}: {value!r} cannot be reproduced by voxflow ({why})")


def _model_cfg(a: dict, output_norm: bool, where: str) -> dict:
    """voxflow ``ecapa_tdnn`` model_cfg of ECAPA_TDNN's arguments ``a``."""
    activation = a["activation"]
    name = str(activation["tag"])[len("name:"):] if is_tag(activation, "name:") else activation
    if name not in ("torch.nn.ReLU", "torch.nn.modules.activation.ReLU"):
        raise _unsupported(where, "embedding_model.activation", name, "voxflow's ECAPA uses ReLU")
    for key in ("channels", "kernel_sizes", "dilations"):
        if not isinstance(a[key], list) or len(a[key]) < 3 or len(a[key]) != len(a["channels"]):
            raise VoxflowError(f"{where}: embedding_model.{key} {a[key]!r}: a list as long as channels (>= 3)")
    if not isinstance(a["groups"], list) or any(g != 1 for g in a["groups"]):
        raise _unsupported(where, "embedding_model.groups", a["groups"], "grouped convolutions")
    if float(a["dropout"]) != 0.0:
        raise _unsupported(where, "embedding_model.dropout", a["dropout"], "no channel dropout")
    channels = a["channels"]
    if len(set(channels[:-1])) != 1:
        raise _unsupported(where, "embedding_model.channels", channels,
                           "all but the last must be equal: voxflow's blocks have no shortcut convolution")
    if any(int(k) % 2 == 0 for k in a["kernel_sizes"]):
        raise _unsupported(where, "embedding_model.kernel_sizes", a["kernel_sizes"], "even kernels")
    if int(channels[0]) % int(a["res2net_scale"]):
        raise _unsupported(where, "embedding_model.res2net_scale", a["res2net_scale"],
                           f"{channels[0]} channels do not split into equal groups")
    return {"name": "ecapa_tdnn", "embed_dim": int(a["lin_neurons"]), "channels": int(channels[0]),
            "mfa_channels": int(channels[-1]), "scale": int(a["res2net_scale"]),
            "kernel_sizes": [int(k) for k in a["kernel_sizes"]], "dilations": [int(d) for d in a["dilations"]],
            "se_channels": int(a["se_channels"]), "padding_mode": "reflect", "aggregate_norm": True,
            "pooling": "ASTP", "pooling_kwargs": {"bottleneck": int(a["attention_channels"]),
                                                  "global_context": bool(a["global_context"]),
                                                  "hidden_norm": True, "std_floor": _VAR_FLOOR},
            "embedding_norm": False, "output_norm": output_norm}


def _data_cfg(f: dict, norm: dict, input_size: int, where: str) -> dict:
    """voxflow data config (sample_rate, features kind mel_db) of Fbank's and InputNormalization's arguments."""
    for key, value in _FBANK_FIXED.items():
        if f[key] != value:
            raise _unsupported(where, f"compute_features.{key}", f[key], f"voxflow's mel_db has {key} {value!r}")
    sr = int(f["sample_rate"])
    frames = {}
    for key, ms_key in (("win_length", "frame_length_ms"), ("hop_length", "frame_shift_ms")):
        ms = float(f[key])
        if int(sr * ms * 0.001) != int(round(sr / 1000.0 * ms)):
            raise _unsupported(where, f"compute_features.{key}", f[key],
                               f"{sr / 1000.0 * ms} samples: voxflow truncates, SpeechBrain rounds")
        frames[ms_key] = ms
    if int(f["n_mels"]) != input_size:
        raise VoxflowError(f"{where}: compute_features.n_mels {f['n_mels']} differs from embedding_model.input_size "
                           f"{input_size}")
    for key, value in _NORM_FIXED.items():
        if norm[key] != value:
            raise _unsupported(where, f"mean_var_norm.{key}", norm[key], f"voxflow uses {value!r}")
    if norm["norm_type"] != "sentence":
        raise _unsupported(where, "mean_var_norm.norm_type", norm["norm_type"],
                           "voxflow normalises each utterance by its own statistics (norm_type sentence)")
    features = {"kind": "mel_db", "num_mel_bins": input_size, **frames, "n_fft": int(f["n_fft"]),
                "f_min_hz": float(f["f_min"]), "f_max_hz": None if f["f_max"] is None else float(f["f_max"]),
                "top_db": 80.0, "cmn": "utterance", "cmvn_norm_vars": bool(norm["std_norm"])}
    try:
        return {"sample_rate": sr, "features": validate_features_cfg(features, f"{where}: compute_features")}
    except VoxflowError as exc:
        raise VoxflowError(f"{exc} (from compute_features {f})") from exc


def _load_weights(model: torch.nn.Module, state: dict, where: str) -> None:
    """Map an ECAPA_TDNN state dict onto ``model``; missing or misshaped tensors are named with both shapes."""
    mapped, names = {}, {}
    for key, own in model.state_dict().items():
        if key.startswith("output_norm."):
            mapped[key] = own  # from mean_var_norm_emb.ckpt
            continue
        names[key] = name = speechbrain_key(key)
        if name not in state:
            continue
        tensor, expected = state[name], tuple(own.shape) + ((1,) if key == _FROM_CONV1X1 else ())
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != expected:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise VoxflowError(f"{where}: tensor {name!r} has shape {got}, the hyperparameters give {expected}")
        mapped[key] = tensor.squeeze(-1) if key == _FROM_CONV1X1 else tensor
    load_mapped(model, mapped, where, names, unused=sorted(set(state) - set(names.values())))


def _load_embedding_norm(model: torch.nn.Module, norm: dict, path: Path, where: str) -> None:
    """Fill the model's output_norm from mean_var_norm_emb.ckpt ({count, glob_mean, glob_std, ...})."""
    if norm["norm_type"] != "global":
        raise _unsupported(where, "mean_var_norm_emb.norm_type", norm["norm_type"],
                           f"{EMB_NORM_CKPT} holds global statistics")
    stats = load_foreign_state(path)
    dim = int(model.embed_dim)
    loaded = {}
    for key in ("glob_mean", "glob_std") if norm["std_norm"] else ("glob_mean",):
        value = stats.get(key)
        if not isinstance(value, torch.Tensor) or value.numel() != dim:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else repr(value)[:40]
            raise VoxflowError(f"{path}: {key!r} has shape {got}, the embeddings have ({dim},)")
        loaded[key] = value.detach().reshape(dim).to(torch.float32)
    model.output_norm.mean.copy_(loaded["glob_mean"])
    if norm["std_norm"]:
        model.output_norm.std.copy_(loaded["glob_std"].clamp(min=_NORM_EPS))
