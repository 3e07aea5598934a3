"""`voxflow` command line for users with an exported model: embed, verify, diarize; importing pretrained models
from other toolkits; corpus tools; the summary of a (partial) workflow run."""

from __future__ import annotations

import argparse
from pathlib import Path

from voxflow.corpus_cli import add_corpus_parser, run_corpus_command
from voxflow.errors import VoxflowError
from voxflow.pretrained import SOURCES
from voxflow.utils.scripting import run


def _embedder(model_path: str, device: str):
    from voxflow.api import load_model

    return load_model(model_path, device=device).embedder


def cmd_embed(args) -> None:
    from voxflow.api import load_model
    from voxflow.data.manifests import write_embeddings

    model = load_model(args.model, device=args.device, runtime=args.runtime)
    ids, matrix = model.embed_files(args.audio, mode=args.mode)
    write_embeddings(ids, matrix, args.model, args.out)
    print(f"{len(ids)} embeddings of dimension {matrix.shape[1]} ({model.engine}) -> {args.out}")


def cmd_verify(args) -> None:
    from voxflow.api import load_model

    result = load_model(args.model, device=args.device, runtime=args.runtime).verify(args.enroll, args.test, args.threshold, mode=args.mode)
    print(f"cosine {result.score:.4f}" + ("" if result.same is None else
                                          f" -> {'same' if result.same else 'different'} speaker"))


def cmd_diarize(args) -> None:
    from voxflow.diarize.rttm import write_rttm
    from voxflow.diarize.run import diarize_files

    turns = diarize_files(_embedder(args.model, args.device), [args.audio], diarize_config(args),
                          {Path(args.audio).stem: args.ref_rttm} if args.ref_rttm else None, where=args.audio)
    write_rttm(turns, args.rttm)
    print(f"{turns.speaker.nunique()} speakers, {len(turns)} turns -> {args.rttm}")


# diarize flags that set a clustering setting of the config (flag dest -> setting)
CLUSTER_FLAGS = {"p_pruning": "p_pruning", "min_neighbors": "min_neighbors", "ahc_threshold": "threshold",
                 "min_cluster_size": "min_cluster_size", "umap_neighbors": "n_neighbors",
                 "umap_components": "n_components", "umap_min_dist": "min_dist", "merge_threshold": "merge_threshold"}


def _setting(text: str, flag: str) -> tuple[str, object]:
    """``key=value`` of a --vad-setting / --cluster-setting flag, the value read as YAML (number, bool, text)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise VoxflowError(f"{flag} {text!r}: expected KEY=VALUE, e.g. {flag} threshold=0.3")
    return key.strip(), yaml.safe_load(value)


def diarize_config(args) -> dict:
    """The diarization config section the diarize command's flags describe."""
    vad = {"name": args.vad, **dict(_setting(t, "--vad-setting") for t in args.vad_setting)}
    clustering = {"name": args.clustering, **dict(_setting(t, "--cluster-setting") for t in args.cluster_setting)}
    for dest, key in CLUSTER_FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            clustering[key] = value if dest != "p_pruning" or value == "auto" else float(value)
    cfg = {"vad": vad, "clustering": clustering, "num_speakers": args.num_speakers, "min_speakers": args.min_speakers,
           "max_speakers": args.max_speakers, "subseg_cmn": args.subseg_cmn, "window_s": args.window_s,
           "shift_s": args.shift_s, "block_s": args.block_s, "overlap": args.overlap}
    if args.overlap_margin is not None:
        cfg["overlap_margin"] = args.overlap_margin
    return cfg


def cmd_summarize(args) -> None:
    from voxflow.report.summary import SCHEMA, load_workflow_config, summarize

    config = load_workflow_config(args.configfile or _default_config(), args.schema or SCHEMA)
    _, message = summarize(config)
    print(Path(config["results_dir"], "summary.md").read_text())
    print(message)


def cmd_model(args) -> None:
    from voxflow.pretrained import import_model

    meta = import_model(args.kind, args.source, args.out)
    print(f"{args.kind} model -> {args.out}: model.ts, model.onnx, model.pt, meta.json "
          f"({meta['model_cfg']['name']}, {meta['feat_dim']} features in, {meta['embed_dim']}-d embeddings)")


def _default_config() -> Path:
    """config/config.yaml here, else the repository's (the Snakefile's default)."""
    here = Path("config/config.yaml")
    return here if here.is_file() else Path(__file__).resolve().parents[1] / here


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="voxflow", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    e = sub.add_parser("embed", help="embed audio files into an embeddings Parquet")
    e.add_argument("model", help="exported model (model.ts)")
    e.add_argument("audio", nargs="+")
    e.add_argument("--out", required=True)
    v = sub.add_parser("verify", help="cosine score of two recordings")
    v.add_argument("model")
    v.add_argument("enroll")
    v.add_argument("test")
    v.add_argument("--threshold", type=float)
    d = sub.add_parser("diarize", help="diarize one recording into an RTTM")
    d.add_argument("model")
    d.add_argument("audio")
    d.add_argument("--rttm", required=True)
    d.add_argument("--vad", choices=["energy", "silero", "oracle"], default="energy",
                   help="speech detection (oracle: the --ref-rttm turns)")
    d.add_argument("--vad-setting", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the VAD, e.g. threshold=0.3 (silero), threshold_db=-30 (energy); repeatable")
    d.add_argument("--clustering", choices=["spectral", "ahc", "umap_hdbscan"], default="spectral")
    d.add_argument("--p-pruning", help="spectral: fraction of neighbours kept per row, or auto (NME-SC)")
    d.add_argument("--min-neighbors", type=int, help="spectral: at least this many neighbours per row (10)")
    d.add_argument("--ahc-threshold", type=float, help="ahc: stop at this cosine distance (0.3)")
    d.add_argument("--min-cluster-size", type=int, help="ahc / umap_hdbscan: smaller clusters are no speakers (4)")
    d.add_argument("--umap-neighbors", type=int, help="umap_hdbscan: UMAP n_neighbors (16)")
    d.add_argument("--umap-components", type=int, help="umap_hdbscan: UMAP dimensions (32)")
    d.add_argument("--umap-min-dist", type=float, help="umap_hdbscan: UMAP min_dist (0.05)")
    d.add_argument("--merge-threshold", type=float, help="umap_hdbscan: merge clusters closer than this (0.3)")
    d.add_argument("--cluster-setting", action="append", default=[], metavar="KEY=VALUE",
                   help="any clustering setting of the config, e.g. seed=1; repeatable")
    d.add_argument("--ref-rttm", help="reference RTTM of the recording, for --vad oracle / --num-speakers oracle")
    d.add_argument("--num-speakers", help="an integer, oracle (from --ref-rttm) or a table '<recording> <count>'")
    d.add_argument("--min-speakers", type=int, default=1)
    d.add_argument("--max-speakers", type=int, default=8)
    d.add_argument("--subseg-cmn", action=argparse.BooleanOptionalAction, default=True,
                   help="CMN per sub-segment (default) or per VAD region")
    d.add_argument("--window-s", type=float, default=1.5, help="sub-segment length")
    d.add_argument("--shift-s", type=float, default=0.75, help="sub-segment shift")
    d.add_argument("--block-s", type=float, default=600.0, help="seconds of audio read and VAD-ed at a time")
    d.add_argument("--overlap", action="store_true", help="overlap assignment: turns of two speakers may overlap")
    d.add_argument("--overlap-margin", type=float, help="overlap: how much less similar the second speaker may be")
    for p in (e, v, d):
        p.add_argument("--device", default="cpu")
    for p in (e, v):
        p.add_argument("--mode", choices=["sea", "full"], default="sea")
        p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                       help="torch (model.ts), onnx (model.onnx beside it, ONNX Runtime, CPU) or auto (default: "
                       "onnx on the CPU when model.onnx exists, measured faster there; torch on CUDA)")
    m = sub.add_parser("model", help="pretrained models of other toolkits")
    msub = m.add_subparsers(dest="action", required=True)
    mi = msub.add_parser("import", help="write a Wespeaker, SpeechBrain or Resemblyzer model (or "
                         "one of an earlier voxflow run) as a voxflow model (model.ts, model.onnx, model.pt, meta.json)")
    mi.add_argument("--from", dest="kind", required=True, choices=SOURCES, help="the toolkit the model comes from")
    mi.add_argument("source", nargs="?", help="the model's directory or file (resemblyzer: default the installed "
                    "package's weights; voxflow: a model directory, model.ts, an experiment directory or a training "
                    "checkpoint)")
    mi.add_argument("--out", required=True, help="output directory")
    add_corpus_parser(sub)
    s = sub.add_parser("summarize", help="results/summary.csv and summary.md of what a workflow run made; "
                       "the results it lacks are marked missing")
    s.add_argument("--configfile", help="the run's config (default: config/config.yaml)")
    s.add_argument("--schema", help="config schema (default: the repository's config/schema.yaml)")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    commands = {"embed": cmd_embed, "verify": cmd_verify, "diarize": cmd_diarize, "corpus": run_corpus_command,
                "summarize": cmd_summarize, "model": cmd_model}

    def go():
        if args.command not in commands:
            raise VoxflowError(f"unknown command {args.command}")
        commands[args.command](args)

    run(go)


if __name__ == "__main__":
    main()
