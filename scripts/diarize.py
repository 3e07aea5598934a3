"""Diarize every recording of a directory with an exported model (rule diarize)."""
import argparse
from pathlib import Path

from voxflow.corpora.importers import import_diarization_dir
from voxflow.diarize.run import diarize_files
from voxflow.diarize.rttm import write_rttm
from voxflow.embed.extract import Embedder
from voxflow.errors import VoxflowError
from voxflow.train.export import load_torchscript
from voxflow.utils.atomic import atomic_path
from voxflow.utils.scripting import json_arg, run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--audio-dir", required=True)
    ap.add_argument("--ref-dir", default="", help="reference RTTMs: checked first that every recording has one")
    ap.add_argument("--config", default="{}", help="the config's diarization section as JSON")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set-name", default="", help="the diarization set's name, for messages")
    ap.add_argument("--rttm", required=True)
    ap.add_argument("--turns", required=True)
    args = ap.parse_args()
    cfg = json_arg(args.config, "--config")
    model, meta = load_torchscript(args.model)
    embedder = Embedder(model, meta, device=args.device)
    rttms = None
    if args.ref_dir:  # fail before the long part when audio and references do not pair up
        table = import_diarization_dir(args.audio_dir, args.ref_dir)
        files, rttms = list(table.path), dict(zip(table.recording_id, table.rttm_path))
    else:
        files = sorted(p for p in Path(args.audio_dir).glob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise VoxflowError(f"{args.audio_dir}: no .wav or .flac recordings to diarize")
    table = diarize_files(embedder, files, cfg, rttms, where=f"diarization set {args.set_name}")
    write_rttm(table, args.rttm)
    with atomic_path(args.turns) as tmp:
        table.to_parquet(tmp, index=False)


run(main)
