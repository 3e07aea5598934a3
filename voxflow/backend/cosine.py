"""Cosine scoring of verification trials: (mean-subtracted) L2-normalised embeddings, row-wise dot products."""

from __future__ import annotations

import numpy as np
import pandas as pd

from voxflow.backend.pairs import BilinearSpace, pair_dots, scores_frame, trial_rows
from voxflow.errors import VoxflowError


def l2_normalize(matrix: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Subtract ``mean`` (if given) and scale each row to unit L2 norm (float32; zero rows stay zero)."""
    x = np.array(matrix, dtype=np.float32, copy=True)
    if x.ndim != 2:
        raise VoxflowError(f"embedding matrix must be (N, D), got shape {x.shape}")
    if mean is not None:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        if mean.shape[0] != x.shape[1]:
            raise VoxflowError(f"mean has dimension {mean.shape[0]}, embeddings have {x.shape[1]}")
        x -= mean
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    norms[norms == 0.0] = 1.0
    x /= norms[:, None].astype(np.float32)
    return x


def cosine_space(matrix: np.ndarray, mean: np.ndarray | None = None) -> BilinearSpace:
    """Cosine scoring as a bilinear space: unit vectors, no offsets."""
    z = l2_normalize(matrix, mean)
    return BilinearSpace(z, np.zeros(len(z)), 0.0)


def score_trials(
    trials_df: pd.DataFrame, ids, matrix: np.ndarray, mean: np.ndarray | None = None, backend_name: str = "cosine"
) -> pd.DataFrame:
    """Cosine-score ``trials_df`` (enroll_id, test_id[, label]) against embeddings ``matrix`` with row ids ``ids``.

    Returns a scores table (enroll_id, test_id, score, label, backend); label is -1 when the
    trials carry none. ``mean`` is subtracted before L2 normalisation.
    """
    rows_e, rows_t = trial_rows(trials_df, ids, np.shape(matrix)[0])
    scores = pair_dots(l2_normalize(matrix, mean), rows_e, rows_t)
    return scores_frame(trials_df, scores, backend_name)
