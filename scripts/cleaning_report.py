"""Markdown summary of speaker cleaning for the report (rule cleaning_report)."""
import argparse
import json

import pandas as pd

from voxflow.report.cleaning import cleaning_markdown
from voxflow.utils.atomic import write_text_atomic
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--summary", required=True)
    ap.add_argument("--speakers", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.summary) as f:
        summary = json.load(f)
    text = cleaning_markdown(summary, pd.read_parquet(args.speakers))
    write_text_atomic(args.out, text)
    print(text)


run(main)
