"""Score a trial list file batch by batch, so that the score job's memory per trial stays small.

Two passes over the trial Parquet in record batches: the first looks every id up (unknown or missing ids make one
error naming the file, with the counts of the whole list, before anything is scored), checks the labels and keeps
each trial's two embedding rows; the cohort statistics of the embeddings used are then computed once; the second
pass scores each batch and appends it to the scores Parquet (a temporary sibling, renamed when complete). Besides
the embeddings, what is kept per trial is its two rows (int32), its float64 score and int8 label (the metrics'
input): 17 bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from voxflow.backend.pairs import check_unique, missing_values_error, unknown_ids_error
from voxflow.backend.recipe import backend_scorer
from voxflow.data.manifests import READ_BUFFER, SCHEMAS, read_embeddings
from voxflow.errors import VoxflowError
from voxflow.utils.atomic import atomic_path

TRIAL_BATCH = 65_536  # trials per batch: its ids, rows and scores take a few MB
ID_COLUMNS = {"enroll_id": "enroll", "test_id": "test"}
SCORES_SCHEMA = pa.schema(list(SCHEMAS["scores"].items()))


def open_trials(path: str | os.PathLike) -> pq.ParquetFile:
    """The trial Parquet, checked to exist, parse and have the trials kind's columns."""
    p = Path(path)
    if not p.is_file():
        raise VoxflowError(f"{p}: trials manifest not found")
    try:
        pf = pq.ParquetFile(p, buffer_size=READ_BUFFER, pre_buffer=False)  # page by page, not whole row groups
    except (pa.ArrowInvalid, OSError) as exc:
        raise VoxflowError(f"{p}: not a readable Parquet file: {exc}") from exc
    names = pf.schema_arrow.names
    missing = [c for c in SCHEMAS["trials"] if c not in names]
    if missing:
        raise VoxflowError(f"{p}: trials table lacks column(s) {missing}; has {names}")
    return pf


def trial_batches(pf: pq.ParquetFile, path, batch_rows: int = TRIAL_BATCH, columns=tuple(SCHEMAS["trials"])):
    """(first row, record batch of ``columns``) over the whole file."""
    offset = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=list(columns), use_threads=False):
            yield offset, batch
            offset += batch.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise VoxflowError(f"{path}: not a readable Parquet file: {exc}") from exc


def batch_labels(column: pa.Array, path, offset: int) -> np.ndarray:
    """A batch's labels as int8, checked to be 0 or 1 (the file and row named otherwise)."""
    values = column.to_numpy(zero_copy_only=False)
    bad = ~np.isin(values, (0, 1)) if column.null_count == 0 else column.is_null().to_numpy(zero_copy_only=False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise VoxflowError(f"{path}: labels must be 0 or 1, found {column[i].as_py()!r} in row {offset + i}")
    return values.astype(np.int8)


class TrialRows:
    """Embedding rows of the trials' ids, one batch at a time (a hash lookup in Arrow: no Python string per id).
    Unknown and missing ids are collected over the whole file (``rows`` gives -1 for them) and raised by
    ``check`` as one error naming the file."""

    def __init__(self, ids, path):
        check_unique(ids if isinstance(ids, pd.Index) else pd.Index(ids))
        self.ids = pa.array(ids, pa.string())
        self.path = path
        self.first_missing: dict[str, int] = {}
        self.unknown: dict[str, dict] = {what: {} for what in ID_COLUMNS.values()}

    def rows(self, column: pa.Array, what: str, offset: int) -> np.ndarray:
        """Row (int32) of each id of a batch's ``column``; ``offset``: the batch's first row in the file."""
        column = id_strings(column, f"{self.path}: trial column {what}_id")
        pos = pc.index_in(column, value_set=self.ids)
        if pos.null_count:
            self._note_bad(column, pos, what, offset)
        return pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)

    def _note_bad(self, column: pa.Array, pos: pa.Array, what: str, offset: int) -> None:
        missing = column.is_null().to_numpy(zero_copy_only=False)
        if missing.any() and what not in self.first_missing:
            self.first_missing[what] = offset + int(np.flatnonzero(missing)[0])
        unknown = column.filter(pc.and_(pos.is_null(), column.is_valid())).to_pylist()
        seen, counts = self.unknown[what], pd.Series(unknown).value_counts(sort=False)
        for value in pd.unique(pd.Series(unknown)):  # in order of appearance
            seen[value] = seen.get(value, 0) + int(counts[value])

    def check(self) -> None:
        """Raise the first of the id errors (enroll before test; missing before unknown) for the file."""
        for what in ID_COLUMNS.values():
            if what in self.first_missing:
                raise VoxflowError(f"{self.path}: {missing_values_error(what, self.first_missing[what])}")
            if self.unknown[what]:
                raise VoxflowError(f"{self.path}: {unknown_ids_error(what, self.unknown[what])}")


def id_strings(column: pa.Array, what: str) -> pa.Array:
    """An id column (string, large string, dictionary of either, or all null) as a string array."""
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
        raise VoxflowError(f"{what} must hold string ids, got {column.type}")
    return column if column.type == pa.string() else column.cast(pa.string())


def score_trial_file(arrays: dict, trials_path, embeddings_path, name: str, scores_path, where: str = "",
                     batch_rows: int = TRIAL_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Score the trial list ``trials_path`` against the embeddings table ``embeddings_path`` with the fitted
    back-end ``arrays``; write the scores table (enroll_id, test_id, score, label, backend ``name``; the trials'
    order) to ``scores_path`` atomically and return (float64 scores, int8 labels) for the metrics. ``where``
    names the back-end file in its errors."""
    if batch_rows < 1:
        raise VoxflowError(f"trials per batch must be at least 1, got {batch_rows}")
    pf = open_trials(trials_path)
    ids, matrix, _ = read_embeddings(embeddings_path, columns=[])
    trial_rows = TrialRows(ids, trials_path)
    del ids
    n = pf.metadata.num_rows
    rows = {what: np.empty(n, dtype=np.int32) for what in ID_COLUMNS.values()}  # 8 bytes per trial
    labels = np.empty(n, dtype=np.int8)
    for offset, batch in trial_batches(pf, trials_path, batch_rows):
        end = offset + batch.num_rows
        for column, what in ID_COLUMNS.items():
            rows[what][offset:end] = trial_rows.rows(batch.column(column), what, offset)
        labels[offset:end] = batch_labels(batch.column("label"), trials_path, offset)
    trial_rows.check()
    used = np.zeros(len(matrix), dtype=bool)
    for r in rows.values():
        used[r] = True
    scorer = backend_scorer(arrays, matrix, np.flatnonzero(used), where, consume=True)
    del matrix, used  # the scorer holds what it needs (cosine: the normalised embeddings, written over them)
    scores = np.empty(n, dtype=np.float64)
    with atomic_path(scores_path) as tmp, pq.ParquetWriter(tmp, SCORES_SCHEMA) as writer:
        for offset, batch in trial_batches(pf, trials_path, batch_rows, columns=list(ID_COLUMNS)):
            end = offset + batch.num_rows
            scores[offset:end] = scorer(rows["enroll"][offset:end], rows["test"][offset:end])
            writer.write_table(pa.Table.from_arrays(
                [*(id_strings(batch.column(c), c) for c in ID_COLUMNS), pa.array(scores[offset:end]),
                 pa.array(labels[offset:end].astype(np.int64)),
                 pa.repeat(pa.scalar(name, pa.string()), batch.num_rows)], schema=SCORES_SCHEMA))
    return scores, labels
