"""Merge corpus manifests into the training set (rule train_set)."""
import argparse

from voxflow.corpora.importers import merge_manifests
from voxflow.data.manifests import read_table, write_table
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("manifests", nargs="+")
    args = ap.parse_args()
    merged = merge_manifests({p: read_table(p, "utterances") for p in args.manifests})
    write_table(merged, args.out, "utterances")
    print(f"training set: {len(merged)} utterances, {merged.spk_id.nunique()} speakers")


run(main)
