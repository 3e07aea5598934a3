"""Writing an imported network as a voxflow model directory, and checked loading of foreign state dicts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import torch

from voxflow.audio.features import feature_dim
from voxflow.errors import VoxflowError
from voxflow.train.checkpoint import load_checkpoint, save_checkpoint
from voxflow.train.export import export_onnx, export_torchscript
from voxflow.utils.atomic import write_text_atomic

MODEL_TS, MODEL_ONNX, MODEL_PT, META_JSON = "model.ts", "model.onnx", "model.pt", "meta.json"


def load_foreign_state(path: str | os.PathLike) -> dict:
    """A checkpoint's state dict read with ``weights_only=True``; unreadable files are a VoxflowError naming it."""
    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise VoxflowError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def load_mapped(model: torch.nn.Module, mapped: dict, where: str, names: dict | None = None,
                unused: Iterable[str] = ()) -> None:
    """Load ``mapped`` (voxflow key -> tensor) into ``model``; a missing, unexpected or misshaped tensor is a
    VoxflowError naming the key (and both shapes). ``names`` (voxflow key -> the source's key) makes the message
    name the source's keys; ``unused`` are source keys the mapping left over (reported as unexpected)."""
    names = names or {}
    own = model.state_dict()

    def name(key: str) -> str:
        return repr(names[key]) + f" (voxflow {key!r})" if key in names else repr(key)

    missing = [name(k) for k in own if k not in mapped]
    extra = [name(k) for k in mapped if k not in own] + [repr(k) for k in unused]
    if missing or extra:
        raise VoxflowError(f"{where}: weights do not match the network: missing {_few(missing)}, "
                           f"unexpected {_few(extra)}")
    for key, tensor in mapped.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise VoxflowError(f"{where}: tensor {name(key)} has shape {tuple(tensor.shape)}, the network expects "
                               f"{tuple(own[key].shape)}")
    model.load_state_dict(mapped)


def _few(keys: list[str], shown: int = 5) -> str:
    return "[" + ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "") + "]"


def write_model(model: torch.nn.Module, model_cfg: dict, data_cfg: dict, out_dir: str | os.PathLike,
                source: str, extra_meta: dict | None = None) -> dict:
    """Write ``out_dir``/model.ts (TorchScript, meta inside, what ``voxflow embed``/``verify``/``diarize`` and
    the DAG read), model.onnx, model.pt (a checkpoint ``voxflow.train.network.load_network`` reads, to fine-tune
    from) and meta.json; returns the meta. ``model_cfg`` must rebuild ``model`` through voxflow's registry."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    meta = {"model_cfg": model_cfg, "data_cfg": data_cfg, "feat_dim": feature_dim(data_cfg.get("features", {})),
            "embed_dim": int(model.embed_dim), "source": source, **(extra_meta or {})}
    export_torchscript(model, meta, out / MODEL_TS)
    export_onnx(model, out / MODEL_ONNX)
    save_checkpoint({"model": model.state_dict(), "model_cfg": json.dumps(model_cfg),
                     "data_cfg": json.dumps(data_cfg)}, out / MODEL_PT)
    write_text_atomic(out / META_JSON, json.dumps(meta, indent=1))
    return meta
