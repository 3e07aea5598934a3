"""Export a checkpoint (or an untrained network) to TorchScript and ONNX (rules export, export_untrained)."""
import argparse
import json
from pathlib import Path

import torch

from voxflow.audio.features import feature_dim
from voxflow.train.engine import build_network, load_network
from voxflow.train.export import export_onnx, export_torchscript
from voxflow.utils.scripting import json_arg, run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint")
    src.add_argument("--untrained-config", help="experiment config (JSON): export a randomly initialised network")
    ap.add_argument("--torchscript", required=True)
    ap.add_argument("--onnx")
    ap.add_argument("--meta", help="meta.json of the imported model the checkpoint comes from: its extra keys "
                                   "(SEA settings, front-end notes) are kept, its source recorded as init")
    args = ap.parse_args()
    if args.checkpoint:
        model, model_cfg, data_cfg = load_network(args.checkpoint)
    else:
        cfg = json_arg(args.untrained_config, "--untrained-config")
        model_cfg, data_cfg = cfg["model"], cfg.get("data", {})
        torch.manual_seed(int(cfg.get("seed", 0)))
        model = build_network(model_cfg, data_cfg).eval()
    fdim = feature_dim(data_cfg.get("features", {}))
    meta = {"model_cfg": model_cfg, "data_cfg": data_cfg, "feat_dim": fdim, "embed_dim": int(model.embed_dim),
            "source": args.checkpoint or "untrained"}
    if args.meta:
        imported = json.loads(Path(args.meta).read_text())
        meta = {**{k: v for k, v in imported.items() if k not in meta}, **meta, "init": imported.get("source")}
    export_torchscript(model, meta, args.torchscript)
    if args.onnx:
        export_onnx(model, args.onnx)
    print(json.dumps(meta))


run(main)
