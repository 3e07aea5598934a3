"""Speed of every model on the CPU: training (forward + backward) and inference in PyTorch eager against ONNX Runtime.

    python benchmarks/models.py [--models xvector,resnet34,...] [--max-batch 64] [--frames 200] [--threads 2]

Each network is built at its paper size (x-vector and the LSTMs on 30 MFCC, ResNets and ECAPA-TDNN on 80 fbank)
and fed random 2 s inputs (200 frames). Training: forward, AAM-softmax over 5,994 classes (VoxCeleb2 dev) and
backward, no optimiser step. Inference: eval-mode forward without gradients, in PyTorch eager and in ONNX Runtime
(CPU provider, the same thread count) on the exported graph; the last column is the largest difference between
the two embeddings.

Batches: 64 x 2 s is the target, but a ResNet293 step at 64 takes minutes on two cores, so each model's batch
doubles from 2 only while a call still fits ``--step-budget`` seconds (half of it for inference), up to
``--max-batch``; the printed batch is the one measured. Rates are the best of ``--repeats`` timed calls after a
warm-up call. With the defaults the whole script runs in about 3 minutes on a 2-core machine.

ONNX export: by default the TorchScript-based exporter (``dynamo=False``), which exports the deep ResNets in seconds;
``--dynamo`` uses the exporter the workflow's export rule picks (torch.export for the convolutional networks, which
takes about a minute for ResNet293).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from voxflow.audio.features import feature_dim
from voxflow.losses import build_head
from voxflow.models.export import export_onnx, is_recurrent
from voxflow.train.network import build_network

MFCC30 = {"kind": "mfcc", "num_mel_bins": 30, "num_ceps": 30}
FBANK80 = {"kind": "fbank", "num_mel_bins": 80}
MODELS = {  # label: (model config, features)
    "xvector": ({"name": "xvector"}, MFCC30),
    "lstm_netvlad": ({"name": "lstm_netvlad", "clusters": 14}, MFCC30),
    "lstm_avg": ({"name": "lstm_avg"}, MFCC30),
    "resnet34": ({"name": "resnet34"}, FBANK80),
    "resnet221": ({"name": "resnet221"}, FBANK80),
    "resnet293": ({"name": "resnet293"}, FBANK80),
    "ecapa_c512": ({"name": "ecapa_tdnn", "channels": 512}, FBANK80),
    "ecapa_c1024": ({"name": "ecapa_tdnn", "channels": 1024}, FBANK80),
}
CLASSES = 5994
PROBE_BATCH = 2


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_time(fn, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls of ``fn`` (after one untimed warm-up call)."""
    fn()
    return min(seconds(fn) for _ in range(repeats))


def grown_batch(step, budget: float, max_batch: int, repeats: int) -> tuple[int, float]:
    """(batch, best seconds) of ``step(batch)``: the batch doubles from PROBE_BATCH while a call at twice the
    batch would still fit ``budget`` seconds (at most ``max_batch``); the final batch gets ``repeats`` calls."""
    batch = PROBE_BATCH
    step(batch)  # warm-up
    while True:
        t = seconds(lambda: step(batch))
        if batch >= max_batch or 2 * t > budget:
            break
        batch = min(max_batch, 2 * batch)
    return batch, min([t] + [seconds(lambda: step(batch)) for _ in range(repeats - 1)])


def train_rate(model, fdim: int, frames: int, args) -> tuple[int, float]:
    """(batch, samples/s) of forward + AAM-softmax + backward."""
    head = build_head("aamsoftmax", model.neck_dim, CLASSES, scale=32.0, margin=0.2)
    model.train()
    head.train()

    def step(batch: int):
        feats = torch.randn(batch, frames, fdim)
        labels = torch.randint(0, CLASSES, (batch,))
        model.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        F.cross_entropy(head(model.neck(model(feats)), labels), labels).backward()

    batch, best = grown_batch(step, args.step_budget, args.max_batch, args.repeats)
    return batch, batch / best


def inference_rates(model, fdim: int, frames: int, onnx_path: Path, args) -> tuple[int, float, float, float]:
    """(batch, eager samples/s, ONNX Runtime samples/s, max |eager - ORT|) of eval-mode forward passes."""
    import onnxruntime as ort

    model.eval()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    inputs = {}

    def feats(batch: int) -> torch.Tensor:  # the same input for both runtimes
        if batch not in inputs:
            inputs[batch] = torch.randn(batch, frames, fdim)
        return inputs[batch]

    def eager(batch: int):
        with torch.no_grad():
            return model(feats(batch)).numpy()

    def onnx(batch: int):
        return session.run(None, {"feats": feats(batch).numpy()})[0]

    batch, t_eager = grown_batch(eager, args.step_budget / 2, args.max_batch, args.repeats)
    t_ort = best_time(lambda: onnx(batch), args.repeats)
    diff = float(np.abs(eager(batch) - onnx(batch)).max())
    return batch, batch / t_eager, batch / t_ort, diff


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--frames", type=int, default=200, help="frames per sample (200 = 2 s)")
    ap.add_argument("--step-budget", type=float, default=4.0, help="seconds a timed training call may take")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per measurement; the best counts")
    ap.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    ap.add_argument("--dynamo", action="store_true", help="export as the workflow does (slower export)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("torch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.models.split(","):
            model_cfg, features = MODELS[label]
            torch.manual_seed(0)
            model = build_network(model_cfg, {"features": features})
            fdim = feature_dim(features)
            t0 = time.perf_counter()
            train_batch, train_sps = train_rate(model, fdim, args.frames, args)
            onnx_path = Path(tmp) / f"{label}.onnx"
            export_onnx(model, onnx_path, dynamo=args.dynamo and not is_recurrent(model))
            infer_batch, eager_sps, ort_sps, diff = inference_rates(model, fdim, args.frames, onnx_path, args)
            rows.append({
                "model": label, "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                "train_batch": train_batch, "train_samples/s": train_sps, "infer_batch": infer_batch,
                "eager_samples/s": eager_sps, "ort_samples/s": ort_sps, "ort/eager": ort_sps / eager_sps,
                "max_abs_diff": diff,
            })
            print(f"{label}: {time.perf_counter() - t0:.0f} s", flush=True)
    exporter = "torch.export (as the workflow)" if args.dynamo else "TorchScript-based"
    print(f"\nCPU, {args.threads} thread(s), {args.frames} frames per sample, random inputs; training = forward + "
          f"AAM-softmax ({CLASSES} classes) + backward; ONNX via the {exporter} exporter; "
          f"total {time.perf_counter() - start:.0f} s")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
