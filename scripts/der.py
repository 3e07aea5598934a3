"""Diarization error rate of a hypothesis RTTM against reference RTTMs, within UEM regions if given (rule der).

The top-level numbers (and ``files``) are DER / JER at ``--collar`` with overlap scored; ``protocols`` holds
DER and JER at ``--collar``, 0.25 s and 0 s, each with overlap scored and skipped (voxflow.metrics.der)."""
import argparse
import json
from pathlib import Path

import pandas as pd

from voxflow.corpora.importers import import_diarization_dir
from voxflow.diarize.rttm import read_rttm, read_uem
from voxflow.errors import VoxflowError
from voxflow.metrics.der import diarization_protocols, protocol_key
from voxflow.utils.atomic import write_text_atomic
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hyp", required=True)
    ap.add_argument("--ref-dir", required=True, help="directory of <file_id>.rttm references")
    ap.add_argument("--audio-dir", default="", help="the recordings: each needs its RTTM, and each RTTM its audio")
    ap.add_argument("--uem", default="", help="directory of <file_id>.uem, or one UEM file (with --audio-dir)")
    ap.add_argument("--collar", type=float, default=0.25)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    uem = None
    if args.audio_dir:
        table = import_diarization_dir(args.audio_dir, args.ref_dir, args.uem or None)
        refs = list(table.rttm_path)
        if args.uem:
            uem = pd.concat([read_uem(p) for p in table.uem_path.unique()], ignore_index=True)
            uem = uem[uem.file_id.isin(set(table.recording_id))]
    else:
        if args.uem:
            raise VoxflowError("--uem needs --audio-dir")
        refs = sorted(Path(args.ref_dir).glob("*.rttm"))
    if not refs:
        raise VoxflowError(f"{args.ref_dir}: no reference .rttm files")
    reference = pd.concat([read_rttm(p) for p in refs], ignore_index=True)
    protocols = diarization_protocols(reference, read_rttm(args.hyp), collars=(args.collar, 0.25, 0.0), uem=uem)
    result = dict(protocols[protocol_key(args.collar, False)])  # today's keys: --collar, overlap scored
    result["protocols"] = {k: {n: x for n, x in v.items() if n != "files"} for k, v in protocols.items()}
    result["uem"] = args.uem or None
    write_text_atomic(args.out, json.dumps(result, indent=1, default=float))
    print(json.dumps(result, indent=1, default=float))


run(main)
