"""Speaker cleaning of Kaseva & Kurimo: drop a speaker's minority cluster when a K=2 split is reliable.

For each speaker the sample embeddings are clustered with spherical K-means (K=2) into G1 (the larger)
and G2; phi is the mean silhouette coefficient (cosine distance) of that split. All samples of G2 are
excluded iff |G1| > majority * |G1 u G2| and phi > min_silhouette (the paper: 0.6 and 0.3).

Scale (benchmarks/scale.py, row 3): speakers are independent, so they are split ``threads`` at a time, each
thread reading only its speaker's rows of the (N, D) matrix (which may be a float32 memmap) and converting them
to float64; BLAS runs one thread per worker (many threads on these skinny products are several times slower).
The silhouette costs O(n D) per speaker from cluster sums (voxflow.cluster.silhouette), not O(n^2 D).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from voxflow.cluster.kmeans import normalize_rows, spherical_kmeans
from voxflow.cluster.silhouette import cosine_silhouette
from voxflow.errors import VoxflowError

REQUIRED = ("utt_id", "spk_id", "start_s", "end_s")
MIN_SEGMENTS = 4
EXCLUSION_COLUMNS = ["utt_id", "spk_id", "start_s", "end_s", "reason", "silhouette", "size_g1", "size_g2"]
SPEAKER_COLUMNS = ["spk_id", "n_segments", "size_g1", "size_g2", "silhouette", "excluded"]


def split_speaker(E: np.ndarray, seed: int = 0, n_init: int = 10) -> tuple[np.ndarray, float]:
    """Spherical K-means K=2 on one speaker's unit embeddings: (mask of G2, silhouette; NaN if one group)."""
    labels, _ = spherical_kmeans(E, 2, n_init=n_init, seed=seed)
    sizes = np.bincount(labels, minlength=2)
    if sizes.min() == 0:
        return np.zeros(len(E), dtype=bool), float("nan")
    g1 = int(np.argmax(sizes))  # ties: cluster 0 is G1; the rule cannot fire on a tie anyway
    return labels != g1, cosine_silhouette(E, labels)


def clean_speakers(
    segments: pd.DataFrame,
    embeddings: np.ndarray,
    majority: float = 0.6,
    min_silhouette: float = 0.3,
    seed: int = 0,
    n_init: int = 10,
    threads: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the cleaning rule per speaker; returns (exclusions, per-speaker summary).

    ``segments`` has one row per training sample (utt_id, spk_id, start_s, end_s), row i matching
    ``embeddings[i]``. Speakers with fewer than 4 samples are skipped (not excluded, silhouette NaN,
    group sizes 0). Exclusions carry reason 'speaker_cleaning', the silhouette and both group sizes.
    ``embeddings`` may be a memmap: only one speaker's rows per thread are in memory as float64. ``threads``
    speakers are split at once; the result does not depend on it.
    """
    missing = [c for c in REQUIRED if c not in segments.columns]
    if missing:
        raise VoxflowError(f"segments: missing column(s) {missing}; has {list(segments.columns)}")
    if not 0.0 <= majority < 1.0:
        raise VoxflowError(f"majority={majority!r} must lie in [0, 1)")
    if not -1.0 <= min_silhouette <= 1.0:
        raise VoxflowError(f"min_silhouette={min_silhouette!r} must lie in [-1, 1]")
    emb = embeddings if isinstance(embeddings, np.ndarray) else np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] != len(segments):
        raise VoxflowError(f"embeddings: expected shape ({len(segments)}, D) to match the segments, got {emb.shape}")
    if segments["spk_id"].isna().any():
        row = int(np.flatnonzero(segments["spk_id"].isna().to_numpy())[0])
        raise VoxflowError(f"segments: row {row} (utt_id {segments['utt_id'].iloc[row]!r}) has no spk_id")

    if not (isinstance(threads, (int, np.integer)) and threads >= 1):
        raise VoxflowError(f"threads={threads!r} must be a positive integer")

    def split(item):
        spk, rows = item
        if len(rows) < MIN_SEGMENTS:
            return None
        try:
            E = normalize_rows(emb[rows], name=f"embeddings of speaker {spk!r}")
        except VoxflowError as exc:
            utt = segments["utt_id"].iloc[rows].tolist()
            raise VoxflowError(f"{exc} (rows of utt_ids {utt[:3]}...)") from exc
        return split_speaker(E, seed=seed, n_init=n_init)

    groups = list(segments.groupby("spk_id", sort=False).indices.items())
    speakers, excluded_rows, ex_sil, ex_g1, ex_g2 = [], [], [], [], []
    pool = ThreadPoolExecutor(max_workers=int(threads)) if threads > 1 else None
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            splits = pool.map(split, groups) if pool else map(split, groups)  # in order; errors propagate
            for (spk, rows), result in zip(groups, splits):
                rec = {"spk_id": spk, "n_segments": len(rows), "size_g1": 0, "size_g2": 0, "silhouette": np.nan,
                       "excluded": False}
                if result is not None:
                    g2, phi = result
                    size_g2 = int(g2.sum())
                    size_g1 = len(rows) - size_g2
                    drop = size_g2 > 0 and size_g1 > majority * len(rows) and phi > min_silhouette
                    rec.update(size_g1=size_g1, size_g2=size_g2, silhouette=phi, excluded=bool(drop))
                    if drop:
                        excluded_rows.append(rows[g2])
                        ex_sil += [phi] * size_g2
                        ex_g1 += [size_g1] * size_g2
                        ex_g2 += [size_g2] * size_g2
                speakers.append(rec)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)

    idx = np.concatenate(excluded_rows) if excluded_rows else np.zeros(0, dtype=np.int64)
    ex = segments.iloc[idx][list(REQUIRED)].reset_index(drop=True)
    ex["reason"] = "speaker_cleaning"
    ex["silhouette"] = np.asarray(ex_sil, dtype=np.float64)
    ex["size_g1"] = np.asarray(ex_g1, dtype=np.int64)
    ex["size_g2"] = np.asarray(ex_g2, dtype=np.int64)
    per = pd.DataFrame(speakers, columns=SPEAKER_COLUMNS).astype(
        {"n_segments": np.int64, "size_g1": np.int64, "size_g2": np.int64, "silhouette": np.float64, "excluded": bool}
    )
    return ex[EXCLUSION_COLUMNS], per
