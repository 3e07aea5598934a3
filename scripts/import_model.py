"""Import the pretrained model an experiment starts from (rule import_model; config `init:`).

wespeaker, speechbrain, resemblyzer: ``voxflow.pretrained.import_model``; voxflow: a voxflow checkpoint (or a
directory holding model.pt) rewritten as a model directory, the extra keys of its meta.json (SEA settings) kept.
"""
import argparse
import json
from pathlib import Path

from voxflow.errors import VoxflowError
from voxflow.pretrained import SOURCES, import_model
from voxflow.pretrained.common import META_JSON, MODEL_PT, write_model
from voxflow.train.network import load_network
from voxflow.utils.scripting import run


def import_voxflow(source: str, out_dir: str) -> dict:
    path = Path(source)
    path = path / MODEL_PT if path.is_dir() else path
    if not path.is_file():
        raise VoxflowError(f"voxflow: {path} not found")
    meta_path = path.parent / META_JSON
    extra = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    extra = {k: v for k, v in extra.items() if k not in ("model_cfg", "data_cfg", "feat_dim", "embed_dim", "source")}
    model, model_cfg, data_cfg = load_network(path)
    return write_model(model, model_cfg, data_cfg, out_dir, source=f"voxflow:{path}", extra_meta=extra)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--from", dest="kind", required=True, choices=[*SOURCES, "voxflow"])
    ap.add_argument("--source", default="", help="the model's file or directory (empty: resemblyzer's packaged one)")
    ap.add_argument("--out", required=True, help="output directory (model.ts, model.onnx, model.pt, meta.json)")
    args = ap.parse_args()
    if args.kind == "voxflow":
        meta = import_voxflow(args.source, args.out)
    else:
        meta = import_model(args.kind, args.source or None, args.out)
    print(json.dumps(meta))


run(main)
