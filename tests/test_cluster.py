"""Tests for spherical K-means, cosine silhouette, speaker cleaning and spectral clustering."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, silhouette_score

from voxflow.cluster.cleaning import clean_speakers
from voxflow.cluster.kmeans import kmeans, spherical_kmeans, spherical_mean
from voxflow.cluster.silhouette import cosine_silhouette, cosine_silhouette_samples
from voxflow.cluster.spectral import estimate_num_speakers, pruned_affinity, spectral_cluster
from voxflow.data.manifests import read_table, write_table
from voxflow.errors import VoxflowError


def unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def cloud(rng, mu, n, spread):
    """von Mises-Fisher-like sample: normalised (mu + isotropic Gaussian noise)."""
    return unit(mu + spread * rng.normal(size=(n, len(mu))))


def directions(rng, k, d):
    """k unit vectors that are mutually orthogonal (well separated)."""
    q, _ = np.linalg.qr(rng.normal(size=(d, k)))
    return q.T


# ---------------------------------------------------------------- spherical K-means


def test_spherical_kmeans_recovers_two_clusters_exactly():
    rng = np.random.default_rng(1)
    mu = directions(rng, 2, 16)
    X = np.vstack([cloud(rng, mu[0], 30, 0.15), cloud(rng, mu[1], 20, 0.15)])
    truth = np.r_[np.zeros(30), np.ones(20)]
    labels, C = spherical_kmeans(X, 2, seed=0)
    assert adjusted_rand_score(truth, labels) == 1.0
    np.testing.assert_allclose(np.linalg.norm(C, axis=1), 1.0)
    # Centroids are the normalised means of their members.
    for c in range(2):
        np.testing.assert_allclose(C[c], unit(X[labels == c].sum(axis=0)), atol=1e-12)
    # ... and lie close to the generating directions.
    assert sorted(float(np.max(C @ m)) for m in mu)[0] > 0.98


def test_spherical_kmeans_invariant_to_row_scaling_and_deterministic():
    rng = np.random.default_rng(2)
    mu = directions(rng, 3, 8)
    X = np.vstack([cloud(rng, m, 15, 0.4) for m in mu])
    scale = rng.uniform(0.01, 100.0, size=(len(X), 1))
    l1, c1 = spherical_kmeans(X, 3, seed=5)
    l2, c2 = spherical_kmeans(X * scale, 3, seed=5)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_allclose(c1, c2, atol=1e-12)
    l3, c3 = spherical_kmeans(X, 3, seed=5)
    np.testing.assert_array_equal(l1, l3)
    np.testing.assert_array_equal(c1, c3)


def test_spherical_kmeans_reaches_global_optimum_of_brute_force():
    # Objective for K=2: sum_i cos(x_i, c(x_i)) = ||S_1|| + ||S_2|| (S = sum of members); check all partitions.
    rng = np.random.default_rng(3)
    X = unit(rng.normal(size=(11, 3)))
    best = max(
        np.linalg.norm(X[mask].sum(0)) + np.linalg.norm(X[~mask].sum(0))
        for bits in itertools.product([False, True], repeat=10)
        for mask in [np.array((True,) + bits)]
        if not mask.all()
    )
    labels, C = spherical_kmeans(X, 2, n_init=20, seed=0)
    got = float((X * C[labels]).sum())
    assert got == pytest.approx(best, rel=1e-12)


def test_spherical_mean_is_sea_aggregate():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(9, 5)) + 2.0
    ref = unit((X / np.linalg.norm(X, axis=1, keepdims=True)).mean(0))
    np.testing.assert_allclose(spherical_mean(X), ref, atol=1e-14)
    np.testing.assert_allclose(spherical_mean(X * rng.uniform(0.1, 10, size=(9, 1))), ref, atol=1e-14)
    _, C = spherical_kmeans(X, 1)
    np.testing.assert_allclose(C[0], ref, atol=1e-14)
    np.testing.assert_allclose(spherical_mean([[3.0, 4.0]]), [0.6, 0.8])
    with pytest.raises(VoxflowError, match="undefined"):
        spherical_mean([[1.0, 0.0], [-2.0, 0.0]])


def test_euclidean_kmeans_blobs_and_inertia():
    rng = np.random.default_rng(5)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = np.vstack([c + rng.normal(size=(20, 2)) for c in centres])
    labels, C = kmeans(X, 3, seed=0)
    assert adjusted_rand_score(np.repeat([0, 1, 2], 20), labels) == 1.0
    for c in range(3):
        np.testing.assert_allclose(C[c], X[labels == c].mean(0))


def test_kmeans_handles_duplicates_without_empty_clusters():
    X = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    labels, _ = spherical_kmeans(X, 3, seed=0)
    assert (np.bincount(labels, minlength=3) > 0).all()


@pytest.mark.parametrize(
    "X,k,msg",
    [
        (np.ones((3, 2)), 4, r"k=4"),
        (np.ones((3, 2)), 0, r"k=0"),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), 1, r"row 1 has zero norm"),
        (np.array([[1.0, np.nan]]), 1, r"row 0 has non-finite"),
        (np.ones(3), 1, r"\(N, D\)"),
    ],
)
def test_spherical_kmeans_bad_input(X, k, msg):
    with pytest.raises(VoxflowError, match=msg):
        spherical_kmeans(X, k)


# ---------------------------------------------------------------- silhouette


def brute_force_silhouette(X, labels):
    Xn = unit(X)
    n = len(X)
    s = np.zeros(n)
    for i in range(n):
        dist = {}
        for c in set(labels.tolist()):
            members = [j for j in range(n) if labels[j] == c and j != i]
            if members:
                dist[c] = np.mean([1.0 - Xn[i] @ Xn[j] for j in members])
        own = labels[i]
        if own not in dist:
            continue  # singleton: s = 0
        a = dist[own]
        b = min(v for c, v in dist.items() if c != own)
        s[i] = (b - a) / max(a, b)
    return s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silhouette_matches_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(25, 6)) * rng.uniform(0.5, 3.0, size=(25, 1))
    labels = rng.integers(0, 3, size=25)
    labels[0] = 7  # a singleton cluster
    np.testing.assert_allclose(cosine_silhouette_samples(X, labels), brute_force_silhouette(X, labels), atol=1e-12)
    assert cosine_silhouette(X, labels) == pytest.approx(silhouette_score(X, labels, metric="cosine"), abs=1e-12)


def test_silhouette_known_answer_and_errors():
    # Two tight antipodal pairs: a = 0, b = 2 -> s = 1 everywhere.
    X = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    assert cosine_silhouette(X, [0, 0, 1, 1]) == pytest.approx(1.0)
    with pytest.raises(VoxflowError, match="2 <= number of clusters"):
        cosine_silhouette(X, [0, 0, 0, 0])


# ---------------------------------------------------------------- speaker cleaning


def make_segments(spk_sizes):
    rows = []
    for spk, n in spk_sizes:
        for i in range(n):
            rows.append({"utt_id": f"{spk}/u{i // 5}", "spk_id": spk, "start_s": float(i % 5), "end_s": float(i % 5) + 2})
    return pd.DataFrame(rows)


def test_cleaning_excludes_planted_minority_only():
    rng = np.random.default_rng(10)
    d = 32
    mu = directions(rng, 5, d)
    planted = cloud(rng, mu[0], 80, 0.2), cloud(rng, mu[1], 20, 0.2)  # 20% from another direction
    homogeneous = cloud(rng, mu[2], 100, 0.5)
    balanced = cloud(rng, mu[3], 50, 0.2), cloud(rng, mu[4], 50, 0.2)
    order = rng.permutation(100)  # mix the planted rows among the speaker's rows
    spk_a = np.vstack(planted)[order]
    emb = np.vstack([spk_a, homogeneous, np.vstack(balanced), cloud(rng, mu[0], 3, 0.3)])
    seg = make_segments([("A", 100), ("B", 100), ("C", 100), ("D", 3)])

    ex, per = clean_speakers(seg, emb)

    planted_rows = np.flatnonzero(order >= 80)
    expected = seg.iloc[planted_rows].reset_index(drop=True)
    assert list(ex.columns) == ["utt_id", "spk_id", "start_s", "end_s", "reason", "silhouette", "size_g1", "size_g2"]
    pd.testing.assert_frame_equal(ex[["utt_id", "spk_id", "start_s", "end_s"]], expected[["utt_id", "spk_id", "start_s", "end_s"]])
    assert (ex["reason"] == "speaker_cleaning").all()
    assert (ex["size_g1"] == 80).all() and (ex["size_g2"] == 20).all()
    # The recorded silhouette is that of the planted split itself.
    truth = (order >= 80).astype(int)
    assert ex["silhouette"].iloc[0] == pytest.approx(silhouette_score(spk_a, truth, metric="cosine"), abs=1e-12)

    per = per.set_index("spk_id")
    assert list(per.index) == ["A", "B", "C", "D"]
    assert per.loc["A", "excluded"] and per.loc["A", "silhouette"] > 0.3
    # One homogeneous cloud: the K=2 split is unreliable.
    assert not per.loc["B", "excluded"] and per.loc["B", "silhouette"] < 0.3
    # A 50/50 split is reliable but not a majority.
    assert not per.loc["C", "excluded"] and per.loc["C", "silhouette"] > 0.3
    assert (per.loc["C", "size_g1"], per.loc["C", "size_g2"]) == (50, 50)
    # Fewer than 4 segments: skipped.
    assert not per.loc["D", "excluded"] and np.isnan(per.loc["D", "silhouette"]) and per.loc["D", "n_segments"] == 3
    assert per["n_segments"].tolist() == [100, 100, 100, 3]


def test_cleaning_exclusions_round_trip_through_manifest(tmp_path):
    rng = np.random.default_rng(11)
    mu = directions(rng, 2, 8)
    emb = np.vstack([cloud(rng, mu[0], 8, 0.1), cloud(rng, mu[1], 2, 0.1)])
    seg = make_segments([("s", 10)])
    seg.index = np.arange(110, 100, -1)  # rows are matched to embeddings by position, not by label
    ex, _ = clean_speakers(seg, emb)
    assert ex["start_s"].tolist() == [3.0, 4.0] and ex["utt_id"].tolist() == ["s/u1", "s/u1"]
    write_table(ex, tmp_path / "ex.parquet", "exclusions")
    back = read_table(tmp_path / "ex.parquet", "exclusions")
    pd.testing.assert_frame_equal(back, ex)


@pytest.mark.parametrize("n_g1,expected", [(6, False), (7, True)])
def test_cleaning_majority_boundary_is_strict(n_g1, expected):
    # |G1| > 0.6 |G1 u G2| with 10 samples: 6 is not enough, 7 is.
    rng = np.random.default_rng(12)
    mu = directions(rng, 2, 8)
    emb = np.vstack([cloud(rng, mu[0], n_g1, 0.05), cloud(rng, mu[1], 10 - n_g1, 0.05)])
    ex, per = clean_speakers(make_segments([("s", 10)]), emb)
    assert per["silhouette"].iloc[0] > 0.9
    assert (per["size_g1"].iloc[0], per["size_g2"].iloc[0]) == (n_g1, 10 - n_g1)
    assert bool(per["excluded"].iloc[0]) is expected
    assert len(ex) == (10 - n_g1 if expected else 0)


def test_cleaning_silhouette_boundary_is_strict():
    rng = np.random.default_rng(13)
    mu = directions(rng, 2, 8)
    emb = np.vstack([cloud(rng, mu[0], 16, 0.3), cloud(rng, mu[1], 4, 0.3)])
    seg = make_segments([("s", 20)])
    _, per = clean_speakers(seg, emb, min_silhouette=-1.0)
    phi = float(per["silhouette"].iloc[0])
    assert per["excluded"].iloc[0] and per["size_g1"].iloc[0] == 16
    _, at = clean_speakers(seg, emb, min_silhouette=phi)
    assert not at["excluded"].iloc[0]
    _, below = clean_speakers(seg, emb, min_silhouette=np.nextafter(phi, -1.0))
    assert below["excluded"].iloc[0]


def test_cleaning_four_segments_processed_and_identical_embeddings_kept():
    seg = make_segments([("four", 4), ("same", 6)])
    emb = np.vstack([unit([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]]), np.tile([0.0, 0.0, 1.0], (6, 1))])
    ex, per = clean_speakers(seg, emb, majority=0.5)
    per = per.set_index("spk_id")
    # 3 identical vs 1 orthogonal: s = 1 for the three, 0 for the singleton -> 0.75 > 0.3; 3 > 0.5 * 4.
    assert per.loc["four", "excluded"] and per.loc["four", "silhouette"] == pytest.approx(0.75)
    assert ex["spk_id"].tolist() == ["four"] and ex["start_s"].tolist() == [3.0]
    # All samples identical: any split has a = b = 0, so silhouette 0; nothing excluded.
    assert not per.loc["same", "excluded"] and per.loc["same", "silhouette"] == 0.0


def test_cleaning_bad_input():
    seg = make_segments([("s", 5)])
    with pytest.raises(VoxflowError, match="spk_id"):
        clean_speakers(seg.drop(columns="spk_id"), np.ones((5, 3)))
    with pytest.raises(VoxflowError, match=r"\(5, D\)"):
        clean_speakers(seg, np.ones((4, 3)))
    bad = np.ones((5, 3))
    bad[2] = 0.0
    with pytest.raises(VoxflowError, match="speaker 's'"):
        clean_speakers(seg, bad)
    with pytest.raises(VoxflowError, match="majority"):
        clean_speakers(seg, np.ones((5, 3)), majority=1.5)


# ---------------------------------------------------------------- spectral clustering


@pytest.mark.parametrize("k,sizes", [(2, [30, 45]), (3, [25, 40, 15]), (4, [20, 35, 25, 40])])
def test_spectral_recovers_number_and_labels(k, sizes):
    rng = np.random.default_rng(20 + k)
    mu = directions(rng, k, 32)
    X = np.vstack([cloud(rng, m, n, 0.2) for m, n in zip(mu, sizes)])
    truth = np.repeat(np.arange(k), sizes)
    perm = rng.permutation(len(X))
    labels = spectral_cluster(X[perm], seed=0)
    assert len(set(labels.tolist())) == k
    assert adjusted_rand_score(truth[perm], labels) == 1.0
    # Labels are numbered by first appearance.
    _, first = np.unique(labels, return_index=True)
    assert np.all(np.diff(first) > 0)


def test_spectral_num_speakers_and_bounds():
    rng = np.random.default_rng(30)
    mu = directions(rng, 4, 16)
    X = np.vstack([cloud(rng, m, 20, 0.2) for m in mu])
    assert len(set(spectral_cluster(X, num_speakers=2).tolist())) == 2
    # Four disconnected groups: the gaps below k=4 are all ~0, so only the bound is certain.
    assert len(set(spectral_cluster(X, max_speakers=3).tolist())) <= 3
    assert len(set(spectral_cluster(X, min_speakers=5).tolist())) >= 5
    assert len(set(spectral_cluster(X).tolist())) == 4


def test_spectral_tiny_inputs():
    X = unit([[1.0, 0.0], [0.0, 1.0]])
    assert spectral_cluster(X[:0]).tolist() == []
    assert spectral_cluster(X[:1]).tolist() == [0]
    assert spectral_cluster(X).tolist() == [0, 0]
    assert spectral_cluster(X, num_speakers=2).tolist() == [0, 1]
    assert spectral_cluster(X, min_speakers=2).tolist() == [0, 1]
    X3 = unit([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])
    assert spectral_cluster(X3, num_speakers=2).tolist() == [0, 0, 1]
    with pytest.raises(VoxflowError, match="min_speakers"):
        spectral_cluster(X3, min_speakers=3, max_speakers=2)


def test_pruned_affinity_against_brute_force():
    rng = np.random.default_rng(31)
    X = rng.normal(size=(40, 5))
    A = pruned_affinity(X, p_pruning=0.2, min_neighbors=1)  # keep ceil(0.2 * 40) = 8 neighbours per row
    Xn = unit(X)
    S = Xn @ Xn.T
    B = np.zeros((40, 40))
    for i in range(40):
        others = [j for j in range(40) if j != i]
        for j in sorted(others, key=lambda j: -S[i, j])[:8]:
            B[i, j] = 1.0
    np.testing.assert_array_equal(A, 0.5 * (B + B.T))
    # Few segments: at most N // 3 neighbours; here 10 // 3 = 3.
    A10 = pruned_affinity(X[:10])
    assert (np.count_nonzero(A10 == 1.0, axis=1) + np.count_nonzero(A10 == 0.5, axis=1) >= 3).all()
    assert np.diag(A10).sum() == 0.0 and np.allclose(A10, A10.T)


def test_estimate_num_speakers_eigengap():
    vals = np.array([0.0, 0.0, 0.0, 5.0, 6.0, 7.0])
    assert estimate_num_speakers(vals, 1, 10) == 3
    assert estimate_num_speakers(vals, 1, 2) == 1  # gaps 0, 0: the first wins
    assert estimate_num_speakers(vals, 4, 10) == 4  # gaps from k=4: 1, 1
    assert estimate_num_speakers(np.array([0.0, 3.0, 3.5]), 1, 10) == 1


def test_spectral_sparse_eigensolver_matches_dense(monkeypatch):
    import voxflow.cluster.spectral as spectral

    rng = np.random.default_rng(32)
    mu = directions(rng, 3, 16)
    X = np.vstack([cloud(rng, m, n, 0.2) for m, n in zip(mu, [40, 60, 50])])
    A = pruned_affinity(X, sparse=True)
    dense_vals, _ = spectral._smallest_eigh(A, 6, seed=0)
    dense_labels = spectral_cluster(X)
    monkeypatch.setattr(spectral, "DENSE_MAX", 10)
    sparse_vals, _ = spectral._smallest_eigh(A, 6, seed=0)
    np.testing.assert_allclose(sparse_vals, dense_vals, atol=1e-8)
    np.testing.assert_array_equal(spectral_cluster(X), dense_labels)
    np.testing.assert_array_equal(dense_labels, np.repeat([0, 1, 2], [40, 60, 50]))
