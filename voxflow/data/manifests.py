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


# Rows per Parquet row group of an embeddings table (64 MB at 256-d).
EMBEDDING_ROW_GROUP = 65_536
READ_BATCH, READ_BUFFER = 8_192, 1 << 22  # read_embeddings: rows decoded at a time; bytes per buffered page read


def _embedding_array(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """An (N, D) float32 matrix as a fixed_size_list<float32>[D] column, sharing its memory."""
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def write_embeddings(ids, matrix: np.ndarray, model: str, path: str | os.PathLike, **extra) -> None:
    """Write an (N, D) embedding matrix with its ids as an embeddings table (the matrix is not copied: a table of
    millions of segment embeddings costs little more memory than the matrix itself)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise VoxflowError(f"{path}: embeddings must be (N, D) with N={len(ids)} ids, got {matrix.shape}")
    df = pd.DataFrame({"utt_id": list(ids), "model": model, **extra})
    try:
        table = _to_arrow(df, "embeddings").append_column("embedding", _embedding_array(matrix))
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise VoxflowError(f"{path}: cannot store embeddings table: {exc}") from exc
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=EMBEDDING_ROW_GROUP)


def read_embeddings(path: str | os.PathLike, columns: list[str] | None = None) -> tuple[list[str], np.ndarray,
                                                                                       pd.DataFrame]:
    """Read an embeddings table as (ids, (N, D) float32 matrix, the other columns, or only ``columns`` of them).

    The matrix is filled a batch of rows at a time from buffered page reads, so the peak memory is the matrix plus
    a few tens of MB (reading whole row groups took 1.7x the matrix more at VoxCeleb1 size).
    """
    p = Path(path)
    if not p.is_file():
        raise VoxflowError(f"{p}: embeddings manifest not found")
    try:
        pf = pq.ParquetFile(p, buffer_size=READ_BUFFER, pre_buffer=False)
        schema = pf.schema_arrow
        wanted = [n for n in schema.names if n != "embedding" and (columns is None or n in columns or n == "utt_id")]
        df = pq.read_table(p, columns=wanted).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise VoxflowError(f"{p}: not a readable Parquet file: {exc}") from exc
    missing = [c for c in [*SCHEMAS["embeddings"], "embedding", *(columns or [])] if c not in schema.names]
    if missing:
        raise VoxflowError(f"{p}: embeddings table lacks column(s) {missing}; has {schema.names}")
    kind = schema.field("embedding").type
    if not pa.types.is_fixed_size_list(kind):
        raise VoxflowError(f"{p}: column 'embedding' must be fixed_size_list<float32>, got {kind}")
    dim = kind.list_size
    matrix = np.empty((pf.metadata.num_rows, dim), dtype=np.float32)
    start = 0
    for batch in pf.iter_batches(batch_size=READ_BATCH, columns=["embedding"], use_threads=False):
        chunk = batch.column(0)
        if chunk.null_count:
            raise VoxflowError(f"{p}: column 'embedding' has {chunk.null_count} null row(s)")
        matrix[start : start + len(chunk)] = chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        start += len(chunk)
    pa.default_memory_pool().release_unused()  # the read buffers, which the pool would otherwise keep resident
    return df["utt_id"].tolist(), matrix, df
