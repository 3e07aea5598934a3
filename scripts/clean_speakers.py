"""Kaseva & Kurimo's speaker cleaning on segment embeddings (rule clean_speakers)."""
import argparse
import json

import pandas as pd

from voxflow.cluster.cleaning import clean_speakers
from voxflow.report.cleaning import compare_with_ground_truth
from voxflow.data.manifests import read_embeddings, write_table
from voxflow.utils.atomic import atomic_path, write_text_atomic
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--segments", required=True, help="segment embeddings Parquet")
    ap.add_argument("--majority", type=float, default=0.6)
    ap.add_argument("--min-silhouette", type=float, default=0.3)
    ap.add_argument("--ground-truth", default="", help="CSV utt_id,labeled_spk,true_spk of known mislabels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="speakers split at once")
    ap.add_argument("--exclusions", required=True)
    ap.add_argument("--speakers", required=True)
    ap.add_argument("--summary", required=True)
    args = ap.parse_args()
    matrix, segments = read_embeddings(args.segments, columns=["utt_id", "spk_id", "start_s", "end_s"])[1:]
    exclusions, speakers = clean_speakers(segments, matrix, majority=args.majority,
                                          min_silhouette=args.min_silhouette, seed=args.seed,
                                          threads=args.threads)
    summary = compare_with_ground_truth(segments, exclusions, args.ground_truth or None)
    summary.update(majority=args.majority, min_silhouette=args.min_silhouette,
                   speakers=len(speakers), speakers_cleaned=int(speakers.excluded.sum()))
    write_table(exclusions, args.exclusions, "exclusions")
    with atomic_path(args.speakers) as tmp:
        pd.DataFrame(speakers).to_parquet(tmp, index=False)
    write_text_atomic(args.summary, json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


run(main)
