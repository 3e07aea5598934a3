"""Parquet data contracts between stages: one schema per kind, validated on write and read."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from voxflow.errors import VoxflowError
from voxflow.utils.atomic import atomic_path

# Required columns of each kind; extra columns are allowed and kept.
SCHEMAS: dict[str, dict[str, pa.DataType]] = {
    "utterances": {
        "utt_id": pa.string(),
        "spk_id": pa.string(),
        "session_id": pa.string(),
        "path": pa.string(),
        "sample_rate": pa.int64(),
        "num_samples": pa.int64(),
        "duration_s": pa.float64(),
    },
    "shards": {"shard_path": pa.string(), "num_utts": pa.int64(), "num_bytes": pa.int64(), "sha256": pa.string()},
    "trials": {"enroll_id": pa.string(), "test_id": pa.string(), "label": pa.int64()},
    "segments": {"utt_id": pa.string(), "start_s": pa.float64(), "end_s": pa.float64()},
    "exclusions": {
        "utt_id": pa.string(),
        "spk_id": pa.string(),
        "reason": pa.string(),
        "silhouette": pa.float64(),
        "size_g1": pa.int64(),
        "size_g2": pa.int64(),
    },
    "scores": {
        "enroll_id": pa.string(),
        "test_id": pa.string(),
        "score": pa.float64(),
        "label": pa.int64(),
        "backend": pa.string(),
    },
    "embeddings": {"utt_id": pa.string(), "model": pa.string()},  # + "embedding": fixed_size_list<float32>[D]
}


def _check_columns(df: pd.DataFrame, kind: str, where: str) -> None:
    if kind not in SCHEMAS:
        raise VoxflowError(f"unknown manifest kind {kind!r}; known: {sorted(SCHEMAS)}")
    required = list(SCHEMAS[kind]) + (["embedding"] if kind == "embeddings" else [])
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise VoxflowError(f"{where}: {kind} table lacks column(s) {missing}; has {list(df.columns)}")


def _to_arrow(df: pd.DataFrame, kind: str) -> pa.Table:
    fields, arrays = [], []
    for col in df.columns:
        if kind == "embeddings" and col == "embedding":
            mat = np.asarray(np.stack(df[col].to_numpy()) if len(df) else np.zeros((0, 0)), dtype=np.float32)
            dim = mat.shape[1] if mat.ndim == 2 else 0
            flat = pa.array(mat.reshape(-1), type=pa.float32())
            arr = pa.FixedSizeListArray.from_arrays(flat, dim)
        elif col in SCHEMAS[kind]:
            arr = pa.array(df[col].to_numpy(), type=SCHEMAS[kind][col], from_pandas=True)
        else:
            arr = pa.array(df[col], from_pandas=True)
        fields.append(pa.field(col, arr.type))
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_table(df: pd.DataFrame, path: str | os.PathLike, kind: str) -> None:
    """Validate ``df`` against the ``kind`` schema and write it to ``path`` atomically."""
    _check_columns(df, kind, str(path))
    try:
        table = _to_arrow(df.reset_index(drop=True), kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise VoxflowError(f"{path}: cannot store {kind} table: {exc}") from exc
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike, kind: str) -> pd.DataFrame:
    """Read a ``kind`` Parquet table, checking that it exists, parses and has the required columns."""
    p = Path(path)
    if not p.is_file():
        raise VoxflowError(f"{p}: {kind} manifest not found")
    try:
        df = pq.read_table(p).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise VoxflowError(f"{p}: not a readable Parquet file: {exc}") from exc
    _check_columns(df, kind, str(p))
    return df


def write_embeddings(ids, matrix: np.ndarray, model: str, path: str | os.PathLike, **extra) -> None:
    """Write an (N, D) embedding matrix with its ids as an embeddings table."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise VoxflowError(f"{path}: embeddings must be (N, D) with N={len(ids)} ids, got {matrix.shape}")
    df = pd.DataFrame({"utt_id": list(ids), "model": model, **extra})
    df["embedding"] = list(matrix)
    write_table(df, path, "embeddings")


def read_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    """Read an embeddings table as (ids, (N, D) float32 matrix, the other columns)."""
    p = Path(path)
    df = read_table(p, "embeddings")
    col = pq.read_table(p, columns=["embedding"]).column("embedding").combine_chunks()
    if not pa.types.is_fixed_size_list(col.type):
        raise VoxflowError(f"{p}: column 'embedding' must be fixed_size_list<float32>, got {col.type}")
    dim = col.type.list_size
    matrix = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
    return df["utt_id"].tolist(), matrix, df.drop(columns=["embedding"])
