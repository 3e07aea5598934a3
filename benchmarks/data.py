"""Throughput of the training data path on a synthetic corpus (VoxCeleb-like 4-10 s utterances).

Reports utterances/s for raw files against shards (with and without the sha256 check done as a
shard streams in), the cost of each chain step per 2 s chunk, and 2 s chunks/s for the whole chain
(with and without augmentation; with the digest check of a job's first epoch) in the main process
and with 1 and 2 DataLoader workers. Torch runs single-threaded, i.e. one core per reader.
Rates are given per wall-clock second and per CPU second (this process plus its DataLoader
workers), the latter being what one core sustains even on a machine shared with other jobs.

    python benchmarks/data.py [--utts 300] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from voxflow.audio import augment
from voxflow.audio.features import extract_features
from voxflow.audio.io import decode_audio, read_audio
from voxflow.data import chain
from voxflow.data.dataset import TrainDataset
from voxflow.data.shards import iter_shard, write_shards

SR = 16000


def make_corpus(root: Path, utts: int, rng: np.random.Generator):
    rows = []
    for i in range(utts):
        n = int(rng.uniform(4, 10) * SR)
        spk = f"spk{i % 20:02d}"
        p = root / "wav" / spk / f"{i:05d}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(n) / SR
        wav = 0.3 * np.sin(2 * np.pi * (120 + i % 50) * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
        sf.write(str(p), (wav + 0.02 * rng.standard_normal(n)).astype(np.float32), SR, subtype="PCM_16")
        rows.append(dict(utt_id=f"{spk}/s/{i:05d}", spk_id=spk, session_id="s", path=str(p), sample_rate=SR,
                         num_samples=n, duration_s=n / SR))
    noise = []
    for j, kind in enumerate(["noise"] * 4 + ["music"] * 4 + ["babble"] * 8):
        p = root / "noise" / f"{kind}{j}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p), (0.1 * rng.standard_normal(int(rng.uniform(5, 10) * SR))).astype(np.float32), SR)
        noise.append(dict(path=str(p), kind=kind))
    rirs = []
    for j in range(10):
        p = root / "rir" / f"rir{j}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        m = int(rng.uniform(0.3, 0.6) * SR)
        h = rng.standard_normal(m) * np.exp(-np.arange(m) / (0.05 * SR))
        h[int(rng.integers(20, 200))] = 3.0
        sf.write(str(p), (h / np.abs(h).max()).astype(np.float32), SR)
        rirs.append(dict(path=str(p)))
    return pd.DataFrame(rows), pd.DataFrame(noise), pd.DataFrame(rirs)


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (DataLoader workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def per_call_ms(fn, repeat: int = 30) -> float:
    """Best-of-3 CPU milliseconds per call."""
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(repeat):
            fn()
        best = min(best, (time.process_time() - t0) / repeat)
    return best * 1e3


def step_costs(df, noise_df, rir_df) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    data = Path(df["path"][0]).read_bytes()
    wav = torch.from_numpy(decode_audio(data, "x")[0])
    chunk = wav[: 2 * SR].clone()
    noise = torch.from_numpy(read_audio(noise_df["path"][0])[0])
    babble = [torch.from_numpy(read_audio(p)[0]) for p in noise_df["path"][8:13]]
    rir = torch.from_numpy(read_audio(rir_df["path"][0])[0])
    o9, n9 = chain.rate_ratio(SR, SR, 0.9)
    o8, n8 = chain.rate_ratio(8000, SR, 1.0)
    wav8 = wav[::2].clone()
    feats = extract_features(chunk, SR, {})
    cache = augment.SpectrumCache()
    return [
        ("decode wav bytes (whole utterance)", per_call_ms(lambda: decode_audio(data, "x"))),
        ("random 2 s chunk", per_call_ms(lambda: chain.render(wav, 1, 1, 1000, 1000 + 2 * SR))),
        ("speed perturb 0.9 (chunk span)", per_call_ms(lambda: chain.render(wav, o9, n9, 1000, 1000 + 2 * SR))),
        ("resample 8k->16k (chunk span)", per_call_ms(lambda: chain.render(wav8, o8, n8, 1000, 1000 + 2 * SR))),
        ("add noise", per_call_ms(lambda: augment.add_noise(chunk, noise, 5.0, rng))),
        ("add babble (5 clips)", per_call_ms(lambda: augment.add_noises(chunk, babble, [15.0] * 5, rng))),
        ("reverberate (0.3-0.6 s RIR)", per_call_ms(lambda: augment.reverberate(chunk, rir))),
        ("  same, RIR spectrum cached", per_call_ms(lambda: augment.reverberate(chunk, rir, cache=cache, key=0))),
        ("fbank 80 + CMN", per_call_ms(lambda: extract_features(chunk, SR, {}))),
        ("mfcc 30 + sliding CMN + VAD", per_call_ms(lambda: extract_features(
            chunk, SR, {"kind": "mfcc", "num_mel_bins": 30, "cmn": "sliding", "vad": True}))),
        ("spec augment", per_call_ms(lambda: augment.spec_augment(feats, rng))),
    ]


def read_rates(df, table) -> list[tuple[str, float]]:
    t0 = time.process_time()
    for p in df["path"]:
        read_audio(p)
    raw = len(df) / (time.process_time() - t0)
    t0 = time.process_time()
    n = sum(1 for p in table["shard_path"] for _ in iter_shard(p))
    shard = n / (time.process_time() - t0)
    t0 = time.process_time()
    n = sum(1 for p, h in zip(table["shard_path"], table["sha256"]) for _ in iter_shard(p, sha256=h))
    checked = n / (time.process_time() - t0)
    return [("raw files (read_audio)", raw), ("shards (iter_shard, decoded)", shard),
            ("shards + sha256 while streaming", checked)]


def chain_rate(source, spk2id, cfg, noise_df, rir_df, workers: int) -> tuple[float, float]:
    """(chunks per wall second, chunks per CPU second)."""
    ds = TrainDataset(source, spk2id, cfg, seed=0, noise_df=noise_df, rir_df=rir_df)
    ds.set_epoch(0)
    if cfg.get("aug_prob", 0) > 0:
        ds.noise.load()
        ds.rirs.load()
    t0, c0 = time.perf_counter(), cpu_seconds()
    if workers == 0:
        n = sum(1 for _ in ds)
    else:
        loader = DataLoader(ds, batch_size=32, num_workers=workers, collate_fn=len)
        n = sum(loader)
        del loader  # workers exit and are reaped, so their CPU time is counted
    return n / (time.perf_counter() - t0), n / (cpu_seconds() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utts", type=int, default=300)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        df, noise_df, rir_df = make_corpus(root, args.utts, np.random.default_rng(0))
        table = write_shards(df, root / "shards", utts_per_shard=50)
        shards = table["shard_path"].tolist()
        spk2id = {s: i for i, s in enumerate(sorted(df["spk_id"].unique()))}
        hours = df["duration_s"].sum() / 3600
        print(f"corpus: {len(df)} utterances, {hours:.2f} h, {len(shards)} shards; cpus={os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.1f}\n")
        print(f"{'reading (per CPU second)':<40}{'utts/s':>10}")
        for name, rate in read_rates(df, table):
            print(f"{name:<40}{rate:>10.0f}")
        print(f"\n{'chain step (one 2 s chunk)':<40}{'CPU ms':>10}")
        for name, ms in step_costs(df, noise_df, rir_df):
            print(f"{name:<40}{ms:>10.3f}")
        plain = {"shuffle_buffer": 100}
        full = {"shuffle_buffer": 100, "speed_perturb": True, "aug_prob": 0.6, "spec_aug": True}
        print(f"\n{'full chain, 2 s chunks':<40}{'workers':>8}{'chunks/s':>10}{'per CPU s':>10}")
        for label, source, cfg in (
            ("raw files, no augmentation", df, plain),
            ("shards, no augmentation", shards, plain),
            ("shards, speed+noise/reverb+specaug", shards, full),
            ("  same + sha256 check (1st epoch)", table, full),
        ):
            for workers in (0, 1, 2):
                wall, cpu = chain_rate(source, spk2id, cfg, noise_df, rir_df, workers)
                print(f"{label:<40}{workers:>8}{wall:>10.0f}{cpu:>10.0f}")


if __name__ == "__main__":
    main()
