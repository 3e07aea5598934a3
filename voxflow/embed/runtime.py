"""Which engine runs an exported network for extraction: PyTorch (the TorchScript model.ts) or ONNX Runtime
(the model.onnx exported beside it).

``auto`` picks by device from measurements (benchmarks/scale.py, row 4): ONNX Runtime on the CPU, where it
embedded as many windows per second as eager PyTorch or more for every registry model (0.9-1.4x on an idle
CPU, 1.1-17x on a loaded one); PyTorch on CUDA (the onnxruntime package the project installs has only the CPU provider). The feature configuration
always comes from model.ts, which holds it.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from voxflow.errors import VoxflowError

RUNTIMES = ("auto", "torch", "onnx")
log = logging.getLogger(__name__)


def resolve_runtime(runtime: str, device: str) -> str:
    """``torch`` or ``onnx`` for a configured ``runtime`` on ``device`` (see the module docstring for auto)."""
    if runtime not in RUNTIMES:
        raise VoxflowError(f"embedding runtime {runtime!r} unknown; choose one of {RUNTIMES}")
    if runtime == "auto":
        return "torch" if str(device).startswith("cuda") else "onnx"
    if runtime == "onnx" and str(device).startswith("cuda"):
        raise VoxflowError(f"embedding runtime onnx runs on the CPU only (device {device!r}): use runtime torch "
                           "or auto on CUDA")
    return runtime


class OnnxNetwork:
    """An ONNX Runtime session called like the network: (batch, frames, feat_dim) tensor -> (batch, dim) tensor."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort
        import torch

        if not Path(path).is_file():
            raise VoxflowError(f"{path}: ONNX model not found (the export rule writes model.onnx beside model.ts)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())  # as many as torch would use
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise VoxflowError(f"{path}: not a loadable ONNX model: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        # A failing run raises (its message is in the exception); ONNX Runtime's own copy on stderr is dropped, so
        # Embedder.min_frames' probing of too-short inputs leaves no error lines in the job's log.
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = 4

    def __call__(self, feats):
        """(batch, frames, feat_dim) float tensor -> (batch, dim) float32 tensor."""
        import torch

        x = feats.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(self.session.run(None, {self.input_name: x}, self.run_options)[0])

    def to(self, device) -> "OnnxNetwork":
        return self

    def eval(self) -> "OnnxNetwork":
        return self


def read_meta(model_ts: str | os.PathLike) -> dict:
    """The meta (feature config, SEA settings) stored inside an exported model.ts, without loading the network."""
    from voxflow.train.export import META_FILE, load_torchscript

    try:
        with zipfile.ZipFile(model_ts) as archive:
            name = next(n for n in archive.namelist() if n.endswith(f"/extra/{META_FILE}"))
            return json.loads(archive.read(name))
    except (OSError, zipfile.BadZipFile, StopIteration, json.JSONDecodeError):
        return load_torchscript(model_ts)[1]  # its errors name the file and what is wrong


def load_network(model_ts: str | os.PathLike, runtime: str = "torch", device: str = "cpu",
                 onnx_path: str | os.PathLike | None = None):
    """(network, meta, engine) of an exported model: the TorchScript module, or an ``OnnxNetwork`` on
    ``onnx_path`` (default: model.onnx beside model.ts). ``auto`` on the CPU without a model.onnx falls back to
    torch (logged); an explicit ``onnx`` without one is an error."""
    from voxflow.train.export import load_torchscript

    engine = resolve_runtime(runtime, device)
    onnx_file = Path(onnx_path) if onnx_path else Path(model_ts).with_suffix(".onnx")
    if engine == "onnx" and runtime == "auto" and not onnx_file.is_file():
        log.info("%s not found: extracting with PyTorch (runtime auto)", onnx_file)
        engine = "torch"
    if engine == "torch":
        model, meta = load_torchscript(model_ts)
        return model, meta, engine
    return OnnxNetwork(onnx_file), read_meta(model_ts), engine
