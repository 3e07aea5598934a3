"""DET curves of several systems on one trial set (rule det_plot)."""
import argparse
from pathlib import Path

from voxflow.data.manifests import read_table
from voxflow.metrics.det import plot_det
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("scores", nargs="+", help="EXP/<system>/scores/<trials>/<backend>.parquet")
    args = ap.parse_args()
    systems = {}
    for path in args.scores:
        p = Path(path)
        table = read_table(p, "scores")
        systems[f"{p.parents[2].name} / {p.stem}"] = (table.score.to_numpy(), table.label.to_numpy())
    plot_det(systems, args.out, title=Path(args.scores[0]).parent.name)


run(main)
