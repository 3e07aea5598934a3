"""Shared trial-scoring machinery: id lookup, chunked row-wise dot products, bilinear score spaces.

Cosine and PLDA scores both have the form ``s(i, j) = z_i . z_j + q_i + q_j + c`` once each
embedding is mapped to ``(z, q)``; ``BilinearSpace`` holds that mapping so trial scoring and
cohort statistics are one vectorised code path for every back-end.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from voxflow.errors import VoxflowError

CHUNK = 8192  # trials per chunk: two (CHUNK, D) float32 gather buffers per worker
N_WORKERS = 2


def single_threaded_blas():
    """Context limiting BLAS to one thread (when we parallelise ourselves, or for small matrices)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def check_unique(index: pd.Index) -> None:
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise VoxflowError(f"embedding ids are not unique: {dup!r} occurs more than once")


def missing_values_error(what: str, row: int) -> VoxflowError:
    return VoxflowError(f"{what} ids contain missing values (row {row})")


def unknown_ids_error(what: str, unknown: dict) -> VoxflowError:
    """The error for trial ids without an embedding; ``unknown`` maps each (in order of appearance) to its trials."""
    shown = ", ".join(repr(m) for m in list(unknown)[:5])
    return VoxflowError(f"{len(unknown)} {what} id(s) have no embedding (used in {sum(unknown.values())} trials), "
                        f"e.g. {shown}")


def lookup(index: pd.Index, wanted, what: str = "trial") -> np.ndarray:
    """Row indices in ``index`` of the ``wanted`` ids (vectorised); missing ids raise VoxflowError naming them."""
    check_unique(index)
    codes, uniques = pd.factorize(wanted if isinstance(wanted, pd.Series) else pd.Series(wanted))
    if (codes < 0).any():
        raise missing_values_error(what, int(np.flatnonzero(codes < 0)[0]))
    pos = index.get_indexer(uniques)
    missing = pos < 0
    if missing.any():
        counts = np.bincount(codes, minlength=len(uniques))
        raise unknown_ids_error(what, dict(zip(uniques[missing], counts[missing].tolist())))
    return pos[codes].astype(np.intp)


def trial_rows(trials_df: pd.DataFrame, ids, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Embedding row indices of each trial's enrollment and test ids."""
    for col in ("enroll_id", "test_id"):
        if col not in trials_df.columns:
            raise VoxflowError(f"trial table lacks column {col!r}; has {list(trials_df.columns)}")
    if len(ids) != n_rows:
        raise VoxflowError(f"{len(ids)} embedding ids but {n_rows} embedding rows")
    index = ids if isinstance(ids, pd.Index) else pd.Index(list(ids))
    return lookup(index, trials_df["enroll_id"], "enroll"), lookup(index, trials_df["test_id"], "test")


def pair_dots(matrix: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """``out[i] = matrix[rows_a[i]] . matrix[rows_b[i]]`` in float32 chunks with bounded memory (float64 out)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, dim = len(rows_a), matrix.shape[1]
    out = np.empty(n, dtype=np.float64)

    def work(lo: int, hi: int) -> None:
        xa = np.empty((CHUNK, dim), dtype=np.float32)
        xb = np.empty((CHUNK, dim), dtype=np.float32)
        for i in range(lo, hi, CHUNK):
            j = min(i + CHUNK, hi)
            a, b = xa[: j - i], xb[: j - i]
            np.take(matrix, rows_a[i:j], axis=0, out=a, mode="clip")  # indices validated by the caller
            np.take(matrix, rows_b[i:j], axis=0, out=b, mode="clip")
            out[i:j] = np.einsum("ij,ij->i", a, b)

    if n < 4 * CHUNK:
        work(0, n)
    else:
        bounds = np.linspace(0, n, N_WORKERS + 1).astype(int)
        with ThreadPoolExecutor(N_WORKERS) as pool:
            for f in [pool.submit(work, int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]:
                f.result()
    return out


@dataclass
class BilinearSpace:
    """Embeddings mapped so that ``score(i, j) = z[i] . z[j] + q[i] + q[j] + const``."""

    z: np.ndarray  # (N, K) float32
    q: np.ndarray  # (N,) float64
    const: float = 0.0

    def pair_scores(self, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
        """Scores of the pairs (rows_a[i], rows_b[i])."""
        return pair_dots(self.z, rows_a, rows_b) + self.q[rows_a] + self.q[rows_b] + self.const

    def cross_scores(self, other: "BilinearSpace", rows: np.ndarray | None = None) -> np.ndarray:
        """Score matrix of (selected) rows of ``self`` against every row of ``other`` (float32)."""
        z = self.z if rows is None else self.z[rows]
        q = self.q if rows is None else self.q[rows]
        s = z @ other.z.T
        if q.any():
            s += q.astype(np.float32)[:, None]
        if other.q.any() or self.const:
            s += (other.q + self.const).astype(np.float32)[None, :]
        return s


SPACE_BLOCK = 4_096  # embeddings mapped at a time when a space is built (float64 temporaries of 8 MB at 256-d)


def space_by_blocks(to_space, matrix: np.ndarray, consume: bool = False, block: int | None = None) -> BilinearSpace:
    """``to_space(matrix)`` computed on blocks of rows: the working memory is one block, not float64 copies of
    the whole matrix. With ``consume`` (the caller has no further use for ``matrix``) z is written over a float32
    ``matrix`` of its shape (cosine), so the embeddings are not held twice."""
    n, block = len(matrix), block or SPACE_BLOCK
    if n <= block:
        return to_space(matrix)
    z = q = None
    const = 0.0
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        try:
            part = to_space(matrix[lo:hi])
        except VoxflowError as exc:
            raise VoxflowError(f"{exc} (among embedding rows {lo}-{hi - 1})") from exc
        if z is None:
            reuse = (consume and matrix.dtype == part.z.dtype and matrix.shape[1] == part.z.shape[1]
                     and matrix.flags.c_contiguous and matrix.flags.writeable)
            z = matrix if reuse else np.empty((n, part.z.shape[1]), part.z.dtype)
            q = np.empty(n, part.q.dtype)
            const = part.const
        z[lo:hi] = part.z
        q[lo:hi] = part.q
    return BilinearSpace(z, q, const)


def scores_frame(trials_df: pd.DataFrame, scores: np.ndarray, backend_name: str) -> pd.DataFrame:
    """Assemble a scores table (enroll_id, test_id, score, label, backend); label -1 when trials have none."""
    label = trials_df["label"].to_numpy(np.int64) if "label" in trials_df.columns else np.full(len(scores), -1)
    return pd.DataFrame(
        {
            "enroll_id": trials_df["enroll_id"].array,
            "test_id": trials_df["test_id"].array,
            "score": np.asarray(scores, dtype=np.float64),
            "label": label.astype(np.int64),
            "backend": backend_name,
        }
    )
