"""Speaker cleaning at scale: threads, memmaps, one BLAS thread per worker, the same decisions as the plain loop."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_samples

from voxflow.cluster.cleaning import clean_speakers, split_speaker
from voxflow.cluster.kmeans import normalize_rows
from voxflow.errors import VoxflowError


def planted_set(seed=0, n_speakers=24, dim=64):
    """Speakers of 30-400 segments; every third has 10-30 % of its segments from another speaker."""
    rng = np.random.default_rng(seed)
    centres = normalize_rows(rng.standard_normal((n_speakers, dim)))
    rows, mats = [], []
    for s in range(n_speakers):
        n = int(rng.integers(30, 400))
        owner = np.full(n, s)
        if s % 3 == 0:
            owner[rng.random(n) < rng.uniform(0.1, 0.3)] = (s + 1) % n_speakers
        mats.append(centres[owner] + rng.standard_normal((n, dim)) / np.sqrt(dim))
        rows += [{"utt_id": f"s{s}/u{i // 6}", "spk_id": f"s{s}", "start_s": float(i % 6),
                  "end_s": float(i % 6) + 2} for i in range(n)]
    order = rng.permutation(len(rows))  # speakers interleaved, as rows of a real segments table
    return pd.DataFrame(rows).iloc[order].reset_index(drop=True), np.vstack(mats)[order].astype(np.float32)


def reference_decisions(seg, emb, majority=0.6, min_silhouette=0.3):
    """The cleaning rule as a plain loop over speakers (the implementation before threads), silhouettes from
    scikit-learn's O(n^2) silhouette_samples."""
    out = {}
    for spk, rows in seg.groupby("spk_id", sort=False).indices.items():
        E = normalize_rows(emb[rows])
        g2, _ = split_speaker(E)
        phi = float(silhouette_samples(E, g2.astype(int), metric="cosine").mean())
        n2 = int(g2.sum())
        drop = n2 > 0 and len(rows) - n2 > majority * len(rows) and phi > min_silhouette
        out[spk] = (bool(drop), phi, sorted(rows[g2].tolist()) if drop else [])
    return out


def test_threads_and_memmap_give_the_plain_loops_decisions(tmp_path):
    seg, emb = planted_set()
    ref = reference_decisions(seg, emb)
    mm = np.lib.format.open_memmap(tmp_path / "emb.npy", mode="w+", dtype=np.float32, shape=emb.shape)
    mm[:] = emb
    mm.flush()
    ex1, per1 = clean_speakers(seg, emb, threads=1)
    ex2, per2 = clean_speakers(seg, np.load(tmp_path / "emb.npy", mmap_mode="r"), threads=3)
    pd.testing.assert_frame_equal(ex1, ex2)
    pd.testing.assert_frame_equal(per1, per2)
    per = per1.set_index("spk_id")
    assert sorted(per.index[per.excluded]) == sorted(s for s, r in ref.items() if r[0])
    assert int(per.excluded.sum()) >= 6  # most planted speakers are found: the comparison is not vacuous
    for spk, (drop, phi, rows) in ref.items():
        # the O(n D) silhouette from cluster sums equals scikit-learn's pairwise one (float64 rounding only)
        assert per.loc[spk, "silhouette"] == pytest.approx(phi, abs=1e-9)
    excluded_rows = sorted(seg.index[seg.set_index(["utt_id", "start_s"]).index.isin(
        ex1.set_index(["utt_id", "start_s"]).index)].tolist())
    assert excluded_rows == sorted(r for _, _, rows in ref.values() for r in rows)


def test_threads_error_names_the_value():
    seg, emb = planted_set(n_speakers=3)
    with pytest.raises(VoxflowError, match="threads=0"):
        clean_speakers(seg, emb, threads=0)


def test_a_bad_speaker_raises_from_a_worker_thread():
    seg, emb = planted_set(n_speakers=4)
    emb[np.flatnonzero(seg.spk_id == "s2")[0]] = 0.0
    with pytest.raises(VoxflowError, match="speaker 's2'.*zero norm"):
        clean_speakers(seg, emb, threads=2)
