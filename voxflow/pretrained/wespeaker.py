"""Wespeaker experiment directories and model-zoo folders as voxflow models (``voxflow model import --from wespeaker``).

SOURCE holds ``config.yaml`` (``model``, ``model_args``, ``dataset_args``) and the weights: ``avg_model.pt``, else the
highest ``model_N.pt`` (looked for in SOURCE and SOURCE/models; SOURCE may also be the weights file itself).
``projection.*`` (the training classifier) is dropped. The network is voxflow's own (registry name and options in
meta.json's ``model_cfg``); every voxflow tensor is looked up under its Wespeaker name (``_RULES``), so a missing
or misshaped tensor is reported with Wespeaker's key. Beyond renaming:

- ECAPA's Res2 convolution passes its first channel group through where Wespeaker passes its last, so the 1x1
  convolution before it has its output channels, and the one after it its input channels, rotated by one group;
- Wespeaker's affine-free batch norms (XVEC) get weight 1 and bias 0, the same function;
- Wespeaker's statistics use the unbiased variance (pooling option ``unbiased``).

Features: Wespeaker's Kaldi fbank (int16-scaled audio, Hamming window, no energy, mean normalisation) is voxflow's
``kind: fbank``; ``dataset_args.fbank_args`` and ``cmvn_args`` map onto it, and a setting voxflow cannot reproduce
is an error naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from voxflow.errors import VoxflowError
from voxflow.pretrained.common import load_foreign_state, load_mapped, write_model
from voxflow.train.network import build_network

_RESNETS = {"ResNet34": "resnet34", "ResNet221": "resnet221", "ResNet293": "resnet293"}
_ECAPAS = {"ECAPA_TDNN_c512": (512, False), "ECAPA_TDNN_c1024": (1024, False),
           "ECAPA_TDNN_GLOB_c512": (512, True), "ECAPA_TDNN_GLOB_c1024": (1024, True)}
ARCHITECTURES = (*_RESNETS, *_ECAPAS, "XVEC")

# model_args each family accepts, with Wespeaker's defaults (None: required)
_ARGS = {
    "resnet": {"feat_dim": None, "embed_dim": None, "pooling_func": "TSTP", "two_emb_layer": False},
    "ecapa": {"feat_dim": None, "embed_dim": None, "pooling_func": "ASTP", "emb_bn": False},
    "xvec": {"feat_dim": 40, "embed_dim": 512, "hid_dim": 512, "stats_dim": 1500, "pooling_func": "TSTP"},
}

_POOL = [(r"^pool\.attention_hidden\.", "pool.linear1."), (r"^pool\.attention_out\.", "pool.linear2.")]


def _block(n: int) -> str:
    return f"layer{n + 2}.se_res2block"


# voxflow key prefix -> Wespeaker key prefix, first match wins
_RULES = {
    "resnet": [(r"^stem\.0\.", "conv1."), (r"^stem\.1\.", "bn1."),
               (r"^stages\.(\d+)\.", lambda m: f"layer{int(m[1]) + 1}."),
               (r"^embedding\.", "seg_1."), (r"^embedding_norm\.", "seg_bn_1."), (r"^embedding2\.", "seg_2."), *_POOL],
    "ecapa": [(r"^stem\.conv\.", "layer1.conv."), (r"^stem\.norm\.", "layer1.bn."),
              (r"^blocks\.(\d)\.body\.1\.convs\.(\d+)\.conv\.", lambda m: f"{_block(int(m[1]))}.1.convs.{m[2]}."),
              (r"^blocks\.(\d)\.body\.1\.convs\.(\d+)\.norm\.", lambda m: f"{_block(int(m[1]))}.1.bns.{m[2]}."),
              (r"^blocks\.(\d)\.body\.([02])\.conv\.", lambda m: f"{_block(int(m[1]))}.{m[2]}.conv."),
              (r"^blocks\.(\d)\.body\.([02])\.norm\.", lambda m: f"{_block(int(m[1]))}.{m[2]}.bn."),
              (r"^blocks\.(\d)\.body\.3\.reduce\.", lambda m: f"{_block(int(m[1]))}.3.linear1."),
              (r"^blocks\.(\d)\.body\.3\.expand\.", lambda m: f"{_block(int(m[1]))}.3.linear2."),
              (r"^aggregate\.", "conv."), (r"^pool_norm\.", "bn."), (r"^embedding\.", "linear."),
              (r"^embedding_norm\.", "bn2."), *_POOL],
    "xvec": [(r"^frames\.(\d)\.affine\.", lambda m: f"frame_{int(m[1]) + 1}.conv_1d."),
             (r"^frames\.(\d)\.norm\.", lambda m: f"frame_{int(m[1]) + 1}.bn."),
             (r"^segment6\.", "seg_1."), (r"^segment6_norm\.", "seg_bn_1."), (r"^segment7\.", "seg_2.")],
}
_AFFINE_FREE = re.compile(r"^(frame_\d\.bn|seg_bn_1)\.(weight|bias)$")  # XVEC's batch norms have no affine part
_ROLL_OUT = re.compile(r"^blocks\.\d\.body\.0\.(conv\.(weight|bias)|norm\.(weight|bias|running_mean|running_var))$")
_ROLL_IN = re.compile(r"^blocks\.\d\.body\.2\.conv\.weight$")

# fbank_args / Kaldi options voxflow's fbank fixes, with the value it uses
_FIXED_FBANK = {"window_type": "hamming", "use_energy": False, "energy_floor": 0.0, "preemphasis_coefficient": 0.97,
                "remove_dc_offset": True, "round_to_power_of_two": True, "snip_edges": True, "low_freq": 20.0,
                "high_freq": 0.0, "htk_compat": False, "use_log_fbank": True, "use_power": True,
                "subtract_mean": False, "vtln_warp": 1.0}


def wespeaker_key(family: str, key: str) -> str:
    """The Wespeaker state-dict key of voxflow key ``key`` in a ``family`` (resnet, ecapa, xvec) network."""
    for pattern, replacement in _RULES[family]:
        renamed, count = re.subn(pattern, replacement, key, count=1)
        if count:
            return renamed
    return key


def import_source(source, out_dir) -> dict:
    """Import the Wespeaker model at ``source`` into ``out_dir`` (model.ts, model.onnx, model.pt, meta.json)."""
    model, model_cfg, data_cfg, extra = load_source(source)
    return write_model(model, model_cfg, data_cfg, out_dir, source=f"wespeaker:{extra['wespeaker']['weights']}",
                       extra_meta=extra)


def load_source(source) -> tuple[torch.nn.Module, dict, dict, dict]:
    """(voxflow network with the Wespeaker weights, model_cfg, data_cfg, extra meta) of the model at ``source``."""
    if source is None:
        raise VoxflowError("wespeaker import: give the Wespeaker experiment or model directory "
                           "(config.yaml + avg_model.pt)")
    config_path, weights_path = _locate(Path(source))
    cfg = _read_yaml(config_path)
    arch = cfg.get("model")
    if arch not in ARCHITECTURES:
        raise VoxflowError(f"{config_path}: model {arch!r} is not supported; known Wespeaker models: "
                           f"{', '.join(ARCHITECTURES)}")
    state = load_foreign_state(weights_path)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("projection.")}
    family, model_cfg = _model_cfg(arch, cfg, state, config_path)
    data_cfg = data_config(cfg, model_cfg.pop("feat_dim"), config_path)
    model = build_network(model_cfg, data_cfg)
    mapped, names = {}, {}
    width = model_cfg.get("channels", 0) // 8
    for key, own in model.state_dict().items():
        names[key] = name = wespeaker_key(family, key)
        if name in state:
            mapped[key] = _convert(key, state[name], own.shape, width)
        elif family == "xvec" and _AFFINE_FREE.match(name):
            mapped[key] = torch.ones_like(own) if name.endswith("weight") else torch.zeros_like(own)
    load_mapped(model, mapped, str(weights_path), names, unused=sorted(set(state) - set(names.values())))
    extra = {"wespeaker": {"model": arch, "model_args": cfg.get("model_args") or {}, "config": str(config_path),
                           "weights": str(weights_path)}}
    return model.eval(), model_cfg, data_cfg, extra


def _locate(source: Path) -> tuple[Path, Path]:
    """(config.yaml, weights) of a Wespeaker directory, or of a weights file inside one."""
    if source.is_file():
        for d in (source.parent, source.parent.parent):
            if (d / "config.yaml").is_file():
                return d / "config.yaml", source
        raise VoxflowError(f"{source}: no config.yaml beside it or in {source.parent.parent}")
    if not source.is_dir():
        raise VoxflowError(f"{source}: no such Wespeaker model directory")
    if not (source / "config.yaml").is_file():
        raise VoxflowError(f"{source}: no config.yaml in this directory (not a Wespeaker experiment or model folder)")
    dirs = [source, source / "models"]
    for d in dirs:
        if (d / "avg_model.pt").is_file():
            return source / "config.yaml", d / "avg_model.pt"
    numbered = [(int(m[1]), p) for d in dirs if d.is_dir() for p in d.glob("model_*.pt")
                if (m := re.fullmatch(r"model_(\d+)\.pt", p.name))]
    if not numbered:
        raise VoxflowError(f"{source}: no weights file avg_model.pt or model_N.pt in this directory or its models/")
    return source / "config.yaml", max(numbered)[1]


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise VoxflowError(f"{path}: not a readable YAML file: {exc}") from exc
    if not isinstance(cfg, dict):
        raise VoxflowError(f"{path}: expected a mapping with model, model_args, ...")
    return cfg


def _model_args(family: str, cfg: dict, where: Path) -> dict:
    given = cfg.get("model_args") or {}
    unknown = [k for k in given if k not in _ARGS[family]]
    if unknown:
        raise VoxflowError(f"{where}: model_args {', '.join(map(repr, unknown))} not supported for {cfg['model']}; "
                           f"known: {', '.join(_ARGS[family])}")
    args = {**_ARGS[family], **given}
    for key, value in args.items():
        if value is None:
            raise VoxflowError(f"{where}: model_args.{key} is missing")
    return args


def _pooling(name: str, global_context: bool, where: Path) -> tuple[str, dict]:
    if name == "TAP":
        return "TAP", {}
    if name == "TSTP":
        return "TSTP", {"unbiased": True}
    if name == "ASTP":
        return "ASTP", {"global_context": global_context, "unbiased": True}
    raise VoxflowError(f"{where}: model_args.pooling_func {name!r} is not supported; known: TAP, TSTP, ASTP")


def _model_cfg(arch: str, cfg: dict, state: dict, where: Path) -> tuple[str, dict]:
    """(family, voxflow model_cfg with ``feat_dim``) of a Wespeaker model and its weights."""
    family = "resnet" if arch in _RESNETS else "ecapa" if arch in _ECAPAS else "xvec"
    args = _model_args(family, cfg, where)
    channels, glob = _ECAPAS.get(arch, (0, False))
    pooling, pooling_kwargs = _pooling(args["pooling_func"], glob, where)
    out = {"feat_dim": int(args["feat_dim"]), "embed_dim": int(args["embed_dim"]), "pooling": pooling,
           "pooling_kwargs": pooling_kwargs}
    if family == "resnet":
        return family, {"name": _RESNETS[arch], **out, "two_embedding_layers": bool(args["two_emb_layer"])}
    if family == "ecapa":
        # 1536 since Wespeaker fixed it; 3 * channels in older versions: read it off the aggregation weights
        mfa = int(state["conv.weight"].shape[0]) if "conv.weight" in state else 1536
        return family, {"name": "ecapa_tdnn", **out, "channels": channels, "mfa_channels": mfa,
                        "embedding_norm": bool(args["emb_bn"])}
    return family, {"name": "xvector", **out, "channels": int(args["hid_dim"]),
                    "stats_channels": int(args["stats_dim"]), "two_embedding_layers": True}


def _convert(key: str, tensor: torch.Tensor, shape: torch.Size, width: int) -> torch.Tensor:
    """A Wespeaker tensor in voxflow's layout (left unchanged when its size does not fit, to be reported)."""
    if tuple(tensor.shape) + (1,) == tuple(shape):
        return tensor.unsqueeze(-1)  # Linear -> 1x1 Conv1d (ECAPA's squeeze-excitation)
    if tensor.shape == shape and _ROLL_OUT.match(key):
        return torch.roll(tensor, width, dims=0)
    if tensor.shape == shape and _ROLL_IN.match(key):
        return torch.roll(tensor, width, dims=1)
    return tensor


def data_config(cfg: dict, feat_dim: int, where: Path | str) -> dict:
    """voxflow data config (sample_rate, features) of a Wespeaker config; what voxflow cannot reproduce raises."""
    dataset = cfg.get("dataset_args") or {}
    frontend = dataset.get("frontend", dataset.get("feat_type", "fbank"))
    if frontend != "fbank":
        raise VoxflowError(f"{where}: dataset_args.frontend {frontend!r} is not supported; voxflow imports fbank "
                           "models")
    fbank_args = dict(dataset.get("fbank_args") or cfg.get("fbank_args") or {})
    sample_rate = int(dataset.get("resample_rate", 16000))
    features = {"kind": "fbank", "num_mel_bins": int(fbank_args.pop("num_mel_bins", feat_dim)),
                "frame_length_ms": float(fbank_args.pop("frame_length", 25.0)),
                "frame_shift_ms": float(fbank_args.pop("frame_shift", 10.0)),
                "dither": float(fbank_args.pop("dither", 0.0))}
    if "sample_frequency" in fbank_args and float(fbank_args.pop("sample_frequency")) != sample_rate:
        raise VoxflowError(f"{where}: fbank_args.sample_frequency differs from dataset_args.resample_rate "
                           f"{sample_rate}; voxflow computes features at the model's sample rate")
    for key, value in fbank_args.items():
        if key not in _FIXED_FBANK:
            raise VoxflowError(f"{where}: fbank_args.{key} is not supported (voxflow's fbank takes num_mel_bins, "
                               f"frame_length, frame_shift, dither and Kaldi's defaults)")
        if value != _FIXED_FBANK[key]:
            raise VoxflowError(f"{where}: fbank_args.{key}={value!r} cannot be reproduced; voxflow's fbank uses "
                               f"{_FIXED_FBANK[key]!r}")
    if features["num_mel_bins"] != feat_dim:
        raise VoxflowError(f"{where}: fbank_args.num_mel_bins {features['num_mel_bins']} differs from "
                           f"model_args.feat_dim {feat_dim}")
    cmvn_args = dataset.get("cmvn_args") or {}
    if cmvn_args.get("norm_var", False):
        raise VoxflowError(f"{where}: dataset_args.cmvn_args.norm_var true is not supported (voxflow's variance "
                           f"normalisation differs from Wespeaker's)")
    mean_norm = bool(dataset.get("cmvn", True)) and bool(cmvn_args.get("norm_mean", True))
    features["cmn"] = "utterance" if mean_norm else "none"
    return {"sample_rate": sample_rate, "features": features}
