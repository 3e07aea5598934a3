"""A calibration trial list drawn from a corpus manifest (Wespeaker calibrates on training-corpus trials).

Target pairs join two utterances of one speaker from different sessions; when no speaker of the corpus
has two sessions, any two different utterances of a speaker. Non-target pairs join utterances of two
different speakers. Pairs are distinct and unordered, drawn uniformly from all possible pairs with the
seed; vectorised, so a VoxCeleb2-size manifest (a million utterances) takes a second.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)

_ENUMERATE_FACTOR = 4  # enumerate every possible pair when there are at most this many times as many as asked


def _pair_codes(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return lo.astype(np.int64) * n + hi


def _draw_distinct(draw, n_wanted: int, n_utts: int, rng: np.random.Generator) -> np.ndarray:
    """Codes of ``n_wanted`` distinct unordered pairs from ``draw(m) -> (a, b)``, in order of first draw."""
    codes = np.zeros(0, dtype=np.int64)
    while len(codes) < n_wanted:
        a, b = draw(2 * (n_wanted - len(codes)) + 16)
        codes = np.r_[codes, _pair_codes(a, b, n_utts)]
        _, first = np.unique(codes, return_index=True)
        codes = codes[np.sort(first)]
    return codes[:n_wanted]


def _group_bounds(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by ``keys``: start and end (exclusive) of each row's run of equal keys."""
    change = np.r_[True, keys[1:] != keys[:-1]]
    starts = np.flatnonzero(change)
    ends = np.r_[starts[1:], len(keys)]
    run = np.cumsum(change) - 1
    return starts[run], ends[run]


def sample_calibration_trials(utts: pd.DataFrame, n_target: int, n_nontarget: int, seed: int = 0,
                              where: str = "calibration corpus") -> pd.DataFrame:
    """Trials (enroll_id, test_id, label) of ``n_target`` target and ``n_nontarget`` non-target pairs.

    ``utts`` needs utt_id and spk_id (session_id optional). When fewer distinct pairs of a kind exist
    than asked, all of them are used and a warning says so. Sorted by (enroll_id, test_id).
    """
    for col in ("utt_id", "spk_id"):
        if col not in utts.columns:
            raise VoxflowError(f"{where}: the manifest lacks column {col!r}")
    if n_target < 1 or n_nontarget < 1:
        raise VoxflowError(f"{where}: need at least 1 target and 1 non-target trial, got {n_target} / {n_nontarget}")
    if utts.utt_id.duplicated().any():
        raise VoxflowError(f"{where}: utterance id {utts.utt_id[utts.utt_id.duplicated()].iloc[0]!r} is duplicated")
    spk_codes, spk_names = pd.factorize(utts.spk_id.astype(str), sort=True)
    if len(spk_names) < 2:
        raise VoxflowError(f"{where}: {len(spk_names)} speaker(s); calibration trials need at least 2")
    if "session_id" in utts.columns:
        ses_codes = pd.factorize(utts.spk_id.astype(str) + "\x00" + utts.session_id.astype(str), sort=True)[0]
    else:
        ses_codes = np.arange(len(utts))
    order = np.lexsort((utts.utt_id.to_numpy(dtype=str), ses_codes, spk_codes))  # deterministic, by speaker, session
    ids = utts.utt_id.to_numpy(dtype=object)[order]
    spk, ses = spk_codes[order], ses_codes[order]
    n = len(ids)
    s0, s1 = _group_bounds(spk)
    q0, q1 = _group_bounds(np.asarray(pd.factorize(ses)[0]))
    partners = (s1 - s0) - (q1 - q0)  # same speaker, other sessions
    if not partners.any():
        if (s1 - s0 > 1).any():
            log.warning("%s: no speaker has two sessions; target pairs join different utterances of one session",
                        where)
            q0, q1 = np.arange(n), np.arange(n) + 1
            partners = (s1 - s0) - 1
        else:
            raise VoxflowError(f"{where}: every speaker has one utterance, so there is no target pair")
    rng = np.random.default_rng(seed)

    def draw_target(m):
        a = rng.choice(n, size=m, p=partners / partners.sum())  # uniform over ordered target pairs
        r = s0[a] + (rng.random(m) * partners[a]).astype(np.int64)
        return a, np.where(r < q0[a], r, r + (q1[a] - q0[a]))

    def draw_nontarget(m):
        a = rng.integers(0, n, m)
        others = n - (s1[a] - s0[a])
        r = (rng.random(m) * others).astype(np.int64)
        return a, np.where(r < s0[a], r, r + (s1[a] - s0[a]))

    picked = []
    for kind, wanted, lo, hi, draw, label in (("target", n_target, q1, s1, draw_target, 1),
                                              ("non-target", n_nontarget, s1, np.full(n, n), draw_nontarget, 0)):
        possible = int((hi - lo).sum())  # partners of each row among the rows after it
        if possible <= _ENUMERATE_FACTOR * wanted:
            codes = _enumerate_pairs(lo, hi, n)
            if possible < wanted:
                log.warning("%s: only %d distinct %s pairs exist; using them all instead of %d",
                            where, possible, kind, wanted)
            codes = codes[np.sort(rng.permutation(possible)[:wanted])]
        else:
            codes = _draw_distinct(draw, wanted, n, rng)
        picked.append((codes, label))
    codes = np.concatenate([c for c, _ in picked])
    labels = np.concatenate([np.full(len(c), lab) for c, lab in picked])
    a, b = codes // n, codes % n
    swap = rng.random(len(codes)) < 0.5  # either utterance of a pair may be the enrolment
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    table = pd.DataFrame({"enroll_id": ids[a], "test_id": ids[b], "label": labels.astype(np.int64)})
    return table.sort_values(["enroll_id", "test_id"], ignore_index=True)


def _enumerate_pairs(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """Codes of every pair (a, b) with lo[a] <= b < hi[a], in order."""
    counts = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(n), counts)
    offsets = np.cumsum(counts) - counts
    b = lo[a] + (np.arange(len(a)) - offsets[a])
    return _pair_codes(a, b, n)
