"""SpeechBrain's ``spkrec-ecapa-voxceleb`` layout: read and checked, then refused with the reasons.

A SpeechBrain ECAPA model directory holds ``hyperparams.yaml`` (HyperPyYAML), ``embedding_model.ckpt`` (the
``ECAPA_TDNN`` state dict) and optionally ``mean_var_norm_emb.ckpt``. voxflow cannot yet compute the same
embeddings, so the import stops with a VoxflowError naming what is missing rather than writing a model that
would silently differ (see ``GAPS``).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from voxflow.errors import VoxflowError
from voxflow.pretrained.common import load_foreign_state

HYPERPARAMS, EMBEDDING_CKPT, EMB_NORM_CKPT = "hyperparams.yaml", "embedding_model.ckpt", "mean_var_norm_emb.ckpt"
ECAPA_KEYS = ("blocks.0.conv.conv.weight", "mfa.conv.conv.weight", "asp.tdnn.conv.conv.weight", "fc.conv.weight")
GAPS = (
    "front-end: SpeechBrain's Fbank (centred zero-padded STFT, Hamming window, triangular filters on the HTK mel "
    "scale built in Hz, 10*log10 with an 80 dB top_db floor, then per-utterance mean subtraction) is neither "
    "voxflow's Kaldi fbank nor mel_power",
    "ECAPA: SpeechBrain pads its k>1 convolutions by reflection, voxflow's ecapa_tdnn with zeros",
    "ECAPA: SpeechBrain's multi-layer aggregation is conv + ReLU + batch norm (voxflow: conv + ReLU)",
    "ECAPA: SpeechBrain's attention is conv + ReLU + batch norm + tanh + conv (voxflow's ASTP: conv + tanh + conv)",
)


class _HyperLoader(yaml.SafeLoader):
    """Reads HyperPyYAML without executing it: ``!new:cls`` / ``!name:`` / ``!ref`` / ``!apply:`` become dicts."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return {"tag": suffix, "args": value}


_HyperLoader.add_multi_constructor("!", _tagged)


def read_layout(source: str | os.PathLike) -> dict:
    """{"hyperparams", "embedding_model" (state dict), "emb_norm" (state dict or None)} of a model directory;
    a missing file or a state dict that is not SpeechBrain's ECAPA_TDNN is a VoxflowError naming it."""
    root = Path(source)
    if not root.is_dir():
        raise VoxflowError(f"speechbrain: {root} is not a directory (expected {HYPERPARAMS} and {EMBEDDING_CKPT})")
    for name in (HYPERPARAMS, EMBEDDING_CKPT):
        if not (root / name).is_file():
            raise VoxflowError(f"speechbrain: {root / name} not found")
    try:
        hyper = yaml.load((root / HYPERPARAMS).read_text(), Loader=_HyperLoader) or {}
    except yaml.YAMLError as exc:
        raise VoxflowError(f"speechbrain: {root / HYPERPARAMS} is not valid YAML: {exc}") from exc
    state = load_foreign_state(root / EMBEDDING_CKPT)
    absent = [k for k in ECAPA_KEYS if k not in state]
    if absent:
        raise VoxflowError(f"speechbrain: {root / EMBEDDING_CKPT} is not an ECAPA_TDNN state dict (no {absent})")
    norm = load_foreign_state(root / EMB_NORM_CKPT) if (root / EMB_NORM_CKPT).is_file() else None
    return {"hyperparams": hyper, "embedding_model": state, "emb_norm": norm}


def import_source(source: str | os.PathLike | None, out_dir: str | os.PathLike) -> dict:
    """Check the layout at ``source``, then refuse: voxflow lacks the options listed in ``GAPS``."""
    if source is None:
        raise VoxflowError("speechbrain: give the model directory (hyperparams.yaml, embedding_model.ckpt); "
                           "SpeechBrain installs no pretrained model")
    layout = read_layout(source)
    width = tuple(layout["embedding_model"]["fc.conv.weight"].shape)
    raise VoxflowError(f"speechbrain: {source}: an ECAPA_TDNN (fc {width}) that voxflow cannot reproduce yet: "
                       + "; ".join(GAPS))
