"""A voxflow model as the start of another (``voxflow model import --from voxflow``; config ``init: {from: voxflow}``).

The source is what a user has from an earlier voxflow run: a model directory (``voxflow model import`` output:
model.pt), an exported model (``model.ts``, or an experiment directory ``exp/<exp>/`` holding it: the final,
averaged weights the experiment was scored with), or a training checkpoint (``avg_model.pt``, a stage's
``final.pt``, ``epoch_N.pt``, ``step_N.pt``). Only the embedding network is taken: a training checkpoint's
classification head belongs to its speakers and is dropped (fine-tuning starts a new one). The extra meta of the
source (an import's SEA settings and front-end notes) is kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from voxflow.errors import VoxflowError
from voxflow.pretrained.common import META_JSON, MODEL_PT, MODEL_TS, write_model
from voxflow.train.checkpoint import load_checkpoint
from voxflow.train.export import load_torchscript
from voxflow.train.network import build_network

# What a directory is searched for, in this order (the first found is the model).
DIRECTORY_FILES = (MODEL_PT, MODEL_TS, "avg_model.pt", "final.pt")
# Meta keys that describe the network itself: rewritten by write_model, never copied from the source.
_OWN_KEYS = ("model_cfg", "data_cfg", "feat_dim", "embed_dim", "source", "init")


def model_file(source: str | os.PathLike) -> Path:
    """The file of ``source``: itself, or the first of ``DIRECTORY_FILES`` in a directory."""
    path = Path(source)
    if path.is_dir():
        for name in DIRECTORY_FILES:
            if (path / name).is_file():
                return path / name
        raise VoxflowError(f"voxflow: {path} holds no voxflow model (looked for {', '.join(DIRECTORY_FILES)})")
    if not path.is_file():
        raise VoxflowError(f"voxflow: {path} not found")
    return path


def _from_checkpoint(path: Path):
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"model", "model_cfg", "data_cfg"} <= set(state):
        keys = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
        raise VoxflowError(f"voxflow: {path} is not a voxflow checkpoint (it lacks model, model_cfg and data_cfg; "
                           f"found {keys}); a model of another toolkit needs its own --from")
    model_cfg, data_cfg = json.loads(state["model_cfg"]), json.loads(state["data_cfg"])
    meta_path = path.parent / META_JSON
    extra = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return model_cfg, data_cfg, state["model"], extra


def _from_torchscript(path: Path):
    scripted, meta = load_torchscript(path)
    if "model_cfg" not in meta or "data_cfg" not in meta:
        raise VoxflowError(f"voxflow: {path}: its meta lacks model_cfg/data_cfg; export it with this voxflow")
    return meta["model_cfg"], meta["data_cfg"], scripted.state_dict(), meta


def import_source(source: str | os.PathLike | None, out_dir: str | os.PathLike) -> dict:
    """Write the voxflow model at ``source`` (see the module docstring) to ``out_dir``; returns the meta."""
    if not source:
        raise VoxflowError("voxflow: give the model's path (a model directory, model.ts or a checkpoint)")
    path = model_file(source)
    if path.suffix == ".onnx":
        raise VoxflowError(f"voxflow: {path}: an ONNX file cannot be trained or re-exported; give model.ts, model.pt "
                           "or its directory")
    is_torchscript = path.suffix == ".ts"
    model_cfg, data_cfg, weights, extra = (_from_torchscript if is_torchscript else _from_checkpoint)(path)
    model = build_network(model_cfg, data_cfg)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise VoxflowError(f"voxflow: {path}: weights do not match its model config {model_cfg}: {exc}") from exc
    extra = {k: v for k, v in extra.items() if k not in _OWN_KEYS}
    return write_model(model, model_cfg, data_cfg, out_dir, source=f"voxflow:{path}", extra_meta=extra)
