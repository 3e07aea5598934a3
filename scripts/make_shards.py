"""Pack the training set into tar shards with a shard list (rule shards)."""
import argparse
from pathlib import Path

from voxflow.data.manifests import read_table, write_table
from voxflow.data.shards import write_shards
from voxflow.utils.scripting import json_arg, run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--utterances", required=True)
    ap.add_argument("--out", required=True, help="output directory; the list is OUT/shards.parquet")
    ap.add_argument("--config", default="{}", help="the config's shards section as JSON")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = json_arg(args.config, "--config")
    utts = read_table(args.utterances, "utterances")
    shards = write_shards(utts, args.out, utts_per_shard=cfg.get("utts_per_shard", 1000), seed=args.seed,
                          jobs=cfg.get("jobs", 1))
    write_table(shards, Path(args.out) / "shards.parquet", "shards")
    print(f"{len(shards)} shards, {int(shards.num_utts.sum())} utterances, {shards.num_bytes.sum() / 1e6:.1f} MB")


run(main)
