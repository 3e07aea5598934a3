"""Embedding extraction: split-embed-average (SEA), whole utterances, 2 s training segments, raw waveforms."""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from voxflow.audio.features import extract_features, feature_dim, num_frames, validate_features_cfg
from voxflow.audio.io import read_audio
from voxflow.cluster.kmeans import spherical_mean
from voxflow.errors import VoxflowError

# SEA settings; a model's meta may override them under "sea" (an imported Resemblyzer model does).
SEA_DEFAULTS = {"window_s": 2.0, "hop_s": 0.5, "min_coverage": None}
MAX_MIN_FRAMES = 256  # a network that takes no input this long is broken, not picky


class Embedder:
    """Wraps an exported network and its feature config; turns waveforms into embeddings."""

    def __init__(self, model: torch.nn.Module, meta: dict, device: str = "cpu", batch_size: int = 64):
        self.model = model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.data_cfg = meta.get("data_cfg", {})
        self.feat_cfg = {**self.data_cfg.get("features", {}), "dither": 0.0}  # extraction is deterministic
        self.sample_rate = int(self.data_cfg.get("sample_rate", 16000))
        self.frame_shift_s = float(self.feat_cfg.get("frame_shift_ms", 10.0)) / 1000.0
        self.sea = {**SEA_DEFAULTS, **meta.get("sea", {})}

    def features(self, wav: np.ndarray, sr: int) -> torch.Tensor:
        return extract_features(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), sr, self.feat_cfg)

    @torch.no_grad()
    def embed_feature_batch(self, feats: list[torch.Tensor]) -> np.ndarray:
        """Embed feature matrices in length buckets; rows follow ``feats``.

        Inputs are sorted by length and each batch holds inputs of one length only, so nothing is
        padded: the networks have no length masks, and padding would change the pooled statistics.
        SEA windows all have the window length, so their batches are full.
        """
        out = [None] * len(feats)
        by_len: dict[int, list[int]] = defaultdict(list)
        for i, f in enumerate(feats):
            by_len[f.shape[0]].append(i)
        for length in sorted(by_len):
            idx = by_len[length]
            for k in range(0, len(idx), self.batch_size):
                chunk = idx[k:k + self.batch_size]
                emb = self.model(torch.stack([feats[i] for i in chunk]).to(self.device)).float().cpu().numpy()
                for i, e in zip(chunk, emb):
                    out[i] = e
        return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

    @functools.cached_property
    def min_frames(self) -> int:
        """The fewest feature frames the network takes, tried from 1 up: a TDNN x-vector's context needs 15, an
        imported SpeechBrain ECAPA's reflect padding 5 (30 ms of audio fails inside torch), the others 1."""
        dim = feature_dim(self.feat_cfg)
        for frames in range(1, MAX_MIN_FRAMES + 1):
            try:
                with torch.no_grad():
                    self.model(torch.zeros(1, frames, dim, device=self.device))
                return frames
            except Exception:  # torch and ONNX Runtime raise their own types for a too-short input
                continue
        raise VoxflowError(f"the network takes no input of up to {MAX_MIN_FRAMES} frames of {dim} features")

    def min_duration_s(self) -> float:
        """The shortest audio (s) whose features give ``min_frames`` frames (before VAD): one frame length plus
        a shift per further frame (Kaldi framing), or a shift per further frame (centred frames: mel_power,
        mel_db; SpeechBrain's Fbank), and never under one frame length."""
        c = validate_features_cfg(self.feat_cfg)
        length, shift = c["frame_length_ms"], c["frame_shift_ms"]
        further = (self.min_frames - 1) * shift
        centred = c["kind"] in ("mel_power", "mel_db")
        return (max(length, further) if centred else length + further) / 1000.0

    def check_length(self, frames: int, num_samples: int, sr: int, where: str) -> None:
        """A VoxflowError naming ``where`` when ``frames`` are fewer than the network takes."""
        if frames < self.min_frames:
            raise VoxflowError(
                f"{where}: {1000.0 * num_samples / sr:.0f} ms of audio gives {frames} feature frame(s) after "
                f"framing{' and VAD' if self.feat_cfg.get('vad') else ''}; the model needs at least "
                f"{self.min_frames} ({1000.0 * self.min_duration_s():.0f} ms): too short for this model")

    def embedding_dim(self) -> int:
        """The network's embedding size (from one window of silence): what an empty table's column needs."""
        silence = np.zeros(int(self.sample_rate * SEA_DEFAULTS["window_s"]), np.float32)
        return int(self.embed_waveforms([silence], self.sample_rate).shape[1])

    def embed_waveforms(self, wavs: list[np.ndarray], sr: int) -> np.ndarray:
        """One embedding per waveform (whole waveform as one input); used by diarization."""
        return self.embed_feature_batch([self.features(w, sr) for w in wavs])


def window_frames(num_frames: int, win: int, hop: int) -> list[tuple[int, int]]:
    """Windows of ``win`` frames every ``hop``; a final window is aligned to the end; short input is one window."""
    if num_frames <= win:
        return [(0, num_frames)]
    starts = list(range(0, num_frames - win + 1, hop))
    if starts[-1] + win < num_frames:
        starts.append(num_frames - win)
    return [(s, s + win) for s in starts]


def partial_windows(num_samples: int, hop_samples: int, win: int, hop: int,
                    min_coverage: float) -> list[tuple[int, int]]:
    """Resemblyzer's partials (``compute_partial_slices``) in frames: ``win`` frames every ``hop`` from frame 0
    over the ``1 + num_samples // hop_samples`` centred frames; the last may run past the end (zero-padded) and
    is dropped if it covers less than ``min_coverage`` of a window, unless it is the only one."""
    n = num_samples // hop_samples + 1
    windows = [(s, s + win) for s in range(0, max(1, n - win + hop + 1), hop)]
    if len(windows) > 1 and num_samples - windows[-1][0] * hop_samples < min_coverage * win * hop_samples:
        windows.pop()
    return windows


def _iter_utterance_windows(embedder: Embedder, utterances: pd.DataFrame, window_s: float, hop_s: float,
                            min_coverage: float | None = None,
                            ) -> Iterator[tuple[pd.Series, list[tuple[int, int]], torch.Tensor]]:
    """Per utterance: its row, windows and features. ``min_coverage`` set: Resemblyzer's partials, the features
    zero-padded to the last one; else ``window_frames`` (the last window aligned to the end)."""
    win = max(1, round(window_s / embedder.frame_shift_s))
    hop = max(1, round(hop_s / embedder.frame_shift_s))
    resample = bool(embedder.data_cfg.get("resample", True))
    for row in utterances.itertuples(index=False):
        wav, sr = read_audio(row.path, expected_sr=embedder.sample_rate, resample=resample,
                             start_s=getattr(row, "start_s", None), end_s=getattr(row, "end_s", None))
        where = f"{row.path} (utterance {row.utt_id})"
        if num_frames(len(wav), sr, embedder.feat_cfg) == 0:
            embedder.check_length(0, len(wav), sr, where)
        feats = embedder.features(wav, sr)
        if min_coverage is None:  # Resemblyzer's partials are zero-padded to a whole window below
            embedder.check_length(feats.shape[0], len(wav), sr, where)
            yield row, window_frames(feats.shape[0], win, hop), feats
            continue
        windows = partial_windows(len(wav), max(1, round(embedder.frame_shift_s * sr)), win, hop, min_coverage)
        pad = windows[-1][1] - feats.shape[0]
        yield row, windows, torch.nn.functional.pad(feats, (0, 0, 0, pad)) if pad > 0 else feats


def check_durations(embedder: Embedder, utterances: pd.DataFrame) -> None:
    """Before any audio is read: every utterance the manifest's duration_s says is too short for the network,
    named in one VoxflowError (a VAD that drops frames is caught per utterance while embedding)."""
    if "duration_s" not in utterances or "start_s" in utterances or not len(utterances):
        return
    near = utterances[utterances.duration_s < embedder.min_duration_s() + 0.05]
    sr = embedder.sample_rate
    short = [(r.utt_id, r.duration_s) for r in near.itertuples(index=False)
             if num_frames(int(round(r.duration_s * sr)), sr, embedder.feat_cfg) < embedder.min_frames]
    if short:
        listed = ", ".join(f"{u} ({1000 * d:.0f} ms)" for u, d in short[:5]) + (", ..." if len(short) > 5 else "")
        raise VoxflowError(f"{len(short)} utterance(s) shorter than the {1000 * embedder.min_duration_s():.0f} ms "
                           f"({embedder.min_frames} frames) the model needs: {listed}; drop them from the manifest")


def embed_utterances(embedder: Embedder, utterances: pd.DataFrame, window_s: float | None = None,
                     hop_s: float | None = None, mode: str = "sea", flush_every: int = 256,
                     ) -> tuple[list[str], np.ndarray]:
    """One embedding per utterance (only its ``start_s``..``end_s`` region for a segments manifest).

    Windows of up to ``flush_every`` pending windows (several utterances) are embedded together in length
    buckets. ``sea`` (Kaseva & Kurimo): embed ``window_s`` windows every ``hop_s`` (2 s, 1.5 s overlap) and take the
    spherical mean (K=1 spherical K-means centre); ``full``: embed the whole utterance at once (Wespeaker).
    ``window_s``/``hop_s`` left None, and ``min_coverage`` (see ``partial_windows``), come from ``embedder.sea``.
    """
    window_s = embedder.sea["window_s"] if window_s is None else window_s
    hop_s = embedder.sea["hop_s"] if hop_s is None else hop_s
    check_durations(embedder, utterances)
    ids, vectors = [], []
    pending: list[tuple[str, list[torch.Tensor]]] = []

    def flush():
        flat = [w for _, ws in pending for w in ws]
        emb = embedder.embed_feature_batch(flat)
        k = 0
        for utt, ws in pending:
            part = emb[k:k + len(ws)]
            k += len(ws)
            ids.append(utt)
            vectors.append(spherical_mean(part) if mode == "sea" else part[0] / max(np.linalg.norm(part[0]), 1e-12))
        pending.clear()

    min_coverage = embedder.sea["min_coverage"] if mode == "sea" else None
    for row, windows, feats in _iter_utterance_windows(embedder, utterances, window_s, hop_s, min_coverage):
        if mode == "full":
            windows = [(0, feats.shape[0])]
        pending.append((row.utt_id, [feats[s:e] for s, e in windows]))
        if sum(len(ws) for _, ws in pending) >= flush_every:
            flush()
    flush()
    return ids, np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)


def embed_segments(embedder: Embedder, utterances: pd.DataFrame, window_s: float = 2.0,
                   hop_s: float = 1.0, flush_every: int = 256) -> tuple[pd.DataFrame, np.ndarray]:
    """Embeddings of every ``window_s`` segment every ``hop_s`` (the 2 s training samples of Kaseva & Kurimo).

    ``start_s``/``end_s`` of the result are relative to the utterance (for a segments manifest: to its
    segment), the timeline of training's exclusions. Windows of several utterances are batched together.
    """
    rows, mats, pending = [], [], []
    for row, windows, feats in _iter_utterance_windows(embedder, utterances, window_s, hop_s):
        pending.extend(feats[s:e] for s, e in windows)
        if len(pending) >= flush_every:
            mats.append(embedder.embed_feature_batch(pending))
            pending = []
        for s, e in windows:
            rows.append({"utt_id": row.utt_id, "spk_id": row.spk_id, "start_s": s * embedder.frame_shift_s,
                         "end_s": e * embedder.frame_shift_s})
    if pending:
        mats.append(embedder.embed_feature_batch(pending))
    matrix = np.concatenate(mats) if mats else np.zeros((0, 0), np.float32)
    segments = pd.DataFrame(rows, columns=["utt_id", "spk_id", "start_s", "end_s"])
    segments.insert(0, "segment_id", [f"{u}@{s:.2f}" for u, s in zip(segments.utt_id, segments.start_s)])
    return segments, matrix


