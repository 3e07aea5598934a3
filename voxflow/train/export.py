"""Export a trained embedding network to TorchScript (with its feature config inside) and ONNX."""

from __future__ import annotations

import json
import os
import warnings

import torch

from voxflow.errors import VoxflowError
from voxflow.utils.atomic import atomic_path

META_FILE = "voxflow.json"


def _example(model: torch.nn.Module, feat_dim: int) -> torch.Tensor:
    return torch.randn(2, 200, feat_dim)


def export_torchscript(model: torch.nn.Module, meta: dict, path: str | os.PathLike) -> None:
    """Script (or, failing that, trace) ``model`` and save it with ``meta`` (configs) as an extra file."""
    model = model.eval()
    try:
        scripted = torch.jit.script(model)
    except Exception:  # models with dynamic Python features fall back to tracing
        with torch.no_grad():
            scripted = torch.jit.trace(model, _example(model, int(meta["feat_dim"])), check_trace=False)
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


def export_onnx(model: torch.nn.Module, feat_dim: int, path: str | os.PathLike, opset: int = 17) -> None:
    """ONNX export with dynamic batch and frame axes (input ``feats`` (B, T, F), output ``embedding``)."""
    model = model.eval()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (_example(model, feat_dim),), str(tmp), input_names=["feats"],
                          output_names=["embedding"], opset_version=opset, dynamo=False,
                          dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}})
