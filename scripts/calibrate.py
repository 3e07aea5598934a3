"""Fit a logistic-regression calibration (optionally with quality measures) on a back-end's scores of the
calibration trials and apply it to its scores of a trial set; write the LLRs and their metrics (rule calibrate)."""
import argparse
import json

import pandas as pd

from voxflow.backend.calibration import calibrate_scores, embedding_norms, quality_columns
from voxflow.data.manifests import read_table, write_table
from voxflow.metrics.verification import summarize_llr
from voxflow.utils.atomic import write_text_atomic
from voxflow.utils.scripting import run


def quality_values(quality, utterances, embeddings):
    values = {}
    if "duration" in quality:
        utts = read_table(utterances, "utterances")
        values["duration"] = pd.Series(utts.duration_s.to_numpy(), index=utts.utt_id)
    if "norm" in quality:
        values["norm"] = embedding_norms(embeddings)
    return values


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cal-scores", required=True, help="the back-end's scores of the calibration trials")
    ap.add_argument("--scores", required=True, help="the back-end's scores of the trial set to calibrate")
    ap.add_argument("--p-target", type=float, default=0.01, help="prior the regression is weighted at")
    ap.add_argument("--quality", nargs="*", default=[], choices=["duration", "norm"])
    ap.add_argument("--cal-utterances", help="calibration corpus manifest (duration)")
    ap.add_argument("--cal-embeddings", help="calibration corpus embeddings (norm)")
    ap.add_argument("--utterances", help="trial corpus manifest (duration)")
    ap.add_argument("--embeddings", help="trial corpus embeddings (norm)")
    ap.add_argument("--out-scores", required=True)
    ap.add_argument("--out-metrics", required=True)
    args = ap.parse_args()
    cal, scores = read_table(args.cal_scores, "scores"), read_table(args.scores, "scores")
    out, model = calibrate_scores(cal, scores, args.p_target, args.quality,
                                  quality_values(args.quality, args.cal_utterances, args.cal_embeddings),
                                  quality_values(args.quality, args.utterances, args.embeddings), where=args.scores)
    write_table(out, args.out_scores, "scores")
    metrics = summarize_llr(out.score.to_numpy(), out.label.to_numpy(), args.p_target)
    features = ["score", *quality_columns(args.quality), "offset"]
    metrics["calibration"] = {"quality": args.quality, "weights": dict(zip(features, model.weights.tolist())),
                              "constant": [features[1 + j] for j in model.constant_quality],
                              "calibration_trials": len(cal), "calibration_scores": args.cal_scores}
    metrics.update(backend=out.backend.iloc[0] if len(out) else "", scores=args.scores)
    write_text_atomic(args.out_metrics, json.dumps(metrics, indent=1))
    print(json.dumps(metrics, indent=1))


run(main)
