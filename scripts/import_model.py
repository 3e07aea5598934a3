"""Import the pretrained model an experiment or the cleaning seed model starts from (rules import_model and
import_seed_model; config ``init:``): ``voxflow.pretrained.import_model`` (wespeaker, speechbrain, resemblyzer,
voxflow: a model of an earlier voxflow run)."""
import argparse
import json

from voxflow.pretrained import SOURCES, import_model
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--from", dest="kind", required=True, choices=SOURCES)
    ap.add_argument("--source", default="", help="the model's file or directory (empty: resemblyzer's packaged one)")
    ap.add_argument("--out", required=True, help="output directory (model.ts, model.onnx, model.pt, meta.json)")
    args = ap.parse_args()
    print(json.dumps(import_model(args.kind, args.source or None, args.out)))


run(main)
