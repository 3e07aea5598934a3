"""Streaming training data: shards (or raw files) -> shuffle -> chain -> fixed-length feature chunks.

Order of the chain (Wespeaker): split the source across DDP ranks and DataLoader workers, local
shuffle buffer, spk2id, resample, speed perturbation (0.9 / 1.0 / 1.1 with equal probability;
perturbed utterances become new speakers), chunking, noise/reverb augmentation, features,
SpecAugment, batching.

Determinism: every random choice made for an utterance (speed, chunk position, augmentation)
comes from a generator seeded by (seed, epoch, utt_id), so an utterance yields the same samples
whatever the worker count and whether it is read from shards or raw files; only the order of the
samples depends on the shuffle buffers, which are seeded by (seed, epoch, rank, worker). With
``chunk_s_max`` the chunk length is drawn per batch from (seed, epoch, reader, batch index), so an
utterance's chunk length depends on where it lands in its reader's stream.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset, default_collate, get_worker_info

from voxflow.audio.augment import spec_augment
from voxflow.audio.features import extract_validated, num_frames
from voxflow.audio.io import decode_audio, read_audio
from voxflow.data import chain
from voxflow.data.config import check_spk2id, validate_data_cfg
from voxflow.data.shards import iter_shard
from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)


# Shard list (path, sha256 pairs) -> the epoch whose loader verifies its digests in this process.
_VERIFYING_EPOCH: dict[tuple, int] = {}


def _shuffle_buffer(items, size: int, rng: np.random.Generator):
    """Local shuffle: keep ``size`` items, emit a random one as each new item arrives."""
    buf: list = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(0, size))
        yield buf[j]
        buf[j] = item
    rng.shuffle(buf)
    yield from buf


class TrainDataset(IterableDataset):
    """Fixed-length training samples ``(feats (frames, dim) float32, label)`` streamed from shards or raw files.

    ``source``: shard paths (list, or a shards table with ``shard_path``) or an utterances table
    (raw mode: files read directly; ``start_s``/``end_s`` columns select a segment of the file). A shards
    table with ``sha256`` has each shard's digest checked as it streams in (``verify_digests``).
    ``excluded`` maps utt_id to (start_s, end_s) intervals a
    window may overlap by at most half; ``excluded_utts`` are dropped. ``noise_df`` (with a
    ``kind`` column: noise/music/babble) and ``rir_df`` feed augmentation. Each utterance is
    seen exactly once per epoch across ``world_size`` ranks and DataLoader workers (the
    per-rank sample counts may differ by up to a shard). With ``with_keys`` samples are
    ``(feats, label, (utt_id, start_sample, speed_factor))``, start in the resampled and
    speed-perturbed timeline.

    Memory per reader: the shuffle buffer holds ``shuffle_buffer`` undecoded audio files (about
    250 MB for 1000 8-s 16-bit utterances); sliding chunking adds a window buffer of as many
    feature matrices (64 KB each for 200 x 80); noise/RIR clips cost 4 bytes per sample.
    ``set_epoch`` must be called before the DataLoader starts its workers.
    """

    def __init__(
        self, source, spk2id: dict, cfg: dict | None, seed: int = 0, rank: int = 0, world_size: int = 1,
        excluded: dict | None = None, excluded_utts=None, noise_df: pd.DataFrame | None = None,
        rir_df: pd.DataFrame | None = None, with_keys: bool = False,
    ):
        super().__init__()
        self.cfg = validate_data_cfg(cfg)
        self.num_speakers = check_spk2id(spk2id)
        self.spk2id = dict(spk2id)
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise VoxflowError(f"TrainDataset: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.seed, self.rank, self.world_size, self.epoch = int(seed), rank, world_size, 0
        self.with_keys = with_keys
        self.shards: list[str] | None = None
        self.shard_sha256: dict[str, str] = {}
        self.verify_digests = True
        self.utts: pd.DataFrame | None = None
        if isinstance(source, pd.DataFrame) and "shard_path" in source.columns:
            if "sha256" in source.columns:
                self.shard_sha256 = {str(p): str(h) for p, h in zip(source["shard_path"], source["sha256"])}
            source = source["shard_path"].tolist()
        if isinstance(source, pd.DataFrame):
            missing = [c for c in ("utt_id", "spk_id", "path") if c not in source.columns]
            if missing:
                raise VoxflowError(f"TrainDataset: utterances table lacks column(s) {missing}")
            self.utts = source.reset_index(drop=True)
            cols = ["utt_id", "spk_id", "path"] + [c for c in ("start_s", "end_s") if c in source.columns]
            self._records = self.utts[cols].to_dict("records")
        elif isinstance(source, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in source):
            self.shards = [str(p) for p in source]
            for p in self.shards:
                if not Path(p).is_file():
                    raise VoxflowError(f"{p}: shard not found")
        else:
            raise VoxflowError("TrainDataset: source must be a list of shard paths or an utterances DataFrame")
        if (len(self.utts) if self.utts is not None else len(self.shards)) == 0:
            raise VoxflowError("TrainDataset: the training source is empty (no shards or utterances)")
        self.excluded = {}
        for utt, intervals in (excluded or {}).items():
            try:
                merged = chain.merge_intervals(intervals)
            except (TypeError, ValueError) as exc:
                raise VoxflowError(f"excluded segments of {utt!r}: expected (start_s, end_s) pairs: {exc}") from exc
            if merged:
                self.excluded[str(utt)] = merged
        self.excluded_utts = set(excluded_utts or ())
        sr = self.cfg["sample_rate"]
        if self.cfg["aug_prob"] > 0 and not (noise_df is not None and len(noise_df)) and not (
            rir_df is not None and len(rir_df)
        ):
            raise VoxflowError("data.aug_prob: augmentation is enabled but no noise or RIR manifest was given")
        self.noise = chain.ClipPool(noise_df, sr, "noise")
        self.rirs = chain.ClipPool(rir_df, sr, "rir")
        self.chunk_len = int(round(self.cfg["chunk_s"] * sr))
        self.hop_len = max(1, int(round(self.cfg["chunk_hop_s"] * sr)))
        fcfg = self.cfg["features"]
        self.frames = num_frames(self.chunk_len, sr, fcfg)
        self._frames_of = {self.chunk_len: self.frames}
        self._dither = float(fcfg["dither"])
        self._fcfg = {**fcfg, "dither": 0.0}  # dither is applied here from the seeded generator
        self.stats: dict[str, int] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: it seeds the shard order, the shuffle buffers and every random choice."""
        self.epoch = int(epoch)

    def _count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    # -- source splitting -------------------------------------------------------------------
    def _unit(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def _items(self, unit: int, units: int) -> Iterator[dict]:
        order_rng = np.random.default_rng([self.seed, self.epoch, 7])
        if self.utts is not None:
            order = order_rng.permutation(len(self.utts))
            for idx in order[unit::units]:
                yield dict(self._records[int(idx)])
            return
        order = order_rng.permutation(len(self.shards))
        if len(self.shards) >= units:
            for idx in order[unit::units]:
                path = self.shards[idx]
                yield from iter_shard(path, decode=False, stats=self.stats, sha256=self._digest(path))
            return
        # Fewer shards than readers: everyone reads every shard and keeps every units-th utterance.
        i = 0
        for idx in order:
            path = self.shards[idx]
            stats = self.stats if unit == 0 else None
            for item in iter_shard(path, decode=False, stats=stats, sha256=self._digest(path)):
                if i % units == unit:
                    yield item
                i += 1

    def _digest(self, path: str) -> str | None:
        return self.shard_sha256.get(path) if self.verify_digests else None

    # -- the chain ----------------------------------------------------------------------------
    def _load(self, item: dict) -> tuple[np.ndarray, int, str] | None:
        try:
            if "audio_name" in item:  # from a shard
                name = item["audio_name"]
                wav, sr = decode_audio(item["audio"], name)
            else:
                name = str(item["path"])
                wav, sr = read_audio(name, start_s=item.get("start_s"), end_s=item.get("end_s"))
        except VoxflowError as exc:
            log.warning("skipping unreadable utterance %s: %s", item.get("utt_id"), exc)
            self._count("skipped_unreadable")
            return None
        return wav, sr, name

    def batch_chunk_len(self, unit: int, batch: int) -> int:
        """Chunk length in samples of batch ``batch`` of reader ``unit`` (``chunk_s_max``: uniform in
        [chunk_s, chunk_s_max] on the 10 ms grid, from (seed, epoch, unit, batch)); else the fixed length."""
        lo, hi = self.cfg["chunk_s"], self.cfg["chunk_s_max"]
        if hi is None:
            return self.chunk_len
        secs = np.random.default_rng([self.seed, self.epoch, unit, 3, batch]).uniform(lo, hi)
        secs = min(max(round(secs * 100.0) / 100.0, lo), hi)
        return int(round(secs * self.cfg["sample_rate"]))

    def _frames(self, length: int) -> int:
        if length not in self._frames_of:
            self._frames_of[length] = num_frames(length, self.cfg["sample_rate"], self.cfg["features"])
        return self._frames_of[length]

    def process(self, item: dict, chunk_len: int | None = None) -> Iterator[tuple]:
        """Run the chain on one utterance dict (metadata + audio bytes or path); yields its samples.

        ``chunk_len`` (samples) overrides the configured chunk length (random chunk length per batch).
        """
        utt, spk = str(item["utt_id"]), str(item["spk_id"])
        if spk not in self.spk2id:
            raise VoxflowError(f"utterance {utt!r}: speaker {spk!r} is not in spk2id")
        label = int(self.spk2id[spk])
        loaded = self._load(item)
        if loaded is None:
            return
        wav, sr, name = loaded
        c, sr_out = self.cfg, self.cfg["sample_rate"]
        if sr != sr_out and not c["resample"]:
            raise VoxflowError(
                f"{name}: sample rate is {sr} Hz but training uses {sr_out} Hz (set data.resample: true)"
            )
        rng = chain.utt_rng(self.seed, self.epoch, utt)
        k = int(rng.integers(0, len(chain.SPEED_FACTORS))) if c["speed_perturb"] else 0
        factor = chain.SPEED_FACTORS[k]
        label += k * self.num_speakers
        x, o, n = chain.prepare(torch.from_numpy(wav), sr, sr_out, factor)
        length = chain.target_length(x.numel(), o, n)
        L = self.chunk_len if chunk_len is None else int(chunk_len)
        frames = self._frames(L)
        csum = chain.excluded_cumsum(self.excluded.get(utt), length, sr_out / factor)
        if c["chunking"] == "random":
            start = chain.random_start(length, L, csum, rng)
            if start is None:
                self._count("skipped_excluded")
                return
            if length <= L:
                windows = [(0, chain.tile_to(chain.render(x, o, n, 0, length), L))]
            else:
                windows = [(start, chain.render(x, o, n, start, start + L))]
        else:
            starts = chain.sliding_starts(length, L, self.hop_len)
            keep = chain.window_ok(csum, starts, min(L, length))
            self._count("dropped_windows", int((~keep).sum()))
            starts = starts[keep]
            if len(starts) == 0:
                self._count("skipped_excluded")
                return
            if length <= L:
                windows = [(0, chain.tile_to(chain.render(x, o, n, 0, length), L))]
            else:
                first = int(starts[0])
                span = chain.render(x, o, n, first, int(starts[-1]) + L)
                windows = [(int(s), span[int(s) - first : int(s) - first + L]) for s in starts]
        for start, chunk in windows:
            chunk, _ = chain.augment_chunk(chunk, rng, self.noise, self.rirs, c)
            if self._dither > 0:
                noise = rng.standard_normal(chunk.numel()).astype(np.float32)
                chunk = chunk + torch.from_numpy(noise) * (self._dither / 32768.0)
            feats = extract_validated(chunk, sr_out, self._fcfg)
            if feats.shape[0] != frames:
                if feats.shape[0] == 0:
                    self._count("skipped_no_voiced_frames")
                    continue
                feats = chain.fix_frames(feats, frames)
            if c["spec_aug"] and rng.random() < chain.SPEC_AUG_PROB:
                feats = spec_augment(feats, rng)
            self._count("samples")
            yield (feats, label, (utt, start, factor)) if self.with_keys else (feats, label)

    def _process_one_thread(self, item: dict, chunk_len: int | None = None) -> list[tuple]:
        """``process`` with single-threaded torch: its tensors are small, so intra-op threads only
        add overhead (and stall badly on a busy machine). DataLoader workers already use one thread;
        in the main process the caller's setting is restored before the samples are handed out."""
        if get_worker_info() is not None:
            return list(self.process(item, chunk_len))
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return list(self.process(item, chunk_len))
        finally:
            torch.set_num_threads(before)

    def __iter__(self):
        unit, units = self._unit()
        self.stats = {}
        buf_size = self.cfg["shuffle_buffer"]
        items = (it for it in self._items(unit, units) if str(it["utt_id"]) not in self.excluded_utts)
        shuffled = _shuffle_buffer(items, buf_size, np.random.default_rng([self.seed, self.epoch, unit, 1]))
        if self.cfg["chunk_s_max"] is None:
            samples = (s for item in shuffled for s in self._process_one_thread(item))
        else:
            samples = self._batched_lengths(shuffled, unit)
        if self.cfg["chunking"] == "sliding":  # windows of one utterance come together: mix them
            samples = _shuffle_buffer(samples, buf_size, np.random.default_rng([self.seed, self.epoch, unit, 2]))
        yield from samples
        skipped = {k: v for k, v in self.stats.items() if k.startswith("skipped") and v}
        if skipped:
            log.warning("epoch %d, reader %d/%d: %s", self.epoch, unit, units, skipped)


    def _batched_lengths(self, items, unit: int):
        """Samples whose chunk length changes per batch: this reader's samples are batched in order, so
        sample i belongs to batch i // batch_size (one sample per utterance with random chunking)."""
        batch_size, count = self.cfg["batch_size"], 0
        for item in items:
            for sample in self._process_one_thread(item, self.batch_chunk_len(unit, count // batch_size)):
                yield sample
                count += 1


def collate(samples: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (feats, label) samples into (B, T, F) float32 and (B,) int64.

    ``default_collate`` stacks straight into shared memory inside a DataLoader worker (no extra copy
    when the batch is handed to the training process)."""
    feats = default_collate([s[0] for s in samples])
    labels = torch.tensor([s[1] for s in samples], dtype=torch.long)
    return feats, labels


def build_train_loader(
    source, spk2id: dict, cfg: dict | None, epoch: int, seed: int, rank: int = 0, world_size: int = 1,
    excluded: dict | None = None, excluded_utts=None, noise_df: pd.DataFrame | None = None,
    rir_df: pd.DataFrame | None = None,
) -> DataLoader:
    """DataLoader of (feats (B, T, F), labels (B,)) batches for one epoch of one DDP rank.

    Noise/RIR clips are loaded here, in the parent, so that forked workers share them. With a shards table
    (``sha256`` column) each shard's digest is checked as it streams in, in the first epoch this process
    builds a loader for (every shard is read once per epoch, so the whole corpus is verified once per job).
    """
    ds = TrainDataset(
        source, spk2id, cfg, seed=seed, rank=rank, world_size=world_size, excluded=excluded,
        excluded_utts=excluded_utts, noise_df=noise_df, rir_df=rir_df,
    )
    ds.set_epoch(epoch)
    if ds.shard_sha256:  # every shard is read once per epoch: verifying the first epoch of the job suffices
        key = tuple(sorted(ds.shard_sha256.items()))
        ds.verify_digests = _VERIFYING_EPOCH.setdefault(key, int(epoch)) == int(epoch)
    if ds.cfg["aug_prob"] > 0:
        ds.noise.load()
        ds.rirs.load()
    c = ds.cfg
    return DataLoader(
        ds, batch_size=c["batch_size"], num_workers=c["num_workers"], collate_fn=collate, drop_last=c["drop_last"]
    )
