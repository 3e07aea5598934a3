"""Diarization pipeline (Wespeaker recipe): VAD -> sub-segments -> embeddings -> clustering -> turns."""

from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np
import pandas as pd

from voxflow.cluster.ahc import ahc_cluster
from voxflow.cluster.spectral import spectral_cluster
from voxflow.cluster.umap_hdbscan import umap_hdbscan_cluster
from voxflow.diarize.overlap import merge_pieces, second_speakers
from voxflow.diarize.subsegment import subsegments
from voxflow.diarize.vad import speech_regions
from voxflow.errors import VoxflowError

TURN_COLUMNS = ["file_id", "start", "duration", "speaker"]
CLUSTERING = {"spectral": spectral_cluster, "ahc": ahc_cluster, "umap_hdbscan": umap_hdbscan_cluster}
SUBSEGMENT_COLUMNS = ["file_id", "start", "end", "label", "speaker"]


def subsegments_to_turns(
    starts: Sequence[float], ends: Sequence[float], labels: Sequence[int], file_id: str, merge_gap_s: float = 1e-3,
    second: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Speaker turns from labelled, possibly overlapping sub-segments.

    Sub-segments are taken in time order; where one overlaps the next, the overlap is split at its
    midpoint. Consecutive pieces of the same speaker separated by less than ``merge_gap_s`` are merged.
    Labels become ``spk<label>``. ``second`` (overlap assignment; -1 = none) gives each sub-segment's piece a
    second speaker too, so turns of two speakers may then overlap.
    """
    s = np.asarray(starts, dtype=np.float64)
    e = np.asarray(ends, dtype=np.float64)
    lab = np.asarray(labels)
    two = np.full(len(lab), -1) if second is None else np.asarray(second)
    if not (s.shape == e.shape == lab.shape == two.shape and s.ndim == 1):
        raise VoxflowError(f"starts/ends/labels/second must be equal-length 1-D, got {s.shape}, {e.shape}, "
                           f"{lab.shape}, {two.shape}")
    if len(s) == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(TURN_COLUMNS, [str, float, float, str])})
    order = np.lexsort((e, s))
    s, e, lab, two = s[order].copy(), e[order].copy(), lab[order], two[order]
    for i in range(len(s) - 1):
        if e[i] > s[i + 1]:
            mid = 0.5 * (s[i + 1] + e[i])
            e[i], s[i + 1] = mid, mid
    turns: list[list] = []
    if (two >= 0).any():
        pieces = [(a, b, k) for a, b, k in zip(s.tolist(), e.tolist(), lab.tolist())]
        pieces += [(a, b, k) for a, b, k in zip(s.tolist(), e.tolist(), two.tolist()) if k >= 0]
        turns = [list(p) for p in merge_pieces(pieces, merge_gap_s)]
    for a, b, k in zip(s.tolist(), e.tolist(), lab.tolist()) if not turns else []:
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


EMBED_CHUNK = 256  # sub-segments whose features are held at once (about 50 MB of fbanks at 1.5 s x 80 dims)
BLOCK_S = 600.0  # diarize_file: audio read per VAD block


def _reader(wav):
    """``read(a, b)``: samples a..b of ``wav``, an array or already such a function."""
    return wav if callable(wav) else (lambda a, b: wav[a:b])


def subsegment_embeddings(
    embedder, wav, sr: int, regions, segs, subseg_cmn: bool = True, chunk: int = EMBED_CHUNK
) -> np.ndarray:
    """(N, D) embeddings of the sub-segments ``segs`` of ``regions`` with a ``voxflow.embed.extract.Embedder``.

    ``wav`` is the waveform or a function ``read(first_sample, end_sample)``. Features are computed and embedded
    ``chunk`` sub-segments at a time, so memory does not grow with the recording. ``subseg_cmn`` (Wespeaker's
    option; what voxflow always did): features are computed, and mean-normalised by the model's CMN rule, on each
    sub-segment alone. Otherwise they are computed once per VAD region, normalised over the region, and each
    sub-segment takes its frames from there.
    """
    read = _reader(wav)
    if subseg_cmn:
        return _chunked(segs, chunk, lambda part: embedder.embed_waveforms([read(*_samples(s, sr)) for s in part], sr))
    hop = embedder.frame_shift_s
    out, feats, r = [], [], -1
    for a, b in segs:
        while r < 0 or a >= regions[r][1] - 1e-9:  # sub-segments lie inside regions, both in time order
            r += 1
            region = embedder.features(read(*_samples(regions[r], sr)), sr)
        first = min(int(round((a - regions[r][0]) / hop)), len(region) - 1)
        feats.append(region[first : max(first + 1, min(int(round((b - regions[r][0]) / hop)), len(region)))])
        if len(feats) == chunk:
            out.append(embedder.embed_feature_batch(feats))
            feats = []
    return np.concatenate(out + [embedder.embed_feature_batch(feats)] if feats else out)


def _samples(seg, sr: int) -> tuple[int, int]:
    return int(round(seg[0] * sr)), int(round(seg[1] * sr))


def _chunked(segs, chunk: int, embed) -> np.ndarray:
    """``embed`` applied to ``segs`` ``chunk`` at a time, rows stacked."""
    if chunk < 1:
        raise VoxflowError(f"chunk={chunk!r} must be >= 1")
    return np.concatenate([np.asarray(embed(segs[i : i + chunk])) for i in range(0, len(segs), chunk)])


def _check_args(clustering: str, cluster_kwargs) -> dict:
    if clustering not in CLUSTERING:
        raise VoxflowError(f"clustering {clustering!r}: must be one of {sorted(CLUSTERING)}")
    cluster_kwargs = dict(cluster_kwargs or {})
    clash = sorted({"num_speakers", "min_speakers", "max_speakers"} & set(cluster_kwargs))
    if clash:
        raise VoxflowError(f"cluster_kwargs: pass {clash} as diarize() arguments, not inside cluster_kwargs")
    return cluster_kwargs


def embed_subsegments(read, sr: int, duration_s: float, regions, embed_fn, window_s: float = 1.5,
                      shift_s: float = 0.75, subseg_cmn: bool = True, chunk: int = EMBED_CHUNK, file_id: str = ""):
    """(sub-segments [(start, end)], (N, D) embeddings) of the speech ``regions`` of a recording read by
    ``read(first_sample, end_sample)``; ``embed_fn`` as in :func:`diarize`."""
    regions = [(a, min(b, duration_s)) for a, b in regions if a < duration_s]
    segs = subsegments(regions, window_s, shift_s)
    if not segs:
        return segs, np.zeros((0, 0))
    if callable(embed_fn):
        if not subseg_cmn:
            raise VoxflowError("subseg_cmn=False needs an Embedder (features per VAD region), not a function")
        emb = _chunked(segs, chunk, lambda part: embed_fn([read(*_samples(s, sr)) for s in part]))
    else:
        emb = subsegment_embeddings(embed_fn, read, sr, regions, segs, subseg_cmn, chunk)
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] != len(segs):
        raise VoxflowError(f"{file_id}: embed_fn returned shape {emb.shape} for {len(segs)} sub-segments; need (N, D)")
    return segs, emb


def cluster_subsegments(segs, emb, file_id: str, clustering: str = "spectral", num_speakers: int | None = None,
                        min_speakers: int = 1, max_speakers: int = 10, cluster_kwargs: dict | None = None,
                        overlap_margin: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(turns, sub-segment table) from sub-segments ``segs`` and their embeddings: clustering as in
    :func:`diarize`; ``overlap_margin`` (None: off) turns on overlap assignment
    (:func:`voxflow.diarize.overlap.second_speakers`)."""
    if not segs:
        empty = subsegments_to_turns([], [], [], file_id)
        return empty, pd.DataFrame({c: [] for c in SUBSEGMENT_COLUMNS})
    cluster_kwargs = _check_args(clustering, cluster_kwargs)
    labels = CLUSTERING[clustering](
        emb, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers, **cluster_kwargs
    )
    second = None if overlap_margin is None else second_speakers(emb, labels, overlap_margin)
    starts = [a for a, _ in segs]
    ends = [b for _, b in segs]
    table = pd.DataFrame(
        {"file_id": file_id, "start": starts, "end": ends, "label": labels, "speaker": [f"spk{k}" for k in labels]},
        columns=SUBSEGMENT_COLUMNS,
    )
    if second is not None:
        table["second"] = second
    return subsegments_to_turns(starts, ends, labels, file_id, second=second), table


def _embed_and_cluster(read, sr, duration_s, regions, file_id, embed_fn, a) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Steps after the VAD, shared by the in-memory and the block-wise paths; ``a``: diarize_detailed's
    arguments by name."""
    segs, emb = embed_subsegments(read, sr, duration_s, regions, embed_fn, a["window_s"], a["shift_s"],
                                  a["subseg_cmn"], a["chunk"], file_id)
    return cluster_subsegments(segs, emb, file_id, a["clustering"], a["num_speakers"], a["min_speakers"],
                               a["max_speakers"], a["cluster_kwargs"], a["overlap_margin"])


def _arguments(*args, **kwargs) -> dict:
    """diarize_detailed's arguments by name, defaults filled in, checked."""
    bound = inspect.signature(diarize_detailed).bind(*args, **kwargs)
    bound.apply_defaults()
    a = dict(bound.arguments)
    a["cluster_kwargs"] = _check_args(a["clustering"], a["cluster_kwargs"])
    return a


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
    chunk: int = EMBED_CHUNK,
    overlap_margin: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Like :func:`diarize` but also returns the sub-segment table (file_id, start, end, label, speaker; with
    overlap assignment also ``second``, the second speaker's label or -1)."""
    a = _arguments(wav, sr, file_id, embed_fn, window_s, shift_s, num_speakers, max_speakers, vad_kwargs,
                   cluster_kwargs, vad=vad, clustering=clustering, min_speakers=min_speakers, subseg_cmn=subseg_cmn,
                   ref_turns=ref_turns, chunk=chunk, overlap_margin=overlap_margin)
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise VoxflowError(f"{file_id}: expected a mono 1-D waveform, got shape {wav.shape}")
    regions = speech_regions(wav, sr, vad, ref_turns, **(vad_kwargs or {}))
    return _embed_and_cluster(_reader(wav), sr, len(wav) / sr, regions, file_id, embed_fn, a)


def blockwise_speech_regions(snd, vad: str = "energy", ref_turns=None, block_s: float = BLOCK_S,
                             **settings) -> list[tuple[float, float]]:
    """Speech regions of an open ``soundfile.SoundFile`` (first channel), VAD-ed ``block_s`` of audio at a time.

    Regions meeting at a block boundary are joined. A recording no longer than one block gives exactly the
    regions of the whole-file VAD; longer ones differ slightly: the energy VAD's loud reference is each
    block's, and a frame straddling a boundary is cut in two.
    """
    if vad == "oracle":
        return speech_regions(None, snd.samplerate, vad, ref_turns, **settings)
    if not block_s > 0:
        raise VoxflowError(f"block_s={block_s!r} must be positive")
    sr, regions = snd.samplerate, []
    snd.seek(0)
    size = max(int(round(block_s * sr)), 1)
    for i, block in enumerate(snd.blocks(blocksize=size, dtype="float32", always_2d=True)):
        for a, b in speech_regions(block[:, 0], sr, vad, ref_turns, **settings):
            a, b = a + i * size / sr, b + i * size / sr
            if regions and a - regions[-1][1] < 1e-6:
                regions[-1] = (regions[-1][0], b)
            else:
                regions.append((a, b))
    return regions


def diarize_file(path, sr: int, file_id: str, embed_fn, *args, block_s: float = BLOCK_S, **kwargs) -> pd.DataFrame:
    """Turns of the audio file ``path`` read a block at a time: the VAD sees ``block_s`` of audio at once
    (:func:`blockwise_speech_regions`), and the embeddings read each ``chunk`` of sub-segments from the file,
    so memory is bounded whatever the recording's length. Arguments as :func:`diarize_detailed`; a file not at
    ``sr`` Hz is read whole and resampled."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as snd:
        if snd.samplerate != sr:
            from voxflow.audio.io import read_audio  # imports torch: only for resampling

            wav, _ = read_audio(path, expected_sr=sr, resample=True)
            return diarize(wav, sr, file_id, embed_fn, *args, **kwargs)
        a = _arguments(None, sr, file_id, embed_fn, *args, **kwargs)
        regions = blockwise_speech_regions(snd, a["vad"], a["ref_turns"], block_s, **(a["vad_kwargs"] or {}))

        def read(first, end):
            snd.seek(first)
            return snd.read(end - first, dtype="float32", always_2d=True)[:, 0]

        return _embed_and_cluster(read, sr, snd.frames / sr, regions, file_id, embed_fn, a)[0]


def diarize(wav: np.ndarray, sr: int, file_id: str, embed_fn, *args, **kwargs) -> pd.DataFrame:
    """Diarize one recording; returns turns (file_id, start, duration, speaker) with speakers spk0, spk1, ...

    The VAD ``vad`` (energy, silero, oracle: ``ref_turns``; settings ``vad_kwargs``) finds speech, which is cut
    into ``window_s`` windows every ``shift_s``. ``embed_fn`` is an ``Embedder`` (which honours ``subseg_cmn``)
    or a function mapping the list of window waveforms to an (N, D) matrix. ``clustering`` (spectral, ahc, umap_hdbscan;
    settings ``cluster_kwargs``) labels the windows, with ``num_speakers`` or else a count in
    [``min_speakers``, ``max_speakers``]; overlaps are split at their midpoints and same-speaker pieces merged.
    ``overlap_margin`` (default None: off) lets a window nearly as close to a second speaker give it its piece
    too, so output turns may overlap.
    Arguments as :func:`diarize_detailed`.
    """
    return diarize_detailed(wav, sr, file_id, embed_fn, *args, **kwargs)[0]
