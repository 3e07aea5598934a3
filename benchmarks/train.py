"""Training speed per model, and the engine's overhead against a bare loop over the same batches.

For each model (the papers' sizes: x-vector and LSTM-NetVLAD on 30 MFCC, ResNet34 and ECAPA-TDNN on 80 fbank)
a list of random feature batches is made once; then, in alternating rounds, a bare loop (forward, AAM-softmax
loss, backward, optimiser step) and the engine (``run_stage`` over the same batches: LR and margin schedules,
metrics, logging, DDP hooks, the epoch checkpoint) train a fresh copy of the network on them. Reported: steps/s
and samples/s of each (best round; the order alternates between rounds), the engine's loop overhead (target
< 5 %; also per step), and the engine's whole stage time (set-up, epoch checkpoint and logs included) against
the bare loop's. Add ``--models tiny`` for a network so small that the per-step bookkeeping dominates.

    python benchmarks/train.py [--batch 4] [--steps 12] [--rounds 2] [--threads 1] [--models xvector,...]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from voxflow.losses import build_head
from voxflow.train.engine import run_stage
from voxflow.train.network import build_network, make_optimizer, neck_dim

MODELS = {  # name: (model config, feature config)
    "xvector": ({"name": "xvector"}, {"kind": "mfcc", "num_mel_bins": 30, "num_ceps": 30}),
    "resnet34": ({"name": "resnet34"}, {"kind": "fbank", "num_mel_bins": 80}),
    "ecapa_tdnn": ({"name": "ecapa_tdnn"}, {"kind": "fbank", "num_mel_bins": 80}),
    "lstm_netvlad": ({"name": "lstm_netvlad"}, {"kind": "mfcc", "num_mel_bins": 30, "num_ceps": 30}),
    "tiny": ({"name": "xvector", "channels": 16, "stats_channels": 32, "embed_dim": 16},
             {"kind": "mfcc", "num_mel_bins": 30, "num_ceps": 30}),
}
CLASSES = 200
OPTIMIZER = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
HEAD = {"name": "aamsoftmax", "scale": 32.0, "margin": 0.2}


def make_batches(feat_dim: int, batch: int, steps: int, frames: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(batch, frames, feat_dim, generator=gen), torch.randint(0, CLASSES, (batch,), generator=gen))
            for _ in range(steps)]


def bare_loop(model_cfg: dict, data_cfg: dict, batches: list) -> float:
    """Seconds of a plain training loop over ``batches`` (fresh network, same math as the engine)."""
    torch.manual_seed(0)
    model = build_network(model_cfg, data_cfg)
    head = build_head(HEAD["name"], neck_dim(model, batches[0][0].shape[-1]), CLASSES, scale=HEAD["scale"],
                      margin=HEAD["margin"])
    params = list(model.parameters()) + list(head.parameters())
    opt = make_optimizer(params, OPTIMIZER)
    model.train()
    head.train()
    t0 = time.perf_counter()
    for feats, labels in batches:
        loss = F.cross_entropy(head(model.neck(model(feats)), labels), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
    return time.perf_counter() - t0


def engine_run(model_cfg: dict, data_cfg: dict, batches: list, workdir: Path) -> tuple[float, float]:
    """(loop seconds, whole stage seconds) of ``run_stage`` over ``batches`` (one epoch)."""
    batch = batches[0][0].shape[0]
    utts = pd.DataFrame({"utt_id": [f"u{i}" for i in range(len(batches) * batch)], "duration_s": 2.0})
    spk2id = {f"s{i:03d}": i for i in range(CLASSES)}
    cfg = {"stage": "bench", "epochs": 1, "seed": 0, "device": "cpu", "model": model_cfg,
           "data": {**data_cfg, "batch_size": batch}, "optimizer": OPTIMIZER, "clip_grad_norm": 10.0,
           "scheduler": {"name": "warmup_exp", "warmup_steps": 2, "final_lr": 0.001},
           "head": {**HEAD, "schedule": {"start_epoch": 0, "end_epoch": 1}}, "log_every_steps": 5,
           "tensorboard": True}
    t0 = time.perf_counter()
    run_stage(cfg, utts, utts, spk2id, workdir, batches=lambda epoch: iter(batches))
    total = time.perf_counter() - t0
    return float(pd.read_parquet(workdir / "train_log.parquet").seconds.iloc[0]), total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="xvector,resnet34,ecapa_tdnn,lstm_netvlad")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--frames", type=int, default=200, help="frames per sample (200 = 2 s)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating bare/engine rounds; the best counts")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steady numbers on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for name in args.models.split(","):
        model_cfg, feat_cfg = MODELS[name]
        data_cfg = {"features": feat_cfg}
        feat_dim = feat_cfg["num_ceps"] if feat_cfg["kind"] == "mfcc" else feat_cfg["num_mel_bins"]
        batches = make_batches(feat_dim, args.batch, args.steps, args.frames)
        params = sum(p.numel() for p in build_network(model_cfg, data_cfg).parameters()) / 1e6
        bare, loop, stage = [], [], []
        for r in range(args.rounds):
            for which in ("bare", "engine") if r % 2 == 0 else ("engine", "bare"):  # alternate the order
                if which == "bare":
                    bare.append(bare_loop(model_cfg, data_cfg, batches))
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    seconds, total = engine_run(model_cfg, data_cfg, batches, Path(tmp) / "stage")
                loop.append(seconds)
                stage.append(total)
        b, e, s = min(bare), min(loop), min(stage)
        rows.append({"model": name, "params_M": round(params, 2), "batch": args.batch,
                     "bare_steps/s": args.steps / b, "engine_steps/s": args.steps / e,
                     "engine_samples/s": args.steps * args.batch / e, "loop_overhead_%": 100 * (e / b - 1),
                     "overhead_ms/step": 1000 * (e - b) / args.steps,
                     "stage_s": s, "stage/bare": s / b})
        print(f"{name}: bare {b:.2f} s, engine loop {e:.2f} s, whole stage {s:.2f} s", flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.steps} steps of {args.batch} x {args.frames} frames, {args.threads} thread(s), best of "
          f"{args.rounds} rounds")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
