"""Embeddings tables at scale: written without per-row objects, read one row group at a time."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voxflow.data import manifests
from voxflow.data.manifests import read_embeddings, write_embeddings
from voxflow.errors import VoxflowError


def test_round_trip_over_several_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(manifests, "EMBEDDING_ROW_GROUP", 7)
    rng = np.random.default_rng(0)
    m = rng.standard_normal((30, 5)).astype(np.float32)
    ids = [f"u{i}" for i in range(30)]
    write_embeddings(ids, m[:, :], "model.pt", tmp_path / "e.parquet", spk_id=[f"s{i % 4}" for i in range(30)],
                     start_s=np.arange(30) * 0.5)
    assert pq.ParquetFile(tmp_path / "e.parquet").num_row_groups == 5
    back_ids, back, df = read_embeddings(tmp_path / "e.parquet")
    assert back_ids == ids and back.dtype == np.float32
    np.testing.assert_array_equal(back, m)
    assert list(df.columns) == ["utt_id", "model", "spk_id", "start_s"]
    _, again, few = read_embeddings(tmp_path / "e.parquet", columns=["spk_id"])
    np.testing.assert_array_equal(again, m)
    assert list(few.columns) == ["utt_id", "spk_id"] and few.spk_id.tolist()[:5] == ["s0", "s1", "s2", "s3", "s0"]


def test_float64_and_strided_input_are_stored_as_float32(tmp_path):
    m = np.arange(24, dtype=np.float64).reshape(6, 4)[:, ::2]  # not contiguous
    write_embeddings(list("abcdef"), m, "m", tmp_path / "e.parquet")
    np.testing.assert_array_equal(read_embeddings(tmp_path / "e.parquet")[1], m.astype(np.float32))


def test_bad_tables_are_named(tmp_path):
    with pytest.raises(VoxflowError, match="not found"):
        read_embeddings(tmp_path / "none.parquet")
    (tmp_path / "junk.parquet").write_text("no parquet")
    with pytest.raises(VoxflowError, match="junk.parquet: not a readable Parquet"):
        read_embeddings(tmp_path / "junk.parquet")
    pq.write_table(pa.table({"utt_id": ["a"], "model": ["m"], "embedding": [[1.0, 2.0]]}), tmp_path / "var.parquet")
    with pytest.raises(VoxflowError, match="var.parquet: column 'embedding' must be fixed_size_list"):
        read_embeddings(tmp_path / "var.parquet")
    write_embeddings(["a"], np.ones((1, 3)), "m", tmp_path / "e.parquet")
    with pytest.raises(VoxflowError, match=r"lacks column\(s\) \['spk_id'\]"):
        read_embeddings(tmp_path / "e.parquet", columns=["spk_id"])
    arr = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(4, np.float32)), 2)
    arr = pa.FixedSizeListArray.from_arrays(arr.values, 2, mask=pa.array([False, True]))
    pq.write_table(pa.table({"utt_id": ["a", "b"], "model": ["m", "m"], "embedding": arr}), tmp_path / "null.parquet")
    with pytest.raises(VoxflowError, match="null.parquet: column 'embedding' has 1 null row"):
        read_embeddings(tmp_path / "null.parquet")
    with pytest.raises(VoxflowError, match=r"must be \(N, D\)"):
        write_embeddings(["a", "b"], np.ones((3, 2)), "m", tmp_path / "x.parquet")
