"""Average epoch checkpoints of a training stage into the final model (rule average): the last N epochs, or
the N of lowest validation EER (``--select best``; N=1 is the best epoch itself)."""
import argparse
from pathlib import Path

import pandas as pd

from voxflow.errors import VoxflowError
from voxflow.train.average import average_checkpoints, select_epochs
from voxflow.train.checkpoint import epoch_checkpoints, save_checkpoint
from voxflow.train.logs import EPOCH_LOG
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stage-dir", required=True)
    ap.add_argument("--last", "--average", dest="n", type=int, default=1, help="number of epochs to average")
    ap.add_argument("--select", choices=["last", "best"], default="last")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    stage_dir = Path(args.stage_dir)
    found = dict(epoch_checkpoints(stage_dir))
    if not found:
        raise VoxflowError(f"{stage_dir}: no epoch_N.pt checkpoint to average")
    if args.select == "best":
        log_path = stage_dir / EPOCH_LOG
        if not log_path.is_file():
            raise VoxflowError(f"{log_path}: not found; select best needs the stage's training log")
        epochs = select_epochs(pd.read_parquet(log_path), "best", args.n, str(log_path))
        missing = [e for e in epochs if e not in found]
        if missing:
            raise VoxflowError(f"{stage_dir}: the checkpoints of epoch(s) {missing} are missing")
    else:
        epochs = sorted(found)[-args.n:]
    chosen = [found[e] for e in epochs]
    save_checkpoint(average_checkpoints(chosen), args.out)
    print(f"averaged ({args.select} {args.n}):", ", ".join(str(p) for p in chosen))


run(main)
