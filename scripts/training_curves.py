"""Training curves of every experiment for the report (rule training_curves)."""
import argparse
from pathlib import Path

import pandas as pd

from voxflow.report.plots import plot_training_curves
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("checkpoints", nargs="+", help="EXP/<experiment>/<stage>/final.pt, stages in order")
    args = ap.parse_args()
    logs: dict[str, list[pd.DataFrame]] = {}
    for ckpt in args.checkpoints:
        stage_dir = Path(ckpt).parent
        logs.setdefault(stage_dir.parent.name, []).append(pd.read_parquet(stage_dir / "train_log.parquet"))
    plot_training_curves({k: pd.concat(v, ignore_index=True) for k, v in logs.items()}, args.out)


run(main)
