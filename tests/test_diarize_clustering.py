"""UMAP + HDBSCAN clustering, AHC's small-cluster reassignment, block-wise diarization of a file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voxflow.cluster.ahc import ahc_cluster
from voxflow.cluster.umap_hdbscan import umap_hdbscan_cluster
from voxflow.demo.speech import render_speech
from voxflow.demo.voices import random_voice
from voxflow.diarize.pipeline import diarize, diarize_file

SR = 16000


def blobs(sizes, dim=32, spread=0.15, seed=0):
    """Embeddings around random directions, one blob per entry of ``sizes``, in blob order; and the true labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    X = centres[truth] / np.linalg.norm(centres[truth], axis=1, keepdims=True)
    return X + spread * rng.normal(size=X.shape) / np.sqrt(dim), truth


def same_partition(a, b) -> bool:
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


def test_umap_hdbscan_recovers_speakers_and_honours_counts():
    X, truth = blobs([40, 40, 40])
    order = np.random.default_rng(1).permutation(len(X))  # interleaved, as turns are
    X, truth = X[order], truth[order]
    assert same_partition(umap_hdbscan_cluster(X), truth)
    assert same_partition(umap_hdbscan_cluster(X, num_speakers=3), truth)
    assert len(set(umap_hdbscan_cluster(X, max_speakers=2).tolist())) == 2  # merged down
    assert len(set(umap_hdbscan_cluster(X, num_speakers=2).tolist())) == 2
    assert len(set(umap_hdbscan_cluster(X, num_speakers=4).tolist())) == 4  # spectral with 4


def test_umap_hdbscan_short_input_falls_back_to_spectral():
    X, truth = blobs([5, 5])
    assert same_partition(umap_hdbscan_cluster(X), truth)
    assert umap_hdbscan_cluster(X[:1]).tolist() == [0]
    assert len(umap_hdbscan_cluster(X, num_speakers=3, n_neighbors=16)) == 10


def test_ahc_outlier_singleton_joins_nearest_cluster_with_fixed_count():
    e = np.eye(32)
    centres = np.stack([e[0], 0.6 * e[0] + 0.8 * e[1]])  # two speakers at cosine distance 0.4
    rng = np.random.default_rng(3)
    truth = np.repeat([0, 1], 12)
    X = centres[truth] + 0.03 * rng.normal(size=(24, 32))
    X, truth = np.vstack([X, 0.3 * e[0] + 0.95 * e[2]]), np.append(truth, 0)  # an outlier, nearest speaker 0
    plain = ahc_cluster(X, num_speakers=2, min_cluster_size=1)
    assert np.bincount(plain).min() == 1  # the outlier alone is a "speaker"
    assert same_partition(ahc_cluster(X, num_speakers=2), truth)
    assert same_partition(ahc_cluster(X, threshold=0.3), truth)  # estimated count: the singleton is no speaker
    assert len(set(ahc_cluster(X[:3], num_speakers=2).tolist())) == 2  # too few to be large: plain cut


def test_blockwise_file_gives_the_whole_file_turns(tmp_path):
    rng = np.random.default_rng(0)
    voices = [random_voice(k, rng) for k in "ab"]
    pieces, wav = [], [np.zeros(SR // 2)]
    for t in range(6):
        wav += [0.1 * render_speech(voices[t % 2], int(2.5 * SR), SR, rng), np.zeros(SR // 2)]
    x = (np.concatenate(wav) + 1e-4 * rng.normal(size=sum(map(len, wav)))).astype(np.float32)
    path = tmp_path / "talk.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    embed = lambda ws: np.stack([[np.mean(np.abs(w)), np.mean(np.abs(np.diff(w))) * 10, 0.01] for w in ws])
    whole = diarize(sf.read(path, dtype="float32")[0], SR, "talk", embed, num_speakers=2)
    blocks = diarize_file(path, SR, "talk", embed, num_speakers=2, chunk=3)
    assert len(whole) > 1
    assert whole.equals(blocks)
    split = diarize_file(path, SR, "talk", embed, num_speakers=2, chunk=3, block_s=len(x) / SR / 2 + 0.01)
    assert split.speaker.nunique() == 2 and abs(split.duration.sum() - whole.duration.sum()) < 0.5


def test_spectral_auto_pruning_recovers_separated_clusters():
    from voxflow.cluster.spectral import spectral_cluster

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 16))
    truth = np.repeat(np.arange(3), [30, 20, 40])
    X = centres[truth] + 0.1 * rng.normal(size=(90, 16))
    labels = spectral_cluster(X, p_pruning="auto", max_speakers=8)
    assert len(np.unique(labels)) == 3 and (pd.crosstab(labels, truth).to_numpy() > 0).sum() == 3
    assert len(np.unique(spectral_cluster(X, p_pruning="auto", num_speakers=2))) == 2
