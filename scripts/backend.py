"""Fit a scoring back-end on training embeddings, or score a trial list and compute its metrics
(rules fit_backend and score)."""
import argparse
import json

import numpy as np

from voxflow.backend.cosine import score_trials
from voxflow.data.manifests import read_embeddings, read_table, write_table
from voxflow.errors import VoxflowError
from voxflow.metrics.verification import summarize
from voxflow.utils.atomic import atomic_path, write_text_atomic
from voxflow.utils.scripting import json_arg, run


def fit(args, cfg):
    ids, matrix, _ = read_embeddings(args.embeddings)
    if len(ids) > args.max_utts:
        keep = np.sort(np.random.default_rng(args.seed).choice(len(ids), args.max_utts, replace=False))
        matrix = matrix[keep]
    mean = matrix.mean(axis=0) if cfg.get("mean_subtraction") else np.zeros(0, np.float32)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, type=cfg["type"], mean=mean, n_train=len(matrix))
    print(f"{cfg['type']} back-end fitted on {len(matrix)} embeddings")


def score(args, cfg):
    trials = read_table(args.trials, "trials")
    ids, matrix, _ = read_embeddings(args.embeddings)
    try:
        model = np.load(args.model)
        mean = model["mean"]
    except (OSError, KeyError, ValueError) as exc:
        raise VoxflowError(f"{args.model}: not a back-end model written by voxflow: {exc}") from exc
    scores = score_trials(trials, ids, matrix, mean=mean if mean.size else None, backend_name=args.name)
    write_table(scores, args.scores, "scores")
    metrics = summarize(scores.score.to_numpy(), scores.label.to_numpy())
    metrics.update(backend=args.name, trials=args.trials, embeddings=args.embeddings)
    write_text_atomic(args.metrics, json.dumps(metrics, indent=1))
    print(json.dumps(metrics, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--embeddings", required=True)
    f.add_argument("--max-utts", type=int, default=20000)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True)
    s = sub.add_parser("score")
    s.add_argument("--trials", required=True)
    s.add_argument("--embeddings", required=True)
    s.add_argument("--model", required=True, help="fitted back-end (.npz)")
    s.add_argument("--name", default="cosine")
    s.add_argument("--scores", required=True)
    s.add_argument("--metrics", required=True)
    for p in (f, s):
        p.add_argument("--config", default='{"type": "cosine"}', help="the back-end's config as JSON")
    args = ap.parse_args()
    cfg = json_arg(args.config, "--config")
    (fit if args.what == "fit" else score)(args, cfg)


run(main)
