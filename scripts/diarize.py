"""Diarize every recording of a directory with an exported model (rule diarize)."""
import argparse
from pathlib import Path

import pandas as pd

from voxflow.audio.io import read_audio
from voxflow.data.importers import import_diarization_dir
from voxflow.diarize.pipeline import diarize
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
    ap.add_argument("--rttm", required=True)
    ap.add_argument("--turns", required=True)
    args = ap.parse_args()
    cfg = json_arg(args.config, "--config")
    model, meta = load_torchscript(args.model)
    embedder = Embedder(model, meta, device=args.device)
    if args.ref_dir:  # fail before the long part when audio and references do not pair up
        files = [Path(p) for p in import_diarization_dir(args.audio_dir, args.ref_dir).path]
    else:
        files = sorted(p for p in Path(args.audio_dir).glob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise VoxflowError(f"{args.audio_dir}: no .wav or .flac recordings to diarize")
    turns = []
    for path in files:
        wav, sr = read_audio(path, expected_sr=embedder.sample_rate, resample=True)
        turns.append(diarize(wav, sr, path.stem, lambda segs: embedder.embed_waveforms(segs, sr),
                             window_s=cfg.get("window_s", 1.5), shift_s=cfg.get("shift_s", 0.75),
                             max_speakers=cfg.get("max_speakers", 8)))
        print(f"{path.stem}: {turns[-1].speaker.nunique()} speakers, {len(turns[-1])} turns")
    table = pd.concat(turns, ignore_index=True)
    write_rttm(table, args.rttm)
    with atomic_path(args.turns) as tmp:
        table.to_parquet(tmp, index=False)


run(main)
