"""results/summary.csv and summary.md from every metrics and DER file (rule summary)."""
import argparse

from voxflow.report.summary import write_summary
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metrics", nargs="*", default=[])
    ap.add_argument("--der", nargs="*", default=[])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--md", required=True)
    args = ap.parse_args()
    print(write_summary(args.csv, args.md, args.metrics, args.der)[1])


run(main)
