"""Export a trained embedding network to TorchScript (with its feature config inside) and ONNX."""

from __future__ import annotations

import json
import os

import torch

from voxflow.errors import VoxflowError
from voxflow.models.export import export_onnx as onnx_export
from voxflow.utils.atomic import atomic_path

META_FILE = "voxflow.json"


def export_torchscript(model: torch.nn.Module, meta: dict, path: str | os.PathLike) -> None:
    """Script ``model`` and save it with ``meta`` (its configs) inside, so the file is self-contained."""
    scripted = torch.jit.script(model.eval())
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={META_FILE: json.dumps(meta)})


def load_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict]:
    """Load an exported model and its meta (``feat_dim``, ``embed_dim``, ``data_cfg``, ...)."""
    extra = {META_FILE: ""}
    try:
        model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as exc:
        raise VoxflowError(f"{path}: not a loadable TorchScript model: {exc}") from exc
    if not extra[META_FILE]:
        raise VoxflowError(f"{path}: TorchScript model lacks {META_FILE}; export it with voxflow")
    return model.eval(), json.loads(extra[META_FILE])


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, dynamo: bool = False) -> None:
    """ONNX export with dynamic batch and frame axes (input ``feats`` (B, T, F)), written atomically.

    The legacy TorchScript-based exporter is the default: it handles every model, LSTMs included, in a
    fraction of the time of the torch.export one (``dynamo=True``).
    """
    with atomic_path(path) as tmp:
        onnx_export(model, tmp, dynamo=dynamo)
