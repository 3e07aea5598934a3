"""A scoring back-end described by a config: cosine or LDA+PLDA, optionally AS-Norm / S-Norm; fit, save, score."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from voxflow.backend.cosine import cosine_space
from voxflow.backend.norm import NormalizedScorer, check_cohort, speaker_means, used_rows
from voxflow.backend.npz import load_npz, save_npz
from voxflow.backend.pairs import scores_frame, space_by_blocks, trial_rows
from voxflow.backend.plda import PLDABackend
from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)
TYPES = ("cosine", "plda")
NORMS = ("none", "asnorm", "snorm")
_KIND = "voxflow_backend"


def _check(cfg: dict) -> None:
    if cfg.get("type") not in TYPES:
        raise VoxflowError(f"back-end type {cfg.get('type')!r} unknown; choose one of {TYPES}")
    if cfg.get("norm", "none") not in NORMS:
        raise VoxflowError(f"back-end norm {cfg.get('norm')!r} unknown; choose one of {NORMS}")


def fit_backend(cfg: dict, matrix: np.ndarray, spk_labels, where: str = "") -> dict:
    """Fit the back-end of ``cfg`` on training embeddings with speaker labels; returns its arrays.

    cosine: the training mean when ``mean_subtraction``; plda: centring, LDA to ``lda_dim`` (capped at
    speakers - 1 and at the rank of the within-speaker covariance), length normalisation and two-covariance
    PLDA; with ``norm`` asnorm/snorm the cohort is the training speakers' mean embeddings (as Wespeaker does).
    Errors (data no back-end of this type can be fitted on) are prefixed with ``where`` (the corpus / file).
    """
    try:
        return _fit(cfg, matrix, spk_labels)
    except VoxflowError as exc:
        raise VoxflowError(f"{where}: {exc}" if where else str(exc)) from exc


def _fit(cfg: dict, matrix: np.ndarray, spk_labels) -> dict:
    _check(cfg)
    arrays: dict = {"type": np.array(cfg["type"]), "norm": np.array(cfg.get("norm", "none")),
                    "top_n": np.array(int(cfg.get("top_n", 300)))}
    n_spk = len(set(spk_labels))
    if cfg["type"] == "cosine":
        arrays["mean"] = matrix.mean(axis=0) if cfg.get("mean_subtraction") else np.zeros(0, np.float32)
    else:
        lda_dim = cfg.get("lda_dim", 128)
        if lda_dim is not None and lda_dim >= min(n_spk, matrix.shape[1] + 1):
            lda_dim = min(n_spk - 1, matrix.shape[1])
            log.warning("LDA dimension capped at %d (%d training speakers, %d-d embeddings)", lda_dim, n_spk,
                        matrix.shape[1])
        backend = PLDABackend(lda_dim=lda_dim, n_iter=int(cfg.get("n_iter", 10))).fit(matrix, list(spk_labels))
        arrays.update({f"plda/{k}": v for k, v in backend.to_arrays().items()})
    if arrays["norm"] != "none":
        _, arrays["cohort"] = speaker_means(matrix, list(spk_labels))
        check_cohort(arrays["cohort"], None if arrays["norm"] == "snorm" else int(arrays["top_n"]),
                     f"{arrays['norm']} cohort (the training speakers' mean embeddings)")
    return arrays


def save_backend(arrays: dict, path: str | os.PathLike) -> None:
    save_npz(path, _KIND, arrays)


def load_backend(path: str | os.PathLike) -> dict:
    return load_npz(path, _KIND, required=("type", "norm", "top_n"))


def _space_fn(arrays: dict, where: str):
    if str(arrays["type"]) == "cosine":
        mean = arrays.get("mean")
        return lambda m: cosine_space(m, mean if mean is not None and mean.size else None)
    plda = PLDABackend.from_arrays({k[5:]: v for k, v in arrays.items() if k.startswith("plda/")}, where=where)
    return plda.space


def backend_scorer(arrays: dict, matrix: np.ndarray, used: np.ndarray | None = None, where: str = "",
                   consume: bool = False):
    """A function ``(rows_e, rows_t) -> float64 scores`` of trials given as row pairs of embeddings ``matrix``,
    scored by the fitted back-end ``arrays``. With a norm, the cohort statistics of the ``used`` rows (all rows
    when None) are computed here, once. ``consume``: the caller has no further use for ``matrix``, which may then
    be overwritten (the embeddings are not held twice)."""
    to_space = _space_fn(arrays, where)
    norm = str(arrays["norm"])
    if norm != "none" and "cohort" not in arrays:
        raise VoxflowError(f"{where}: back-end with {norm} lacks its cohort")
    space = space_by_blocks(to_space, matrix, consume)
    if norm == "none":
        return space.pair_scores
    top_n = None if norm == "snorm" else int(arrays["top_n"])
    return NormalizedScorer(space, to_space(arrays["cohort"]), top_n, used)


def score_backend(arrays: dict, trials: pd.DataFrame, ids, matrix: np.ndarray, name: str,
                  where: str = "") -> pd.DataFrame:
    """Scores table of ``trials`` against embeddings ``matrix`` (rows named by ``ids``), all in memory (the score
    job streams a trial file instead: ``voxflow.backend.trial_stream``)."""
    rows_e, rows_t = trial_rows(trials, ids, matrix.shape[0])
    used = None if str(arrays["norm"]) == "none" else used_rows(matrix.shape[0], rows_e, rows_t)[0]
    return scores_frame(trials, backend_scorer(arrays, matrix, used, where)(rows_e, rows_t), name)
