"""Fit a scoring back-end on training embeddings, or score a trial list (streamed in batches) and compute its
metrics (rules fit_backend and score)."""
import argparse
import json
from pathlib import Path

import numpy as np

from voxflow.backend.recipe import fit_backend, load_backend, save_backend
from voxflow.backend.trial_stream import TRIAL_BATCH, score_trial_file
from voxflow.data.manifests import read_embeddings
from voxflow.errors import VoxflowError
from voxflow.metrics.verification import summarize
from voxflow.utils.atomic import write_text_atomic
from voxflow.utils.scripting import json_arg, run


def fit(args, cfg):
    ids, matrix, meta = read_embeddings(args.embeddings)
    if "spk_id" not in meta.columns:
        raise VoxflowError(f"{args.embeddings}: back-end training embeddings need a spk_id column")
    spk = meta["spk_id"].to_numpy()
    if len(ids) > args.max_utts:
        keep = np.sort(np.random.default_rng(args.seed).choice(len(ids), args.max_utts, replace=False))
        matrix, spk = matrix[keep], spk[keep]
    where = f"corpus {Path(args.embeddings).stem!r} ({args.embeddings})"
    save_backend(fit_backend(cfg, matrix, spk, where=where), args.out)
    print(f"{cfg['type']} back-end (norm {cfg.get('norm', 'none')}) fitted on {len(matrix)} embeddings")


def score(args, cfg):
    scores, labels = score_trial_file(load_backend(args.model), args.trials, args.embeddings, args.name,
                                      args.scores, where=args.model, batch_rows=args.batch_trials)
    metrics = summarize(scores, labels)
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
    s.add_argument("--batch-trials", type=int, default=TRIAL_BATCH,
                   help="trials read, scored and written at a time (memory per trial stays small)")
    for p in (f, s):
        p.add_argument("--config", default='{"type": "cosine"}', help="the back-end's config as JSON")
    args = ap.parse_args()
    cfg = json_arg(args.config, "--config")
    (fit if args.what == "fit" else score)(args, cfg)


run(main)
