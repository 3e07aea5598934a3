"""The validation pair set of Kaseva & Kurimo (their VC_2sec): fixed-length segments of held-out speakers,
each from its own session, paired half same-speaker (across sessions) and half different-speaker; a network
is scored on it by the EER of the cosine similarities of its embeddings (after every epoch)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import torch

from voxflow.audio.features import extract_features
from voxflow.audio.io import read_audio
from voxflow.data.manifests import read_table
from voxflow.embed.extract import Embedder
from voxflow.errors import VoxflowError
from voxflow.metrics.verification import eer

log = logging.getLogger(__name__)

ENUMERATE_LIMIT = 2_000_000  # below this many possible pairs, non-target pairs are drawn from a full list


def _pick_segments(utts: pd.DataFrame, segment_s: float, per_session: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for (spk, session), group in utts.groupby(["spk_id", "session_id"], sort=True):
        group = group.sort_values("utt_id")
        for i in sorted(rng.permutation(len(group))[:per_session]):
            row = group.iloc[int(i)]
            slack = max(float(row.duration_s) - segment_s - 0.01, 0.0)  # 10 ms spare for resampled lengths
            start = np.floor(rng.uniform(0.0, slack) * 100.0) / 100.0
            # start_s/end_s are times in the file: a Kaldi segment's own start is added
            offset = float(row["start_s"]) if "start_s" in row.index and pd.notna(row["start_s"]) else 0.0
            rows.append({"segment_id": f"{row.utt_id}@{start:.2f}", "utt_id": row.utt_id, "spk_id": spk,
                         "session_id": session, "path": row.path, "start_s": offset + float(start),
                         "end_s": offset + float(start) + segment_s})
    return pd.DataFrame(rows)


def _target_candidates(spk: np.ndarray, session: np.ndarray) -> np.ndarray:
    out = []
    for s in np.unique(spk):
        idx = np.flatnonzero(spk == s)
        a, b = np.triu_indices(len(idx), 1)
        keep = session[idx[a]] != session[idx[b]]
        out.append(np.stack([idx[a][keep], idx[b][keep]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), int)


def _nontarget_pairs(spk: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    size = len(spk)
    if size * (size - 1) // 2 <= ENUMERATE_LIMIT:
        a, b = np.triu_indices(size, 1)
        keep = spk[a] != spk[b]
        cands = np.stack([a[keep], b[keep]], axis=1)
        return cands[np.sort(rng.choice(len(cands), size=min(n, len(cands)), replace=False))]
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < n:  # many speakers: almost every random pair is a non-target one
        draw = rng.integers(0, size, size=(2 * n, 2))
        for i, j in draw:
            if spk[i] != spk[j] and len(chosen) < n:
                chosen.add((int(min(i, j)), int(max(i, j))))
    return np.array(sorted(chosen))


def build_validation_set(utts: pd.DataFrame, pairs: int, segment_s: float = 2.0, segments_per_session: int = 1,
                         seed: int = 0, where: str = "validation") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(segments, pairs) of an utterances table: up to ``segments_per_session`` segments of ``segment_s`` per
    session (from different utterances at least ``segment_s`` long, at random 10 ms-aligned offsets), then
    ``pairs // 2`` target pairs (same speaker, different sessions) and as many non-target pairs, all distinct.
    Fewer target pairs than asked are possible: all are used (a warning says so). Only segments used by a
    pair are kept. ``where`` names the input in errors.
    """
    if pairs < 2:
        raise VoxflowError(f"{where}: pairs must be at least 2, got {pairs}")
    if segment_s <= 0 or segments_per_session < 1:
        raise VoxflowError(f"{where}: segment_s must be > 0 and segments_per_session >= 1")
    long_enough = utts[utts.duration_s >= segment_s]
    if long_enough.spk_id.nunique() < 2:
        raise VoxflowError(f"{where}: fewer than 2 speakers have utterances of at least {segment_s} s "
                           f"({utts.spk_id.nunique()} speakers, {len(long_enough)} utterances long enough)")
    rng = np.random.default_rng(seed)
    segs = _pick_segments(long_enough, segment_s, segments_per_session, rng)
    spk, session = segs.spk_id.to_numpy(), (segs.spk_id + "\x00" + segs.session_id).to_numpy()
    cands = _target_candidates(spk, session)
    if len(cands) == 0:
        raise VoxflowError(f"{where}: no speaker has segments from two sessions, so there is no target pair")
    n_target = pairs // 2
    if len(cands) < n_target:
        log.warning("%s: only %d target pairs (same speaker, different sessions) exist; using them all and as many "
                    "non-target pairs instead of %d of each", where, len(cands), n_target)
        n_target = len(cands)
    target = cands[np.sort(rng.choice(len(cands), size=n_target, replace=False))]
    nontarget = _nontarget_pairs(spk, n_target, rng)
    both = np.concatenate([target, nontarget])
    ids = segs.segment_id.to_numpy()
    table = pd.DataFrame({"enroll_id": ids[both[:, 0]], "test_id": ids[both[:, 1]],
                          "label": np.r_[np.ones(len(target), int), np.zeros(len(nontarget), int)]})
    used = np.unique(both)
    return segs.iloc[used].reset_index(drop=True), table.sort_values(["enroll_id", "test_id"], ignore_index=True)


class ValidationSet:
    """Segments and pairs (tables of ``build_validation_set``); ``eer(model, data_cfg)`` scores a network.

    The segments' features are computed once per feature config and kept in memory (about 64 KB per 2 s
    segment of 80 fbank).
    """

    def __init__(self, segments: pd.DataFrame, pairs: pd.DataFrame, where: str = "validation"):
        self.segments, self.where = segments.reset_index(drop=True), where
        index = {s: i for i, s in enumerate(self.segments.segment_id)}
        unknown = sorted(set(pairs.enroll_id).union(pairs.test_id) - set(index))
        if unknown:
            raise VoxflowError(f"{where}: pairs name segments that are not in the segment table: {unknown[:3]}")
        self.a = pairs.enroll_id.map(index).to_numpy()
        self.b = pairs.test_id.map(index).to_numpy()
        self.labels = pairs.label.to_numpy().astype(int)
        if not (set(np.unique(self.labels)) == {0, 1}):
            raise VoxflowError(f"{where}: pairs need both labels 0 and 1, got {sorted(set(self.labels))}")
        self._features: dict[str, list[torch.Tensor]] = {}

    @classmethod
    def from_files(cls, segments_path, pairs_path) -> "ValidationSet":
        return cls(read_table(segments_path, "segments"), read_table(pairs_path, "trials"),
                   where=f"{segments_path} / {pairs_path}")

    def __len__(self) -> int:
        return len(self.labels)

    def features(self, data_cfg: dict) -> list[torch.Tensor]:
        """Features of every segment under ``data_cfg`` (its sample rate, resampling and features; no dither)."""
        feat_cfg = {**data_cfg.get("features", {}), "dither": 0.0}
        sr, resample = int(data_cfg.get("sample_rate", 16000)), bool(data_cfg.get("resample", True))
        key = json.dumps([feat_cfg, sr, resample], sort_keys=True)
        if key not in self._features:
            out = []
            for row in self.segments.itertuples(index=False):
                wav, _ = read_audio(row.path, expected_sr=sr, resample=resample, start_s=row.start_s,
                                    end_s=row.end_s)  # reads only the segment
                out.append(extract_features(torch.from_numpy(wav), sr, feat_cfg))
            self._features = {key: out}
        return self._features[key]

    def scores(self, model: torch.nn.Module, data_cfg: dict, device: torch.device | str = "cpu",
               batch_size: int = 128) -> np.ndarray:
        """Cosine similarity of every pair under ``model`` (evaluated in eval mode, then restored)."""
        was_training = model.training
        try:
            emb = Embedder(model, {"data_cfg": data_cfg}, device=str(device), batch_size=batch_size)
            vectors = emb.embed_feature_batch(self.features(data_cfg)).astype(np.float64)
        finally:
            model.train(was_training)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.einsum("ij,ij->i", vectors[self.a], vectors[self.b])

    def eer(self, model: torch.nn.Module, data_cfg: dict, device: torch.device | str = "cpu",
            batch_size: int = 128) -> float:
        """Equal error rate (a fraction) of ``model`` on the pairs."""
        return eer(self.scores(model, data_cfg, device, batch_size), self.labels)[0]
