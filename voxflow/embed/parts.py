"""A corpus embedded in N parts (the embed rule's scatter-gather, config ``embedding.parts``): the manifest cut into
N contiguous parts of about equal audio duration, and the parts' embedding tables joined into one, in the
manifest's order, as one job would have written it."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from voxflow.data.manifests import EMBEDDING_ROW_GROUP
from voxflow.errors import VoxflowError
from voxflow.utils.atomic import atomic_path


def part_bounds(durations, parts: int) -> list[tuple[int, int]]:
    """``[start, end)`` rows of ``parts`` contiguous parts of about equal total duration.

    Part k ends at the row boundary nearest to k/parts of the cumulative duration, so each part's audio is within
    about one utterance of the mean; no part is empty while there are at least ``parts`` rows (with fewer, the
    first parts get one row each and the rest none). Durations that are missing or negative count as the mean of
    the others (all missing: every row counts 1). Deterministic: the same manifest gives the same parts.
    """
    if parts < 1:
        raise VoxflowError(f"embedding parts: {parts}; must be at least 1")
    w = np.asarray(durations, dtype=np.float64)
    n = len(w)
    known = np.isfinite(w) & (w >= 0)
    w = np.where(known, w, w[known].mean() if known.any() else 1.0)
    if n and w.sum() <= 0:
        w = np.ones(n)
    cum = np.concatenate([[0.0], np.cumsum(w)])  # cum[i]: duration of rows [0, i)
    cuts = [0]
    for k in range(1, parts):
        if n < parts:
            cuts.append(min(k, n))
            continue
        target = cum[-1] * k / parts
        i = int(np.searchsorted(cum, target))  # first boundary at or past the target
        if i > 0 and target - cum[i - 1] <= cum[min(i, n)] - target:
            i -= 1
        cuts.append(min(max(i, cuts[-1] + 1), n - (parts - k)))
    cuts.append(n)
    return list(zip(cuts[:-1], cuts[1:]))


def split_manifest(manifest: str | os.PathLike, outputs: list[str | os.PathLike]) -> list[tuple[int, int]]:
    """Write ``manifest``'s rows in ``len(outputs)`` parts (``part_bounds`` by its duration_s), every column and
    type kept; each part written atomically. Returns the row ranges."""
    try:
        table = pq.read_table(manifest)
    except (pa.ArrowInvalid, OSError) as exc:
        raise VoxflowError(f"{manifest}: not a readable Parquet manifest: {exc}") from exc
    missing = [c for c in ("utt_id", "duration_s") if c not in table.column_names]
    if missing:
        raise VoxflowError(f"{manifest}: utterances table lacks column(s) {missing}; has {table.column_names}")
    bounds = part_bounds(table.column("duration_s").to_numpy(zero_copy_only=False), len(outputs))
    for out, (start, end) in zip(outputs, bounds):
        with atomic_path(out) as tmp:
            pq.write_table(table.slice(start, end - start), tmp)
    return bounds


def _utt_ids(path: str | os.PathLike, what: str) -> pa.Array:
    """The utt_id column of a Parquet table as one Arrow array (no Python strings: ~1 M ids cost their bytes)."""
    try:
        schema = pq.read_schema(path)
        if "utt_id" not in schema.names:
            raise VoxflowError(f"{path}: {what} lacks column utt_id; has {schema.names}")
        return pq.read_table(path, columns=["utt_id"]).column(0).combine_chunks().cast(pa.large_string())
    except (pa.ArrowInvalid, OSError) as exc:
        raise VoxflowError(f"{path}: not a readable Parquet {what}: {exc}") from exc


def _first_difference(got: pa.Array, want: pa.Array) -> int:
    n = min(len(got), len(want))
    differ = np.flatnonzero(~pc.equal(got.slice(0, n), want.slice(0, n)).to_numpy(zero_copy_only=False))
    return int(differ[0]) if len(differ) else n


def merge_parts(parts: list[str | os.PathLike], manifest: str | os.PathLike, out: str | os.PathLike) -> int:
    """Join the parts' embedding tables into ``out`` (written atomically) and return its rows.

    The parts must hold, in order, exactly the manifest's utterances in the manifest's order (what ``split_manifest``
    makes them embed); a part that does not (a stale part, another corpus) is named. The result has the parts'
    schema and row groups of ``EMBEDDING_ROW_GROUP`` rows, like a table one job writes; it is streamed: memory
    holds a few row groups (being read, pending, being written) and the ids, whatever the corpus's size. Empty
    parts (more parts than utterances) are skipped.
    """
    expected = _utt_ids(manifest, "utterances table")
    pos, schema, model = 0, None, None
    for part in parts:
        ids = _utt_ids(part, "embeddings table")
        if not ids.equals(expected.slice(pos, len(ids))):
            bad = _first_difference(ids, expected.slice(pos))
            got = ids[bad].as_py()
            want = expected[pos + bad].as_py() if pos + bad < len(expected) else "the end of the manifest"
            raise VoxflowError(f"{part}: row {bad} is {got!r}, but the manifest {manifest} has {want!r} there; "
                               "the part does not hold its share of the manifest (stale? rerun its embed job)")
        pos += len(ids)
        if not ids:
            continue
        part_schema = pq.read_schema(part)
        if schema is None:
            schema = part_schema
        elif not part_schema.equals(schema, check_metadata=True):
            raise VoxflowError(f"{part}: columns {part_schema} differ from those of {parts[0]}: {schema}")
        models = set(pq.read_table(part, columns=["model"]).column(0).unique().to_pylist())
        if model is None:
            model = models
        elif models != model:
            raise VoxflowError(f"{part}: embedded with model {sorted(models)}, the other parts with {sorted(model)}")
    if pos != len(expected):
        raise VoxflowError(f"the parts hold {pos} embeddings, the manifest {manifest} has {len(expected)} utterances")
    if schema is None:  # an empty corpus: the table its one job would write
        with atomic_path(out) as tmp:
            pq.write_table(pq.read_table(parts[0]), tmp, row_group_size=EMBEDDING_ROW_GROUP)
        return 0
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        pending: list[pa.RecordBatch] = []
        held = 0
        for part in parts:
            pf = pq.ParquetFile(part)
            if pf.metadata.num_rows == 0:
                continue
            for group in range(pf.num_row_groups):  # one row group read at a time
                batch = pf.read_row_group(group)
                pending.extend(batch.to_batches())
                held += batch.num_rows
                if held >= EMBEDDING_ROW_GROUP:
                    table = pa.Table.from_batches(pending, schema=schema)
                    full = held // EMBEDDING_ROW_GROUP * EMBEDDING_ROW_GROUP
                    writer.write_table(table.slice(0, full), row_group_size=EMBEDDING_ROW_GROUP)
                    pending, held = table.slice(full).to_batches(), held - full
        if held:
            writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=EMBEDDING_ROW_GROUP)
    return pos
