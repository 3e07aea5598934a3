"""The ``data:`` section of a training config: its defaults and validation, and the classifier size it implies."""

from __future__ import annotations

import math

import numpy as np

from voxflow.audio.features import validate_features_cfg
from voxflow.data import chain
from voxflow.errors import VoxflowError

DATA_DEFAULTS: dict = {
    "sample_rate": 16000,
    "resample": True,
    "chunk_s": 2.0,
    "chunk_s_max": None,
    "chunking": "random",
    "chunk_hop_s": 1.0,
    "batch_size": 128,
    "num_workers": 0,
    "shuffle_buffer": 1000,
    "speed_perturb": False,
    "aug_prob": 0.0,
    "snr_db": {"noise": [0, 15], "music": [5, 15], "babble": [13, 20]},
    "reverb_share": 0.5,
    "spec_aug": False,
    "features": {},
    "drop_last": True,
}


def _int(cfg: dict, key: str, minimum: int, where: str) -> None:
    v = cfg[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise VoxflowError(f"{where}.{key}: must be an integer >= {minimum}, got {v!r}")


def _num(cfg: dict, key: str, lo: float, hi: float, where: str, open_lo: bool = False) -> None:
    v = cfg[key]
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v > hi or v < lo or (open_lo and v == lo):
        raise VoxflowError(f"{where}.{key}: must be a number in {'(' if open_lo else '['}{lo}, {hi}], got {v!r}")


def validate_data_cfg(cfg: dict | None, where: str = "data") -> dict:
    """Return the data config merged over DATA_DEFAULTS; unknown keys or bad values raise VoxflowError."""
    cfg = dict(cfg or {})
    for key in cfg:
        if key not in DATA_DEFAULTS:
            raise VoxflowError(f"{where}: unknown key {key!r}; known keys: {sorted(DATA_DEFAULTS)}")
    c = {**DATA_DEFAULTS, **cfg}
    _int(c, "sample_rate", 1, where)
    _int(c, "batch_size", 1, where)
    _int(c, "num_workers", 0, where)
    _int(c, "shuffle_buffer", 1, where)
    _num(c, "chunk_s", 0.0, math.inf, where, open_lo=True)
    _num(c, "chunk_hop_s", 0.0, math.inf, where, open_lo=True)
    if c["chunk_s_max"] is not None:
        _num(c, "chunk_s_max", c["chunk_s"], math.inf, where)
        if c["chunking"] != "random":
            raise VoxflowError(f"{where}.chunk_s_max: a random chunk length per batch needs chunking: random")
    _num(c, "aug_prob", 0.0, 1.0, where)
    _num(c, "reverb_share", 0.0, 1.0, where)
    for key in ("resample", "speed_perturb", "spec_aug", "drop_last"):
        if not isinstance(c[key], bool):
            raise VoxflowError(f"{where}.{key}: must be true or false, got {c[key]!r}")
    if c["chunking"] not in ("random", "sliding"):
        raise VoxflowError(f"{where}.chunking: must be 'random' or 'sliding', got {c['chunking']!r}")
    snr = dict(DATA_DEFAULTS["snr_db"])
    if not isinstance(c["snr_db"], dict):
        raise VoxflowError(f"{where}.snr_db: must be a mapping of noise kind to [low, high] dB")
    for kind, rng in c["snr_db"].items():
        if kind not in snr:
            raise VoxflowError(f"{where}.snr_db: unknown noise kind {kind!r}; known: {sorted(snr)}")
        if (
            not isinstance(rng, (list, tuple)) or len(rng) != 2
            or not all(isinstance(v, (int, float)) for v in rng) or rng[0] > rng[1]
        ):
            raise VoxflowError(f"{where}.snr_db.{kind}: must be [low, high] in dB with low <= high, got {rng!r}")
        snr[kind] = [float(rng[0]), float(rng[1])]
    c["snr_db"] = snr
    if not isinstance(c["features"], dict):
        raise VoxflowError(f"{where}.features: must be a mapping")
    c["features"] = validate_features_cfg(c["features"], where=f"{where}.features")
    if round(c["chunk_s"] * c["sample_rate"]) < int(c["sample_rate"] * c["features"]["frame_length_ms"] * 0.001):
        raise VoxflowError(f"{where}.chunk_s: {c['chunk_s']} s is shorter than one feature frame")
    return c


def check_spk2id(spk2id: dict) -> int:
    """The number of speakers of a speaker -> label map whose labels must be 0..n-1."""
    n = len(spk2id)
    if n == 0:
        raise VoxflowError("spk2id: no speakers")
    ids = list(spk2id.values())
    if any(not isinstance(v, (int, np.integer)) or v < 0 or v >= n for v in ids) or len(set(ids)) != n:
        raise VoxflowError(f"spk2id: labels must be the distinct integers 0..{n - 1}")
    return n


def num_classes(spk2id: dict, cfg: dict | None) -> int:
    """Classifier size: number of speakers, times 3 with speed perturbation (0.9 and 1.1 are new speakers)."""
    c = validate_data_cfg(cfg)
    return check_spk2id(spk2id) * (len(chain.SPEED_FACTORS) if c["speed_perturb"] else 1)
