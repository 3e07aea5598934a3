"""Diarization error rate of a hypothesis RTTM against reference RTTMs (rule der)."""
import argparse
import json
from pathlib import Path

import pandas as pd

from voxflow.diarize.rttm import read_rttm
from voxflow.errors import VoxflowError
from voxflow.metrics.der import diarization_error
from voxflow.utils.atomic import write_text_atomic
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hyp", required=True)
    ap.add_argument("--ref-dir", required=True, help="directory of <file_id>.rttm references")
    ap.add_argument("--collar", type=float, default=0.25)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    refs = sorted(Path(args.ref_dir).glob("*.rttm"))
    if not refs:
        raise VoxflowError(f"{args.ref_dir}: no reference .rttm files")
    reference = pd.concat([read_rttm(p) for p in refs], ignore_index=True)
    result = diarization_error(reference, read_rttm(args.hyp), collar=args.collar)
    result["collar"] = args.collar
    write_text_atomic(args.out, json.dumps(result, indent=1, default=float))
    print(json.dumps(result, indent=1, default=float))


run(main)
