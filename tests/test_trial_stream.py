"""The score job streams its trial list: batch by batch it gives today's whole-table scores table (same columns,
dtypes, order and values), for every back-end type and norm, in the library and through scripts/backend.py;
bad trial rows give one clear error naming the file."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import voxflow.backend.pairs as pairs
from voxflow.backend.cosine import cosine_space
from voxflow.backend.pairs import lookup
from voxflow.backend.recipe import fit_backend, save_backend, score_backend
from voxflow.backend.trial_stream import score_trial_file
from voxflow.data.manifests import read_table, write_embeddings, write_table
from voxflow.errors import VoxflowError
from voxflow.metrics.verification import summarize

REPO = Path(__file__).resolve().parents[1]
BATCH = 7  # trials per batch: 300 trials run in 43 batches
SPACE_BLOCK = 23  # embeddings per block when a space is built: 120 embeddings in 6 blocks
CONFIGS = {
    "cosine": {"type": "cosine"},
    "cosine_mean": {"type": "cosine", "mean_subtraction": True},
    "asnorm": {"type": "cosine", "mean_subtraction": True, "norm": "asnorm", "top_n": 5},
    "snorm": {"type": "cosine", "norm": "snorm"},
    "plda": {"type": "plda", "lda_dim": 8},
    "plda_asnorm": {"type": "plda", "lda_dim": None, "norm": "asnorm", "top_n": 4},
    "plda_snorm": {"type": "plda", "lda_dim": 8, "norm": "snorm"},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """120 trial-corpus embeddings (16-d, 12 speakers), 300 labelled trials, and a training set of 10 speakers."""
    tmp = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((12, 16)) * 2
    spk = rng.integers(0, 12, 120)
    x = (centres[spk] + rng.standard_normal((120, 16))).astype(np.float32)
    ids = np.array([f"id{s:05d}/u{k:04d}" for k, s in enumerate(spk)], dtype=object)
    write_embeddings(ids, x, "m", tmp / "emb.parquet")
    e, t = rng.integers(0, 120, 300), rng.integers(0, 120, 300)
    trials = pd.DataFrame({"enroll_id": ids[e], "test_id": ids[t], "label": (spk[e] == spk[t]).astype(np.int64)})
    write_table(trials, tmp / "trials.parquet", "trials")
    train_spk = np.repeat(np.arange(10), 12)
    train = (centres[train_spk] + rng.standard_normal((120, 16))).astype(np.float32)
    return tmp, ids, x, trials, train, [f"s{k}" for k in train_spk]


def whole_table(arrays, corpus, name):
    """Today's path: the whole trial table in memory, each space built in one piece."""
    _, ids, x, trials, _, _ = corpus
    return score_backend(arrays, trials, list(ids), x.copy(), name)


@pytest.mark.parametrize("name", CONFIGS)
def test_batches_give_the_whole_table_scores(corpus, name, tmp_path, monkeypatch):
    tmp, _, _, _, train, train_spk = corpus
    arrays = fit_backend(CONFIGS[name], train, train_spk)
    ref = whole_table(arrays, corpus, name)
    monkeypatch.setattr(pairs, "SPACE_BLOCK", SPACE_BLOCK)
    scores, labels = score_trial_file(arrays, tmp / "trials.parquet", tmp / "emb.parquet", name,
                                      tmp_path / "s.parquet", batch_rows=BATCH)
    got = pq.read_table(tmp_path / "s.parquet")
    assert got.schema.equals(pa.schema([("enroll_id", pa.string()), ("test_id", pa.string()), ("score", pa.float64()),
                                        ("label", pa.int64()), ("backend", pa.string())]))
    assert got.num_rows == 300 and pq.ParquetFile(tmp_path / "s.parquet").metadata.num_row_groups == 43
    table = got.to_pandas()
    for col in ("enroll_id", "test_id", "label", "backend"):
        assert table[col].tolist() == ref[col].tolist(), col
    assert np.array_equal(table.score.to_numpy(), scores) and np.array_equal(labels, ref.label.to_numpy())
    assert labels.dtype == np.int8 and scores.dtype == np.float64
    if CONFIGS[name]["type"] == "cosine":  # row-wise numpy arithmetic only: the same bits in any blocking
        assert np.array_equal(scores, ref.score.to_numpy())
        assert summarize(scores, labels) == summarize(ref.score.to_numpy(), ref.label.to_numpy())
    else:  # the float64 PLDA offsets, a BLAS product, on blocks of 23 rows: measured max relative difference
        # 3e-15 (identical from 64-row blocks on; the job's blocks are 16,384 rows); bound 1e-9
        np.testing.assert_allclose(scores, ref.score.to_numpy(), rtol=1e-9, atol=0)
        assert summarize(scores, labels) == pytest.approx(summarize(ref.score.to_numpy(), ref.label), rel=1e-9)


def test_cosine_space_consumes_the_matrix_in_place(corpus, monkeypatch):
    x = corpus[2]
    monkeypatch.setattr(pairs, "SPACE_BLOCK", SPACE_BLOCK)
    work = x.copy()
    space = pairs.space_by_blocks(cosine_space, work, consume=True)
    assert space.z is work and np.array_equal(work, cosine_space(x).z)
    kept = x.copy()
    assert pairs.space_by_blocks(cosine_space, kept).z is not kept and np.array_equal(kept, x)


def run_score(tmp, model, cfg, trials, scores, *extra):
    return subprocess.run([sys.executable, str(REPO / "scripts/backend.py"), "score", "--trials", str(trials),
                           "--embeddings", str(tmp / "emb.parquet"), "--model", str(model), "--config",
                           json.dumps(cfg), "--name", "b", "--scores", str(scores), "--metrics",
                           str(scores.with_suffix(".json")), *extra], capture_output=True, text=True)


def test_score_script_streams_to_the_whole_table_result(corpus, tmp_path):
    tmp, _, _, _, train, train_spk = corpus
    cfg = CONFIGS["asnorm"]
    arrays = fit_backend(cfg, train, train_spk)
    save_backend(arrays, tmp_path / "b.npz")
    proc = run_score(tmp, tmp_path / "b.npz", cfg, tmp / "trials.parquet", tmp_path / "s.parquet",
                     "--batch-trials", "7")
    assert proc.returncode == 0, proc.stderr
    ref = whole_table(arrays, corpus, "b")
    write_table(ref, tmp_path / "ref.parquet", "scores")  # today's writer
    assert pq.read_table(tmp_path / "s.parquet").equals(pq.read_table(tmp_path / "ref.parquet"))
    metrics = json.loads((tmp_path / "s.json").read_text())
    assert {k: metrics[k] for k in summarize(ref.score, ref.label)} == summarize(ref.score, ref.label)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npz", "ref.parquet", "s.json", "s.parquet"]


def test_bad_trial_rows_name_the_file_with_the_whole_lists_counts(corpus, tmp_path):
    tmp, ids, _, trials, train, train_spk = corpus
    save_backend(fit_backend(CONFIGS["cosine"], train, train_spk), tmp_path / "b.npz")
    bad = trials.copy()
    bad.loc[[3, 150, 299], "test_id"] = ["ghost/1", "ghost/2", "ghost/1"]  # in the first, a middle and the last batch
    write_table(bad, tmp_path / "bad.parquet", "trials")
    with pytest.raises(VoxflowError) as today:
        lookup(pd.Index(list(ids)), bad.test_id, "test")
    assert "2 test id(s) have no embedding (used in 3 trials), e.g. 'ghost/1', 'ghost/2'" in str(today.value)
    proc = run_score(tmp, tmp_path / "b.npz", CONFIGS["cosine"], tmp_path / "bad.parquet", tmp_path / "s.parquet",
                     "--batch-trials", "7")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: {tmp_path / 'bad.parquet'}: {today.value}" in proc.stderr
    assert not (tmp_path / "s.parquet").exists() and not list(tmp_path.glob(".s.parquet*"))


@pytest.mark.parametrize("change, message", [
    (lambda t: t.assign(enroll_id=t.enroll_id.where(t.index != 40, None)),
     r"enroll ids contain missing values \(row 40\)"),
    (lambda t: t.assign(label=t.label.where(t.index != 61, 2)), r"labels must be 0 or 1, found 2 in row 61"),
    (lambda t: t.drop(columns="label"), r"trials table lacks column\(s\) \['label'\]"),
])
def test_other_bad_trial_files_are_named(corpus, tmp_path, change, message):
    tmp, _, _, trials, train, train_spk = corpus
    arrays = fit_backend(CONFIGS["cosine"], train, train_spk)
    pq.write_table(pa.Table.from_pandas(change(trials), preserve_index=False), tmp_path / "bad.parquet")
    with pytest.raises(VoxflowError, match=rf"^{tmp_path / 'bad.parquet'}: {message}"):
        score_trial_file(arrays, tmp_path / "bad.parquet", tmp / "emb.parquet", "b", tmp_path / "s.parquet",
                         batch_rows=BATCH)
    assert not (tmp_path / "s.parquet").exists()


def test_categorical_and_large_string_ids_are_scored_as_strings(corpus, tmp_path):
    tmp, _, _, trials, train, train_spk = corpus
    arrays = fit_backend(CONFIGS["cosine"], train, train_spk)
    ref = whole_table(arrays, corpus, "b")
    table = pa.table({"enroll_id": pa.array(trials.enroll_id.astype("category")),
                      "test_id": pa.array(trials.test_id, pa.large_string()), "label": trials.label.astype(np.int8)})
    pq.write_table(table, tmp_path / "t.parquet")
    score_trial_file(arrays, tmp_path / "t.parquet", tmp / "emb.parquet", "b", tmp_path / "s.parquet", batch_rows=BATCH)
    got = read_table(tmp_path / "s.parquet", "scores")
    pd.testing.assert_frame_equal(got, ref)


def test_an_empty_trial_list_gives_an_empty_scores_table(corpus, tmp_path):
    tmp, _, _, trials, train, train_spk = corpus
    write_table(trials.iloc[:0], tmp_path / "t.parquet", "trials")
    arrays = fit_backend(CONFIGS["asnorm"], train, train_spk)
    scores, labels = score_trial_file(arrays, tmp_path / "t.parquet", tmp / "emb.parquet", "b", tmp_path / "s.parquet")
    assert len(scores) == len(labels) == 0 and read_table(tmp_path / "s.parquet", "scores").empty
