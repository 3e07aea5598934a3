"""Train one or more stages of an experiment (rules train_stage and train_seed_model).

Run by hand with the same arguments the rule uses; the log shows them.
"""
import argparse
import shutil
from pathlib import Path

import pandas as pd

from voxflow.data.manifests import read_table
from voxflow.train.engine import run_stage
from voxflow.train.stage_config import resolve_stage
from voxflow.utils.atomic import atomic_path
from voxflow.utils.scripting import json_arg, run


def shard_paths(shards_dir: str) -> list[str]:
    table = read_table(Path(shards_dir) / "shards.parquet", "shards")
    return [p if Path(p).is_absolute() else str(Path(shards_dir) / Path(p).name) for p in table.shard_path]


def excluded_segments(path: str | None) -> dict:
    if not path:
        return {}
    table = read_table(path, "exclusions")
    out: dict[str, list] = {}
    for row in table.itertuples(index=False):
        out.setdefault(row.utt_id, []).append((float(row.start_s), float(row.end_s)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True, help="the experiment's config as JSON")
    ap.add_argument("--stages", nargs="+", required=True, choices=["warmup", "margin", "finetune"])
    ap.add_argument("--init", help="checkpoint of the previous stage")
    ap.add_argument("--utterances", required=True)
    ap.add_argument("--shards", required=True, help="shard directory (with shards.parquet)")
    ap.add_argument("--noise")
    ap.add_argument("--rirs")
    ap.add_argument("--exclusions")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    exp_cfg = json_arg(args.config, "--config")
    utts = read_table(args.utterances, "utterances")
    spk2id = {spk: i for i, spk in enumerate(sorted(utts.spk_id.unique()))}
    noise = pd.read_parquet(args.noise) if args.noise else None
    rirs = pd.read_parquet(args.rirs) if args.rirs else None
    source, excluded = shard_paths(args.shards), excluded_segments(args.exclusions)
    out_dir, init = Path(args.out_dir), args.init
    for stage in args.stages:
        stage_dir = out_dir if len(args.stages) == 1 else out_dir / stage
        init = run_stage(resolve_stage(exp_cfg, stage), utts, source, spk2id, stage_dir, init_checkpoint=init,
                         excluded=excluded, noise_df=noise, rir_df=rirs)
    if len(args.stages) > 1:
        with atomic_path(out_dir / "final.pt") as tmp:
            shutil.copyfile(init, tmp)


run(main)
