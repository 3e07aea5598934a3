"""Average the last N epoch checkpoints of a training stage (rule average)."""
import argparse

from voxflow.errors import VoxflowError
from voxflow.train.average import average_checkpoints
from voxflow.train.checkpoint import epoch_checkpoints, save_checkpoint
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stage-dir", required=True)
    ap.add_argument("--last", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    found = [p for _, p in epoch_checkpoints(args.stage_dir)]
    if not found:
        raise VoxflowError(f"{args.stage_dir}: no epoch_N.pt checkpoint to average")
    chosen = found[-args.last:]
    save_checkpoint(average_checkpoints(chosen), args.out)
    print("averaged", ", ".join(str(p) for p in chosen))


run(main)
