"""Speed and memory of diarizing one long recording, block-wise (``voxflow.diarize.pipeline.diarize_file``).

    python benchmarks/diarization.py [--minutes 60] [--models xvector_demo,resnet34] [--vad silero]
                                     [--clustering spectral]

A conversation of four synthetic voices (``voxflow.demo.speech``; 2-8 s turns, 0.3 s pauses, repeated
from a 5-minute master so that synthesis stays quick) is written as 16-bit WAV, then diarized with untrained
networks (speed only: the labels are meaningless): the demo config's narrow x-vector (30 MFCC) and ResNet34
(80 fbank). Printed per model: the real-time factor (seconds of work per second of audio) of the VAD (Silero by default,
600 s blocks), the embedding (sub-segments read from the file, 256 at a time), the clustering and the whole,
and the peak resident memory of the process (``resource.getrusage``, which only grows: read it per model in
the order run). ``rtf_*`` are wall-clock, ``cpu_rtf_*`` the process's CPU time per second of audio (with one torch
thread, the work itself: on a shared machine the wall clock also counts the waits for a core).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from voxflow.demo.speech import render_speech
from voxflow.demo.voices import random_voice
from voxflow.diarize import pipeline
from voxflow.embed.extract import Embedder
from voxflow.train.network import build_network

SR = 16000
MFCC30 = {"kind": "mfcc", "num_mel_bins": 30, "num_ceps": 30}
FBANK80 = {"kind": "fbank", "num_mel_bins": 80}
MODELS = {
    "xvector_demo": ({"name": "xvector", "channels": 128, "stats_channels": 384, "embed_dim": 128}, MFCC30),
    "resnet34": ({"name": "resnet34"}, FBANK80),
}


def write_conversation(path: Path, minutes: float, seed: int = 0) -> None:
    """A 4-speaker conversation of ``minutes``, written in 5-minute pieces (one master piece repeated)."""
    rng = np.random.default_rng(seed)
    voices = [random_voice(f"s{k}", rng) for k in range(4)]
    piece, t = [], 0.0
    while t < min(minutes, 5.0) * 60:
        n = int(rng.uniform(2.0, 8.0) * SR)
        piece += [0.1 * render_speech(voices[int(rng.integers(4))], n, SR, rng), np.zeros(int(0.3 * SR))]
        t += n / SR + 0.3
    piece = np.concatenate(piece)
    piece = (piece + 1e-3 * rng.normal(size=len(piece))).astype(np.float32)
    total = int(minutes * 60 * SR)
    with sf.SoundFile(str(path), "w", SR, 1, subtype="PCM_16") as out:
        for start in range(0, total, len(piece)):
            out.write(piece[: total - start])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(path: Path, label: str, clustering: str, vad: str = "silero") -> dict:
    model_cfg, feats = MODELS[label]
    torch.manual_seed(0)
    embedder = Embedder(build_network(model_cfg, {"features": feats}), {"data_cfg": {"features": feats}})
    times, cpu = {}, {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t, c = time.perf_counter(), time.process_time()
            out = fn(*args, **kwargs)
            times[name] = times.get(name, 0.0) + time.perf_counter() - t
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - c
            return out
        return wrapper

    patches = {"blockwise_speech_regions": "vad", "subsegment_embeddings": "embedding"}
    saved = {name: getattr(pipeline, name) for name in patches}
    saved_clust = pipeline.CLUSTERING[clustering]
    try:
        for name, step in patches.items():
            setattr(pipeline, name, timed(step, saved[name]))
        pipeline.CLUSTERING[clustering] = timed("clustering", saved_clust)
        t, c = time.perf_counter(), time.process_time()
        turns = pipeline.diarize_file(path, SR, "long", embedder, max_speakers=8, clustering=clustering, vad=vad)
        times["total"], cpu["total"] = time.perf_counter() - t, time.process_time() - c
    finally:
        for name in patches:
            setattr(pipeline, name, saved[name])
        pipeline.CLUSTERING[clustering] = saved_clust
    duration = sf.info(str(path)).duration
    return {"model": label, **{f"rtf_{k}": v / duration for k, v in times.items()},
            **{f"cpu_rtf_{k}": v / duration for k, v in cpu.items()}, "peak_mb": peak_mb(),
            "turns": len(turns)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--models", default="xvector_demo,resnet34")
    ap.add_argument("--clustering", default="spectral", choices=sorted(pipeline.CLUSTERING))
    ap.add_argument("--vad", default="silero", choices=["energy", "silero"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        t = time.perf_counter()
        write_conversation(path, args.minutes)
        print(f"synthesised {args.minutes:g} min in {time.perf_counter() - t:.1f} s; peak {peak_mb():.0f} MB")
        for label in args.models.split(","):
            row = run(path, label, args.clustering, args.vad)
            print("  ".join(f"{k}={v:.4f}" if isinstance(v, float) and "rtf" in k else f"{k}={v}"
                            for k, v in row.items()))


if __name__ == "__main__":
    main()
