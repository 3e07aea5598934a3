"""Score normalisation against a cohort: adaptive S-Norm (AS-Norm, top-N cohort) and S-Norm (whole cohort).

For a trial (e, t) with raw score s, with mu_x / sigma_x the mean / standard deviation (ddof 0)
of the ``top_n`` highest scores of x against the cohort (all of them for S-Norm):

    s_norm = ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2

Cohort statistics are computed once per embedding used by the trials, by chunked matrix
products with the cohort and a partial sort per row, never per trial.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import logging

import numpy as np
import pandas as pd

from voxflow.backend.lda import FIT_CHUNK, as_rows, class_codes, class_sums
from voxflow.backend.pairs import N_WORKERS, BilinearSpace, scores_frame, single_threaded_blas, trial_rows
from voxflow.errors import VoxflowError

ROW_CHUNK = 512  # embeddings per cohort-score block: ROW_CHUNK x cohort float32 (12 MB at 6000)
_STD_FLOOR = 1e-12
log = logging.getLogger(__name__)


def _top_k(n_cohort: int, top_n: int | None, what: str = "the cohort") -> int:
    """How many of the highest cohort scores the statistics use (the whole cohort when it is smaller)."""
    if n_cohort < 2:
        raise VoxflowError(f"{what} needs at least 2 embeddings, got {n_cohort}: use norm: none, or more speakers")
    k = n_cohort if top_n is None else int(top_n)
    if k < 2:
        raise VoxflowError(f"top_n must be at least 2, got {top_n}")
    return min(k, n_cohort)


def check_cohort(cohort: np.ndarray, top_n: int | None, what: str = "the cohort") -> None:
    """Raise a VoxflowError (with the remedy) for a cohort AS-Norm / S-Norm cannot use; warn when it is
    smaller than ``top_n`` (then AS-Norm is S-Norm over the whole cohort)."""
    n = len(cohort)
    _top_k(n, top_n, what)
    if top_n is not None and top_n > n:
        log.warning("%s has %d embeddings, fewer than top_n=%d: AS-Norm uses all %d (S-Norm)", what, n, top_n, n)
    if not np.ptp(cohort, axis=0).any():
        raise VoxflowError(f"{what}: all {n} embeddings are identical, so every cohort score is the same; "
                           "use norm: none, and check the model that produced the embeddings")


def cohort_stats(
    space: BilinearSpace, cohort: BilinearSpace, top_n: int | None = 300, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the ``top_n`` highest cohort scores of each (selected) row of ``space``.

    ``top_n=None`` (or >= the cohort size) uses the whole cohort (S-Norm).
    """
    n_cohort = len(cohort.z)
    k = _top_k(n_cohort, top_n)
    rows = np.arange(len(space.z)) if rows is None else np.asarray(rows)
    mean = np.empty(len(rows))
    std = np.empty(len(rows))

    cohort_t = np.ascontiguousarray(cohort.z.T, dtype=np.float32)  # (K, n_cohort): a plain GEMM per block
    col_offset = (cohort.q + space.const).astype(np.float32)
    add_cols, add_rows = bool(col_offset.any()), bool(space.q.any())

    def block(lo: int) -> None:
        sel = rows[lo : lo + ROW_CHUNK]
        scores = space.z[sel] @ cohort_t
        if add_rows:
            scores += space.q[sel].astype(np.float32)[:, None]
        if add_cols:
            scores += col_offset[None, :]
        if k < n_cohort:
            scores.partition(n_cohort - k, axis=1)  # in place: the top k end up in the last k columns
            scores = scores[:, n_cohort - k :]
        top = scores.astype(np.float64)
        m = top.mean(axis=1)
        mean[lo : lo + ROW_CHUNK] = m
        top -= m[:, None]
        std[lo : lo + ROW_CHUNK] = np.sqrt(np.einsum("ij,ij->i", top, top) / k)

    starts = range(0, len(rows), ROW_CHUNK)
    if len(starts) < 2:
        for lo in starts:
            block(lo)
    else:  # blocks in parallel threads (GEMM and partition release the GIL), one BLAS thread each
        with single_threaded_blas(), ThreadPoolExecutor(N_WORKERS) as pool:
            for f in [pool.submit(block, lo) for lo in starts]:
                f.result()
    return mean, std


def used_rows(n_rows: int, *row_arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The sorted distinct rows used by ``row_arrays`` and each array re-indexed into them (O(N), no sort)."""
    mask = np.zeros(n_rows, dtype=bool)
    for r in row_arrays:
        mask[r] = True
    used = np.flatnonzero(mask)
    position = np.zeros(n_rows, dtype=np.intp)
    position[used] = np.arange(len(used))
    return used, [position[r] for r in row_arrays]


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
    used, _ = used_rows(len(space.z), rows_e, rows_t)
    return scores_frame(trials_df, NormalizedScorer(space, cohort, top_n, used)(rows_e, rows_t), backend_name)


class NormalizedScorer:
    """AS-Norm (S-Norm with ``top_n=None``) scores of trials given as row pairs of ``space``. The cohort
    statistics of the ``used`` rows (all rows when None) are computed once, here; calls then score any batch of
    trials among those rows."""

    def __init__(self, space: BilinearSpace, cohort: BilinearSpace, top_n: int | None = 300,
                 used: np.ndarray | None = None):
        self.space = space
        used = np.arange(len(space.z)) if used is None else np.asarray(used)
        self.position = np.zeros(len(space.z), dtype=np.intp)  # row -> its index among the used rows
        self.position[used] = np.arange(len(used))
        self.mean, self.std = cohort_stats(space, cohort, top_n, rows=used)

    def __call__(self, rows_e: np.ndarray, rows_t: np.ndarray) -> np.ndarray:
        raw = self.space.pair_scores(rows_e, rows_t)
        ie, it = self.position[rows_e], self.position[rows_t]
        return as_norm(raw, self.mean[ie], self.std[ie], self.mean[it], self.std[it])


def speaker_means(matrix: np.ndarray, spk_labels, chunk: int = FIT_CHUNK) -> tuple[list, np.ndarray]:
    """Per-speaker mean embeddings (a usual AS-Norm cohort): (speakers, (S, D) float32); summed over blocks of
    ``chunk`` rows (float64 per block only: VoxCeleb2 dev's 1.09 M embeddings need no whole float64 copy)."""
    x = as_rows(matrix, chunk=chunk)
    codes, k = class_codes(spk_labels, len(x), "speaker labels")
    sums = np.zeros((k, x.shape[1]))
    for lo in range(0, len(x), chunk):
        sums += class_sums(x[lo:lo + chunk], codes[lo:lo + chunk], k)
    means = sums / np.bincount(codes, minlength=k)[:, None]
    speakers = pd.unique(pd.Series(np.asarray(spk_labels))).tolist()
    return speakers, means.astype(np.float32)
