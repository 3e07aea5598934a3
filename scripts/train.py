"""Train one or more stages of an experiment (rules train_stage and train_seed_model).

Run by hand with the same arguments the rule uses; the log shows them. Several processes (DDP) are started
by torchrun, as the rule does: torchrun --standalone --nproc_per_node=N scripts/train.py ...
"""
import argparse
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

import pandas as pd

from voxflow.data.manifests import read_table
from voxflow.errors import VoxflowError
from voxflow.train import ddp
from voxflow.train.engine import run_stage
from voxflow.train.stage_config import resolve_stage
from voxflow.train.validation import ValidationSet
from voxflow.utils.atomic import atomic_path
from voxflow.utils.scripting import json_arg, run


def shard_paths(shards_dir: str) -> pd.DataFrame:
    """The shard list, paths resolved; its sha256 column lets training verify each shard as it streams."""
    table = read_table(Path(shards_dir) / "shards.parquet", "shards")
    table["shard_path"] = [p if Path(p).is_absolute() else str(Path(shards_dir) / Path(p).name)
                           for p in table.shard_path]
    return table


def excluded_segments(path: str | None) -> dict:
    if not path:
        return {}
    table = read_table(path, "exclusions")
    out: dict[str, list] = {}
    for row in table.itertuples(index=False):
        out.setdefault(row.utt_id, []).append((float(row.start_s), float(row.end_s)))
    return out


def validation_set(segments: str | None, pairs: str | None, train_speakers) -> ValidationSet | None:
    """The validation pairs, whose speakers must not be training speakers."""
    if not segments and not pairs:
        return None
    if not (segments and pairs):
        raise VoxflowError("--validation-segments and --validation-pairs go together")
    valset = ValidationSet.from_files(segments, pairs)
    shared = sorted(set(valset.segments.spk_id) & set(train_speakers))
    if shared:
        raise VoxflowError(f"{segments}: {len(shared)} validation speaker(s) are training speakers too, e.g. "
                           f"{shared[:3]}; validate on held-out speakers")
    return valset


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True, help="the experiment's config as JSON")
    ap.add_argument("--stages", nargs="+", required=True, choices=["warmup", "margin", "finetune"])
    ap.add_argument("--init", help="checkpoint of the previous stage, or the imported model (config init)")
    ap.add_argument("--utterances", required=True)
    ap.add_argument("--shards", help="shard directory (with shards.parquet); without it the audio files named "
                                     "in --utterances are read directly")
    ap.add_argument("--noise")
    ap.add_argument("--rirs")
    ap.add_argument("--exclusions")
    ap.add_argument("--validation-segments", help="validation segments (rule validation_pairs)")
    ap.add_argument("--validation-pairs", help="validation pairs (rule validation_pairs)")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    rank = int(os.environ.get("RANK", "0") or 0)
    if rank:
        logging.getLogger().setLevel(logging.WARNING)
    else:
        launcher = [sys.executable]
        if "WORLD_SIZE" in os.environ:
            procs = os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])
            launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
        print(f"command: {shlex.join(launcher + sys.argv)}", flush=True)
    exp_cfg = json_arg(args.config, "--config")
    utts = read_table(args.utterances, "utterances")
    spk2id = {spk: i for i, spk in enumerate(sorted(utts.spk_id.unique()))}
    noise = pd.read_parquet(args.noise) if args.noise else None
    rirs = pd.read_parquet(args.rirs) if args.rirs else None
    source = shard_paths(args.shards) if args.shards else utts
    excluded = excluded_segments(args.exclusions)
    valset = validation_set(args.validation_segments, args.validation_pairs, spk2id)
    out_dir, init = Path(args.out_dir), args.init
    try:
        for stage in args.stages:
            stage_dir = out_dir if len(args.stages) == 1 else out_dir / stage
            init = run_stage(resolve_stage(exp_cfg, stage), utts, source, spk2id, stage_dir, init_checkpoint=init,
                             excluded=excluded, noise_df=noise, rir_df=rirs, validation=valset)
        if len(args.stages) > 1 and rank == 0:
            with atomic_path(out_dir / "final.pt") as tmp:
                shutil.copyfile(init, tmp)
    finally:
        ddp.shutdown()


run(main)
