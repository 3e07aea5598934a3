"""Diarization timelines, reference against each system (rule diarization_plot)."""
import argparse
from pathlib import Path

import pandas as pd

from voxflow.diarize.rttm import read_rttm
from voxflow.report.plots import plot_diarization
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ref-dir", required=True)
    ap.add_argument("--names", nargs="+", required=True)
    ap.add_argument("--hyps", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    refs = sorted(Path(args.ref_dir).glob("*.rttm"))
    reference = pd.concat([read_rttm(p) for p in refs], ignore_index=True)
    plot_diarization(reference, {n: read_rttm(h) for n, h in zip(args.names, args.hyps)}, args.out)


run(main)
