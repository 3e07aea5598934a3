"""Diarization pipeline (Wespeaker recipe): VAD -> sub-segments -> embeddings -> clustering -> turns."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from voxflow.cluster.ahc import ahc_cluster
from voxflow.cluster.spectral import spectral_cluster
from voxflow.diarize.subsegment import subsegments
from voxflow.diarize.vad import speech_regions
from voxflow.errors import VoxflowError

TURN_COLUMNS = ["file_id", "start", "duration", "speaker"]
CLUSTERING = {"spectral": spectral_cluster, "ahc": ahc_cluster}
SUBSEGMENT_COLUMNS = ["file_id", "start", "end", "label", "speaker"]


def subsegments_to_turns(
    starts: Sequence[float], ends: Sequence[float], labels: Sequence[int], file_id: str, merge_gap_s: float = 1e-3
) -> pd.DataFrame:
    """Non-overlapping speaker turns from labelled, possibly overlapping sub-segments.

    Sub-segments are taken in time order; where one overlaps the next, the overlap is split at its
    midpoint. Consecutive pieces of the same speaker separated by less than ``merge_gap_s`` are merged.
    Labels become ``spk<label>``.
    """
    s = np.asarray(starts, dtype=np.float64)
    e = np.asarray(ends, dtype=np.float64)
    lab = np.asarray(labels)
    if not (s.shape == e.shape == lab.shape and s.ndim == 1):
        raise VoxflowError(f"starts/ends/labels must be equal-length 1-D, got {s.shape}, {e.shape}, {lab.shape}")
    if len(s) == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(TURN_COLUMNS, [str, float, float, str])})
    order = np.lexsort((e, s))
    s, e, lab = s[order].copy(), e[order].copy(), lab[order]
    for i in range(len(s) - 1):
        if e[i] > s[i + 1]:
            mid = 0.5 * (s[i + 1] + e[i])
            e[i], s[i + 1] = mid, mid
    turns: list[list] = []
    for a, b, k in zip(s.tolist(), e.tolist(), lab.tolist()):
        if b <= a:
            continue  # a window swallowed by its neighbours' midpoints
        if turns and turns[-1][2] == k and a - turns[-1][1] < merge_gap_s:
            turns[-1][1] = max(turns[-1][1], b)
        else:
            turns.append([a, b, k])
    return pd.DataFrame(
        {
            "file_id": file_id,
            "start": [t[0] for t in turns],
            "duration": [t[1] - t[0] for t in turns],
            "speaker": [f"spk{t[2]}" for t in turns],
        },
        columns=TURN_COLUMNS,
    )


def subsegment_embeddings(embedder, wav: np.ndarray, sr: int, regions, segs, subseg_cmn: bool = True) -> np.ndarray:
    """(N, D) embeddings of the sub-segments ``segs`` of ``regions`` with a ``voxflow.embed.extract.Embedder``.

    ``subseg_cmn`` (Wespeaker's option; what voxflow always did): features are computed, and mean-normalised by
    the model's CMN rule, on each sub-segment alone. Otherwise they are computed once per VAD region, normalised
    over the region, and each sub-segment takes its frames from there.
    """
    if subseg_cmn:
        return embedder.embed_waveforms([wav[int(round(a * sr)) : int(round(b * sr))] for a, b in segs], sr)
    hop = embedder.frame_shift_s
    feats, r = [], -1
    for a, b in segs:
        while r < 0 or a >= regions[r][1] - 1e-9:  # sub-segments lie inside regions, both in time order
            r += 1
            region = embedder.features(wav[int(round(regions[r][0] * sr)) : int(round(regions[r][1] * sr))], sr)
        first = min(int(round((a - regions[r][0]) / hop)), len(region) - 1)
        feats.append(region[first : max(first + 1, min(int(round((b - regions[r][0]) / hop)), len(region)))])
    return embedder.embed_feature_batch(feats)


def diarize_detailed(
    wav: np.ndarray,
    sr: int,
    file_id: str,
    embed_fn,
    window_s: float = 1.5,
    shift_s: float = 0.75,
    num_speakers: int | None = None,
    max_speakers: int = 10,
    vad_kwargs: dict | None = None,
    cluster_kwargs: dict | None = None,
    *,
    vad: str = "energy",
    clustering: str = "spectral",
    min_speakers: int = 1,
    subseg_cmn: bool = True,
    ref_turns: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Like :func:`diarize` but also returns the sub-segment table (file_id, start, end, label, speaker)."""
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise VoxflowError(f"{file_id}: expected a mono 1-D waveform, got shape {wav.shape}")
    if clustering not in CLUSTERING:
        raise VoxflowError(f"clustering {clustering!r}: must be one of {sorted(CLUSTERING)}")
    cluster_kwargs = dict(cluster_kwargs or {})
    clash = sorted({"num_speakers", "min_speakers", "max_speakers"} & set(cluster_kwargs))
    if clash:
        raise VoxflowError(f"cluster_kwargs: pass {clash} as diarize() arguments, not inside cluster_kwargs")
    regions = speech_regions(wav, sr, vad, ref_turns, **(vad_kwargs or {}))
    regions = [(a, min(b, len(wav) / sr)) for a, b in regions if a < len(wav) / sr]
    segs = subsegments(regions, window_s, shift_s)
    if not segs:
        empty = subsegments_to_turns([], [], [], file_id)
        return empty, pd.DataFrame({c: [] for c in SUBSEGMENT_COLUMNS})
    if callable(embed_fn):
        if not subseg_cmn:
            raise VoxflowError("subseg_cmn=False needs an Embedder (features per VAD region), not a function")
        emb = embed_fn([wav[int(round(a * sr)) : int(round(b * sr))] for a, b in segs])
    else:
        emb = subsegment_embeddings(embed_fn, wav, sr, regions, segs, subseg_cmn)
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] != len(segs):
        raise VoxflowError(f"{file_id}: embed_fn returned shape {emb.shape} for {len(segs)} sub-segments; need (N, D)")
    labels = CLUSTERING[clustering](
        emb, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers, **cluster_kwargs
    )
    starts = [a for a, _ in segs]
    ends = [b for _, b in segs]
    table = pd.DataFrame(
        {"file_id": file_id, "start": starts, "end": ends, "label": labels, "speaker": [f"spk{k}" for k in labels]},
        columns=SUBSEGMENT_COLUMNS,
    )
    return subsegments_to_turns(starts, ends, labels, file_id), table


def diarize(wav: np.ndarray, sr: int, file_id: str, embed_fn, *args, **kwargs) -> pd.DataFrame:
    """Diarize one recording; returns turns (file_id, start, duration, speaker) with speakers spk0, spk1, ...

    The VAD ``vad`` (energy, silero, oracle: ``ref_turns``; settings ``vad_kwargs``) finds speech, which is cut
    into ``window_s`` windows every ``shift_s``. ``embed_fn`` is an ``Embedder`` (which honours ``subseg_cmn``)
    or a function mapping the list of window waveforms to an (N, D) matrix. ``clustering`` (spectral, ahc;
    settings ``cluster_kwargs``) labels the windows, with ``num_speakers`` or else a count in
    [``min_speakers``, ``max_speakers``]; overlaps are split at their midpoints and same-speaker pieces merged.
    Arguments as :func:`diarize_detailed`.
    """
    return diarize_detailed(wav, sr, file_id, embed_fn, *args, **kwargs)[0]
