"""Extract embeddings: per utterance with an exported model (rule embed), or per 2 s segment with a
training checkpoint (rule embed_segments, the input of speaker cleaning); with embedding.parts > 1, split a
manifest into parts (rule split_manifest) and merge the parts' embeddings (rule merge_embeddings)."""
import argparse

from voxflow.embed.parts import merge_parts, split_manifest
from voxflow.utils.scripting import json_arg, run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="what", required=True)
    utt = sub.add_parser("utterances")
    utt.add_argument("--model", required=True, help="exported TorchScript model (its feature config)")
    utt.add_argument("--onnx", help="its ONNX export, run when the config's runtime resolves to onnx")
    utt.add_argument("--config", default="{}", help="the config's embedding section as JSON")
    seg = sub.add_parser("segments")
    seg.add_argument("--checkpoint", required=True)
    seg.add_argument("--window", type=float, default=2.0)
    seg.add_argument("--hop", type=float, default=1.0)
    seg.add_argument("--device", default="cpu")
    split = sub.add_parser("split", help="the manifest in as many parts as --out paths, balanced by duration")
    split.add_argument("--out", nargs="+", required=True)
    merge = sub.add_parser("merge", help="the parts' embeddings as one table in the manifest's order")
    merge.add_argument("--parts", nargs="+", required=True)
    for p in (utt, seg):
        p.add_argument("--out", required=True)
    merge.add_argument("--out", required=True)
    for p in (utt, seg, split, merge):
        p.add_argument("--utterances", required=True)
    args = ap.parse_args()
    if args.what == "split":
        for k, (start, end) in enumerate(split_manifest(args.utterances, args.out)):
            print(f"part {k + 1}: rows {start}-{end} ({end - start} utterances) -> {args.out[k]}")
        return
    if args.what == "merge":
        print(f"{merge_parts(args.parts, args.utterances, args.out)} embeddings from {len(args.parts)} parts")
        return
    # torch only here: split and merge (on the submit host) run without it
    import numpy as np

    from voxflow.data.manifests import read_table, write_embeddings
    from voxflow.embed.extract import Embedder, embed_segments, embed_utterances
    from voxflow.embed.runtime import load_network as load_exported
    from voxflow.train.engine import load_network

    utts = read_table(args.utterances, "utterances")
    if args.what == "utterances":
        cfg = json_arg(args.config, "--config")
        device = cfg.get("device", "cpu")
        model, meta, engine = load_exported(args.model, cfg.get("runtime", "torch"), device, args.onnx)
        print(f"extracting with {engine} on {device}")
        embedder = Embedder(model, meta, device=device, batch_size=cfg.get("batch_size", 64))
        # window_s / hop_s null: the model's own SEA settings (see Embedder.sea)
        ids, matrix = embed_utterances(embedder, utts, cfg.get("window_s"), cfg.get("hop_s"),
                                       mode=cfg.get("mode", "sea"))
        if not ids:  # an empty part (fewer utterances than embedding.parts): an empty table of the right width
            matrix = np.zeros((0, embedder.embedding_dim()), np.float32)
        spk = utts.set_index("utt_id").loc[ids, "spk_id"].tolist()
        write_embeddings(ids, matrix, args.model, args.out, spk_id=spk)
    else:
        model, _, data_cfg = load_network(args.checkpoint)
        embedder = Embedder(model, {"data_cfg": data_cfg}, device=args.device)
        segments, matrix = embed_segments(embedder, utts, args.window, args.hop)
        write_embeddings(segments.utt_id.tolist(), matrix, args.checkpoint, args.out,
                         **{c: segments[c].tolist() for c in ("segment_id", "spk_id", "start_s", "end_s")})
    print(f"{matrix.shape[0]} embeddings of dimension {matrix.shape[1]}")


run(main)
