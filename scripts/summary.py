"""results/summary.csv and summary.md from every metrics and DER file (rule summary)."""
import argparse

import pandas as pd

from voxflow.report.summary import diarization_rows, summary_markdown, verification_rows
from voxflow.utils.atomic import atomic_path, write_text_atomic
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metrics", nargs="*", default=[])
    ap.add_argument("--der", nargs="*", default=[])
    ap.add_argument("--exp-dir", default="exp")
    ap.add_argument("--csv", required=True)
    ap.add_argument("--md", required=True)
    args = ap.parse_args()
    ver, dia = verification_rows(args.metrics), diarization_rows(args.der)
    with atomic_path(args.csv) as tmp:
        pd.concat([ver, dia], ignore_index=True).to_csv(tmp, index=False, float_format="%.5f")
    text = summary_markdown(ver, dia)
    write_text_atomic(args.md, text)
    print(text)


run(main)
