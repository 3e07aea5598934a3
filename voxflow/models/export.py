"""Deployment formats for a built model: TorchScript and ONNX with dynamic batch and frames axes."""

import os
import warnings
from typing import Optional, Union

import torch
from torch import nn

from voxflow.errors import VoxflowError

PathLike = Union[str, "os.PathLike[str]"]


def min_frames(model: nn.Module) -> int:
    """Smallest frame count the model accepts (the x-vector's unpadded TDNN needs 15)."""
    return int(getattr(model, "min_frames", 1))


def is_recurrent(model: nn.Module) -> bool:
    """Whether the model holds an RNN (torch.export unrolls those over the example's frames)."""
    return any(isinstance(module, nn.RNNBase) for module in model.modules())


def save_torchscript(model: nn.Module, path: PathLike) -> torch.jit.ScriptModule:
    """Script ``model`` in eval mode (forward and ``neck``) and save it to ``path``."""
    scripted = torch.jit.script(model.eval())
    scripted.save(os.fspath(path))
    return scripted


def export_onnx(
    model: nn.Module, path: PathLike, example_frames: int = 200, dynamo: Optional[bool] = None
) -> None:
    """Export ``model.forward`` in eval mode to ONNX at ``path``.

    Input ``feats`` (batch, frames, feat_dim) float32, output ``embeddings`` (batch, embed_dim);
    batch and frames are dynamic. ``dynamo=True``: the torch.export-based exporter (onnxscript),
    ``False``: the legacy TorchScript-based one; ``None`` picks dynamo unless the model is
    recurrent (torch.export would fix the LSTM's frame count). Raises VoxflowError if the
    exported frames axis came out static.
    """
    model = model.eval()
    if dynamo is None:
        dynamo = not is_recurrent(model)
    target = os.fspath(path)
    feats = torch.randn(2, max(example_frames, min_frames(model)), model.feat_dim)
    names = {"input_names": ["feats"], "output_names": ["embeddings"]}
    with torch.no_grad():
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=4096)
            frames = torch.export.Dim("frames", min=min_frames(model), max=1_000_000)
            torch.onnx.export(
                model, (feats,), target, dynamo=True, external_data=False, verbose=False,
                dynamic_shapes={"feats": {0: batch, 1: frames}}, **names,
            )
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                # our LSTMs start from zero states, so other batch sizes are fine (tested)
                warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
                torch.onnx.export(
                    model, (feats,), target, dynamo=False,
                    dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embeddings": {0: "batch"}}, **names,
                )
    _check_dynamic_frames(target)


def _check_dynamic_frames(path: str) -> None:
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    frames_axis = graph.input[0].type.tensor_type.shape.dim[1]
    if not frames_axis.dim_param:
        raise VoxflowError(f"ONNX export {path}: the frames axis is fixed at {frames_axis.dim_value}")
