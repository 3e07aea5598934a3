"""Score normalisation against a cohort: adaptive S-Norm (AS-Norm, top-N cohort) and S-Norm (whole cohort).

For a trial (e, t) with raw score s, with mu_x / sigma_x the mean / standard deviation (ddof 0)
of the ``top_n`` highest scores of x against the cohort (all of them for S-Norm):

    s_norm = ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2

Cohort statistics are computed once per embedding used by the trials, by chunked matrix
products with the cohort and a partial sort per row, never per trial.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from voxflow.backend.lda import check_matrix, class_codes, class_sums
from voxflow.backend.pairs import N_WORKERS, BilinearSpace, scores_frame, single_threaded_blas, trial_rows
from voxflow.errors import VoxflowError

ROW_CHUNK = 2048  # embeddings per cohort-score block: ROW_CHUNK x cohort float32
_STD_FLOOR = 1e-12


def cohort_stats(
    space: BilinearSpace, cohort: BilinearSpace, top_n: int | None = 300, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the ``top_n`` highest cohort scores of each (selected) row of ``space``.

    ``top_n=None`` (or >= the cohort size) uses the whole cohort (S-Norm).
    """
    n_cohort = len(cohort.z)
    if n_cohort < 2:
        raise VoxflowError(f"the cohort needs at least 2 embeddings, got {n_cohort}")
    k = n_cohort if top_n is None else int(top_n)
    if k < 2:
        raise VoxflowError(f"top_n must be at least 2, got {top_n}")
    k = min(k, n_cohort)
    rows = np.arange(len(space.z)) if rows is None else np.asarray(rows)
    mean = np.empty(len(rows))
    std = np.empty(len(rows))

    def block(lo: int) -> None:
        scores = space.cross_scores(cohort, rows[lo : lo + ROW_CHUNK])
        if k < n_cohort:
            scores = np.partition(scores, n_cohort - k, axis=1)[:, n_cohort - k :]
        scores = scores.astype(np.float64)
        mean[lo : lo + ROW_CHUNK] = scores.mean(axis=1)
        std[lo : lo + ROW_CHUNK] = scores.std(axis=1)

    starts = range(0, len(rows), ROW_CHUNK)
    if len(starts) < 2:
        for lo in starts:
            block(lo)
    else:  # blocks in parallel threads (GEMM and partition release the GIL), one BLAS thread each
        with single_threaded_blas(), ThreadPoolExecutor(N_WORKERS) as pool:
            for f in [pool.submit(block, lo) for lo in starts]:
                f.result()
    return mean, std


def as_norm(scores, enroll_mean, enroll_std, test_mean, test_std) -> np.ndarray:
    """The symmetric normalisation formula ``((s - mu_e)/sigma_e + (s - mu_t)/sigma_t) / 2``."""
    s = np.asarray(scores, dtype=np.float64)
    se = np.maximum(np.asarray(enroll_std, dtype=np.float64), _STD_FLOOR)
    st = np.maximum(np.asarray(test_std, dtype=np.float64), _STD_FLOOR)
    return 0.5 * ((s - enroll_mean) / se + (s - test_mean) / st)


def score_trials_normalized(
    trials_df: pd.DataFrame,
    ids,
    space: BilinearSpace,
    cohort: BilinearSpace,
    top_n: int | None = 300,
    backend_name: str = "asnorm",
) -> pd.DataFrame:
    """Score trials in ``space`` (rows named by ``ids``) and AS-Norm them against ``cohort`` (S-Norm if top_n=None).

    Build the spaces with the same back-end, e.g. ``cosine_space(matrix)`` / ``cosine_space(cohort)`` or
    ``plda_backend.space(matrix)`` / ``plda_backend.space(cohort)``.
    """
    rows_e, rows_t = trial_rows(trials_df, ids, len(space.z))
    used, inverse = np.unique(np.r_[rows_e, rows_t], return_inverse=True)
    mean, std = cohort_stats(space, cohort, top_n, rows=used)
    n = len(rows_e)
    ie, it = inverse[:n], inverse[n:]
    raw = space.pair_scores(rows_e, rows_t)
    return scores_frame(trials_df, as_norm(raw, mean[ie], std[ie], mean[it], std[it]), backend_name)


def speaker_means(matrix: np.ndarray, spk_labels) -> tuple[list, np.ndarray]:
    """Per-speaker mean embeddings (a usual AS-Norm cohort): (speakers, (S, D) float32)."""
    x = check_matrix(matrix)
    codes, k = class_codes(spk_labels, len(x), "speaker labels")
    means = class_sums(x, codes, k) / np.bincount(codes, minlength=k)[:, None]
    speakers = pd.unique(pd.Series(np.asarray(spk_labels))).tolist()
    return speakers, means.astype(np.float32)
