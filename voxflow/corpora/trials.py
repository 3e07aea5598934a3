"""Verification trial lists in the VoxCeleb (``1 enroll.wav test.wav``), Kaldi (``enroll test target``) and
CN-Celeb (``id00800-enroll test/id00800-singing-01-001.wav 1``) formats."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from voxflow.corpora.text_tables import read_keyed_table
from voxflow.errors import VoxflowError
from voxflow.utils.atomic import write_text_atomic

FORMATS = ("voxceleb", "kaldi", "cnceleb")
AUDIO_EXTENSIONS = (".wav", ".flac", ".m4a")
_VOX_LABELS = {"1": 1, "0": 0}
_KALDI_LABELS = {"target": 1, "nontarget": 0}


def _strip_audio_ext(paths: pd.Series) -> pd.Series:
    """Strip a trailing audio extension (case-insensitive) from each path."""
    pattern = r"\.(?:" + "|".join(e.lstrip(".") for e in AUDIO_EXTENSIONS) + r")$"
    return paths.str.replace(f"(?i){pattern}", "", regex=True)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise VoxflowError(f"unknown trial list format {fmt!r}; known: {list(FORMATS)}")


def read_enroll_list(path: str | os.PathLike) -> dict[str, str]:
    """CN-Celeb ``eval/lists/enroll.lst`` (``<enrolment id> <path under eval/>``) as {id: path without extension}."""
    table = read_keyed_table(path, 2, 2, "'<enrolment id> <audio path>'", "enrolment list")
    paths = _strip_audio_ext(pd.Series([rest[0] for rest, _ in table.values()], dtype="str"))
    return dict(zip(table, paths))


def read_trial_list(path: str | os.PathLike, fmt: str = "voxceleb", known_ids: set | None = None,
                    enroll_list: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read a trial list as a DataFrame (enroll_id, test_id, label) with label 1 (target) / 0 (nontarget).

    VoxCeleb lines are ``<0|1> <enroll path> <test path>``; ids are the paths with a trailing
    .wav/.flac/.m4a stripped. Kaldi lines are ``<enroll> <test> <target|nontarget>``. CN-Celeb lines
    (``eval/lists/trials.lst``) are ``<enrolment id> <test path> <0|1>``: the test id is the path
    without extension (``test/id00800-singing-01-001``) and the enrolment id is mapped to its audio
    through ``enroll_list`` (default: ``enroll.lst`` beside the trial list when present, else
    ``enroll/<enrolment id>``), i.e. ids of a manifest of CN-Celeb's ``eval/`` directory. Blank lines
    are ignored. A malformed line, an enrolment id missing from the enrolment list, or an id absent
    from ``known_ids`` (when given), raises VoxflowError naming the file and line.
    """
    _check_format(fmt)
    p = Path(path)
    if not p.is_file():
        raise VoxflowError(f"{p}: trial list not found")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise VoxflowError(f"{p}: cannot read trial list: {exc}") from exc

    lines = text.splitlines()
    fields = [line.split() for line in lines]
    line_nos = np.flatnonzero(np.fromiter(map(len, fields), dtype=np.int64, count=len(fields)))
    fields = [fields[i] for i in line_nos]
    line_nos += 1  # 1-based

    def fail(k: int, why: str):
        raise VoxflowError(f"{p}:{line_nos[k]}: {why}: {lines[line_nos[k] - 1]!r}")

    bad_len = np.flatnonzero(np.fromiter(map(len, fields), dtype=np.int64, count=len(fields)) != 3)
    if len(bad_len):
        k = int(bad_len[0])
        fail(k, f"expected 3 fields ({_expected(fmt)}), got {len(fields[k])}")
    cols = list(zip(*fields)) if fields else [(), (), ()]
    if fmt == "voxceleb":
        lab, enroll, test = cols
        mapping, expected = _VOX_LABELS, "0 or 1"
    elif fmt == "cnceleb":
        enroll, test, lab = cols
        mapping, expected = _VOX_LABELS, "0 or 1"
    else:
        enroll, test, lab = cols
        mapping, expected = _KALDI_LABELS, "'target' or 'nontarget'"
    labels = np.fromiter((mapping.get(x, -1) for x in lab), dtype=np.int64, count=len(lab))
    bad_label = np.flatnonzero(labels < 0)
    if len(bad_label):
        k = int(bad_label[0])
        fail(k, f"label must be {expected}, got {lab[k]!r}")
    enroll = pd.Series(enroll, dtype="str")
    test = pd.Series(test, dtype="str")
    if fmt == "voxceleb":
        enroll, test = _strip_audio_ext(enroll), _strip_audio_ext(test)
    elif fmt == "cnceleb":
        test = _strip_audio_ext(test)
        if enroll_list is None and (p.parent / "enroll.lst").is_file():
            enroll_list = p.parent / "enroll.lst"
        if enroll_list is not None and str(enroll_list):
            enroll_map = read_enroll_list(enroll_list)
            mapped = enroll.map(enroll_map)
            unmapped = np.flatnonzero(mapped.isna().to_numpy())
            if len(unmapped):
                k = int(unmapped[0])
                fail(k, f"enrolment id {enroll.iloc[k]!r} is not in {enroll_list} ({len(unmapped)} trial(s))")
            enroll = mapped.astype("str")
        else:
            enroll = "enroll/" + enroll
    df = pd.DataFrame({"enroll_id": enroll, "test_id": test, "label": labels})
    if known_ids is not None:
        _check_known(df, known_ids, p, line_nos)
    return df


def _expected(fmt: str) -> str:
    return {"voxceleb": "'<0|1> <enroll> <test>'", "kaldi": "'<enroll> <test> <target|nontarget>'",
            "cnceleb": "'<enrolment id> <test path> <0|1>'"}[fmt]


def _check_known(df: pd.DataFrame, known_ids, path: Path, line_nos: np.ndarray) -> None:
    known = known_ids if isinstance(known_ids, (set, frozenset, dict)) else set(known_ids)
    bad = np.zeros(len(df), dtype=bool)
    first_bad_col = {}
    for col in ("enroll_id", "test_id"):
        codes, uniques = pd.factorize(df[col])
        unknown = np.fromiter((u not in known for u in uniques), dtype=bool, count=len(uniques))
        col_bad = unknown[codes] if len(codes) else np.zeros(0, dtype=bool)
        first_bad_col[col] = col_bad
        bad |= col_bad
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        col = "enroll_id" if first_bad_col["enroll_id"][row] else "test_id"
        raise VoxflowError(
            f"{path}:{line_nos[row]}: {col.removesuffix('_id')} id {df[col].iloc[row]!r} is not among the known ids"
            f" ({int(bad.sum())} trial(s) have unknown ids)"
        )


def write_trial_list(df: pd.DataFrame, path: str | os.PathLike, fmt: str = "voxceleb", *, suffix: str = "") -> None:
    """Write ``df`` (enroll_id, test_id, label) as a trial list atomically.

    ``suffix`` (e.g. ``".wav"``) is appended to each id in the VoxCeleb format, so that
    ``read_trial_list`` gives back the same ids. Only the voxceleb and kaldi formats are written.
    """
    _check_format(fmt)
    if fmt == "cnceleb":
        raise VoxflowError(f"{path}: trial lists are written in the voxceleb or kaldi format, not cnceleb")
    missing = [c for c in ("enroll_id", "test_id", "label") if c not in df.columns]
    if missing:
        raise VoxflowError(f"{path}: trial table lacks column(s) {missing}; has {list(df.columns)}")
    labels = df["label"].to_numpy()
    bad = ~np.isin(labels, [0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise VoxflowError(f"{path}: trial row {row} has label {labels[row]!r}; labels must be 0 or 1")
    labels = labels.astype(np.int64)
    enroll = df["enroll_id"].astype(str).tolist()
    test = df["test_id"].astype(str).tolist()
    for name in itertools.chain(enroll, test):
        if len(name.split()) != 1 or name.strip() != name:
            raise VoxflowError(f"{path}: id {name!r} is empty or contains whitespace")
    if fmt == "voxceleb":
        lines = [f"{lab} {e}{suffix} {t}{suffix}\n" for lab, e, t in zip(labels.tolist(), enroll, test)]
    else:
        names = ("nontarget", "target")
        lines = [f"{e} {t} {names[lab]}\n" for e, t, lab in zip(enroll, test, labels.tolist())]
    write_text_atomic(path, "".join(lines))
