"""Resemblyzer's GE2E voice encoder (``pretrained.pt``) as a voxflow ``ge2e_lstm`` model.

Front-end: features kind ``mel_power`` (Resemblyzer's ``wav_to_mel_spectrogram``) with its volume normalisation
to -30 dBFS (increase only). Resemblyzer's webrtcvad trimming of long silences (``preprocess_wav``) is not
reproduced: voxflow embeds the audio it is given (trim it beforehand, or use voxflow's VAD / segments).
SEA: 1.6 s partials every 0.77 s (``embed_utterance``'s rate 1.3 per second), the last one zero-padded and kept
if it covers 75 % of a window, averaged then L2-normalised; stored in the meta's ``sea`` for ``voxflow embed``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from voxflow.audio.features import validate_features_cfg
from voxflow.errors import VoxflowError
from voxflow.models import build as build_model
from voxflow.pretrained.common import load_foreign_state, load_mapped, write_model

WEIGHTS = "pretrained.pt"
MODEL_CFG = {"name": "ge2e_lstm", "embed_dim": 256, "hidden": 256, "lstm_layers": 3}
DATA_CFG = {
    "sample_rate": 16000,
    "features": validate_features_cfg({"kind": "mel_power", "num_mel_bins": 40, "frame_length_ms": 25.0,
                                       "frame_shift_ms": 10.0, "cmn": "none", "volume_norm_dbfs": -30.0}),
}
SEA = {"window_s": 1.6, "hop_s": 0.77, "min_coverage": 0.75}
GE2E_LOSS_KEYS = ("similarity_weight", "similarity_bias")  # GE2E training-loss scalars, not the encoder


def packaged_weights() -> Path | None:
    """``pretrained.pt`` inside the installed ``resemblyzer`` package (found without importing it), or None."""
    spec = importlib.util.find_spec("resemblyzer")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / WEIGHTS).is_file():
            return Path(location) / WEIGHTS
    return None


def weights_path(source: str | os.PathLike | None) -> Path:
    """The weights file of ``source``: a ``.pt`` file, a directory holding ``pretrained.pt``, or None for the
    packaged one."""
    if source is None:
        path = packaged_weights()
        if path is None:
            raise VoxflowError("resemblyzer: no source given and no installed resemblyzer package with "
                               f"{WEIGHTS}; pip install resemblyzer, or give the path of its {WEIGHTS}")
        return path
    path = Path(source)
    path = path / WEIGHTS if path.is_dir() else path
    if not path.is_file():
        raise VoxflowError(f"resemblyzer: {path} not found")
    return path


def import_source(source: str | os.PathLike | None, out_dir: str | os.PathLike) -> dict:
    """Map Resemblyzer's ``pretrained.pt`` ({'model_state': ...} or a bare state dict) onto ``ge2e_lstm``
    and write it to ``out_dir``; returns the meta."""
    path = weights_path(source)
    state = load_foreign_state(path)
    state = state.get("model_state", state)
    if not isinstance(state, dict):
        raise VoxflowError(f"{path}: 'model_state' is not a state dict")
    mapped = {k: v for k, v in state.items() if k not in GE2E_LOSS_KEYS}
    kwargs = {k: v for k, v in MODEL_CFG.items() if k != "name"}
    model = build_model(MODEL_CFG["name"], feat_dim=DATA_CFG["features"]["num_mel_bins"], **kwargs)
    load_mapped(model, mapped, str(path))
    return write_model(model, MODEL_CFG, DATA_CFG, out_dir, source=f"resemblyzer:{path}",
                       extra_meta={"sea": SEA, "front_end": "Resemblyzer wav_to_mel_spectrogram + normalize_volume "
                                   "(-30 dBFS, increase only); no webrtcvad silence trimming"})
