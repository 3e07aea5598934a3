"""DER of every VAD x clustering pair, speaker count estimated and oracle, on recorded-voice conversations
(``voice_mixtures.py``: hedgewars-data voice packs) and on the demo conversations of a demo run.

    python benchmarks/diarization_der.py --model /tmp/reseml/model.ts                      # README tables
    python benchmarks/diarization_der.py --model M --packs tune --sweep count              # tuning grid
    python benchmarks/diarization_der.py --model M --overlap 0.3 --sweep overlap           # overlap assignment
    python benchmarks/diarization_der.py --model exp/x/model.ts --demo-dir data/demo/diar  # demo conversations

Every number: DER % with collar 0.25 s and overlap scored (md-eval's default), pooled over files, as
"DER (miss/false alarm/confusion)", and err = sum over files of |estimated - true speaker count|. Embeddings
are computed once per file and VAD (sub-segment CMN, 1.5 s / 0.75 s windows) and cached under --cache.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from voice_mixtures import HELD_OUT_PACKS, SR, TUNE_PACKS, build_mixtures, voices_dir  # noqa: E402

from voxflow.diarize.pipeline import cluster_subsegments, embed_subsegments  # noqa: E402
from voxflow.diarize.rttm import read_rttm  # noqa: E402
from voxflow.diarize.vad import speech_regions  # noqa: E402
from voxflow.embed.extract import Embedder  # noqa: E402
from voxflow.metrics.der import diarization_error  # noqa: E402
from voxflow.train.export import load_torchscript  # noqa: E402

CLUSTERINGS = {"spectral": {"name": "spectral"}, "ahc": {"name": "ahc"}, "umap_hdbscan": {"name": "umap_hdbscan"}}
VADS = ("energy", "silero", "oracle")


def recordings(args) -> list[tuple[str, np.ndarray, pd.DataFrame]]:
    """[(id, waveform, reference turns)] of the chosen set."""
    if args.demo_dir:
        out = []
        for wav in sorted(Path(args.demo_dir, "wav").glob("*.wav")):
            x, sr = sf.read(str(wav), dtype="float32")
            assert sr == SR, f"{wav}: {sr} Hz, expected {SR}"
            ref = read_rttm(Path(args.demo_dir, "rttm", wav.stem + ".rttm"))
            out.append((wav.stem, x, ref[ref.file_id == wav.stem]))
        return out
    root = Path(args.voices) if args.voices else voices_dir()
    if root is None:
        sys.exit("no voice packs: apt-get download hedgewars-data && dpkg-deb -x hedgewars-data_*.deb /tmp/hw")
    packs = TUNE_PACKS if args.packs == "tune" else HELD_OUT_PACKS
    return build_mixtures(root, packs, args.files, seed=args.seed, overlap=args.overlap, prefix=f"{args.packs}")


def embeddings(embedder, recs, vads, cache: Path, key: str) -> dict:
    """{(file, vad): (sub-segments, embeddings)}, from the cache when there."""
    out = {}
    for (fid, wav, ref), vad in itertools.product(recs, vads):
        path = cache / f"{key}_{fid}_{vad}.npz"
        if path.is_file():
            z = np.load(path)
            out[fid, vad] = ([tuple(s) for s in z["segs"]], z["emb"])
            continue
        regions = speech_regions(wav, SR, vad, ref)
        segs, emb = embed_subsegments(lambda a, b: wav[a:b], SR, len(wav) / SR, regions, embedder)
        np.savez(path, segs=np.asarray(segs).reshape(-1, 2), emb=emb)
        out[fid, vad] = (segs, emb)
    return out


def score(recs, embs, vad: str, clustering: dict, oracle_count: bool, overlap_margin=None,
          max_speakers: int = 8, min_speakers: int = 1) -> dict:
    """Pooled DER (collar 0.25 s, overlap scored) and the count error of one configuration."""
    hyps, err = [], 0
    cfg = dict(clustering)
    name = cfg.pop("name")
    for fid, _, ref in recs:
        segs, emb = embs[fid, vad]
        true = ref.speaker.nunique()
        turns, _ = cluster_subsegments(segs, emb, fid, name, true if oracle_count else None, min_speakers,
                                       max_speakers, cfg, overlap_margin)
        hyps.append(turns)
        err += abs(turns.speaker.nunique() - true)
    refs = pd.concat([r for _, _, r in recs], ignore_index=True)
    r = diarization_error(refs, pd.concat(hyps, ignore_index=True), collar=0.25)
    return {"der": 100 * r["der"], "miss": 100 * r["miss"], "fa": 100 * r["false_alarm"],
            "conf": 100 * r["confusion"], "err": err}


def cell(r: dict, with_err: bool) -> str:
    s = f"{r['der']:.1f} ({r['miss']:.1f}/{r['fa']:.1f}/{r['conf']:.1f})"
    return s + (f", err {r['err']}" if with_err else "")


def table(recs, embs, vads) -> None:
    print("| VAD | " + " | ".join(f"{c}, estimated | {c}, oracle count" for c in CLUSTERINGS) + " |")
    print("|---|" + "---|" * (2 * len(CLUSTERINGS)))
    for vad in vads:
        cells = [cell(score(recs, embs, vad, c, o), not o) for c in CLUSTERINGS.values() for o in (False, True)]
        print(f"| {vad} | " + " | ".join(cells) + " |")


SWEEPS = {
    "count": [{"name": "spectral"}]
    + [{"name": "spectral", "p_pruning": "auto"}]
    + [{"name": "spectral", "min_neighbors": m} for m in (3, 5, 7, 15, 20)]
    + [{"name": "ahc", "threshold": t, "min_cluster_size": m} for t in (0.3, 0.4, 0.5, 0.6) for m in (1, 2, 4)]
    + [{"name": "umap_hdbscan", "min_cluster_size": m, "merge_threshold": t} for m in (4, 8) for t in (0.1, 0.3)],
    "overlap": [None, 0.0, 0.01, 0.02, 0.05, 0.1],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="exported model (model.ts), e.g. the imported Resemblyzer")
    ap.add_argument("--voices", help="hedgewars voice packs directory (default: found)")
    ap.add_argument("--packs", choices=["tune", "held_out"], default="held_out")
    ap.add_argument("--files", type=int, default=12, help="conversations (2, 3, 4 speakers in turn)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overlap", type=float, default=0.0, help="fraction of turns that interrupt the previous")
    ap.add_argument("--demo-dir", help="a demo corpus's diar/ directory (wav/, rttm/) instead of voice mixtures")
    ap.add_argument("--vads", default=",".join(VADS))
    ap.add_argument("--sweep", choices=sorted(SWEEPS), help="instead of the table: a grid (first VAD only)")
    ap.add_argument("--cache", default="/tmp/voxflow_diar_cache")
    args = ap.parse_args()
    torch.set_num_threads(1)
    vads = args.vads.split(",")
    recs = recordings(args)
    speech = sum(r.duration.sum() for _, _, r in recs)
    what = args.demo_dir or f"{args.packs} packs, seed {args.seed}, overlap {args.overlap:g}"
    print(f"{len(recs)} recordings ({what}), {sum(len(w) for _, w, _ in recs) / SR / 60:.1f} min, "
          f"{speech / 60:.1f} min of reference speech; model {args.model}")
    key = hashlib.sha1(f"{Path(args.model).resolve()}|{what}|{args.files}".encode()).hexdigest()[:10]
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    model, meta = load_torchscript(args.model)
    t = time.perf_counter()
    embs = embeddings(Embedder(model, meta), recs, vads, Path(args.cache), key)
    print(f"embedded in {time.perf_counter() - t:.0f} s; DER % collar 0.25 s, overlap scored")
    if args.sweep == "count":
        for c in SWEEPS["count"]:
            est, ora = score(recs, embs, vads[0], c, False), score(recs, embs, vads[0], c, True)
            print(f"{vads[0]} {c}: estimated {cell(est, True)}; oracle count {cell(ora, False)}")
    elif args.sweep == "overlap":
        for margin in SWEEPS["overlap"]:
            for c in CLUSTERINGS.values():
                est, ora = score(recs, embs, vads[0], c, False, margin), score(recs, embs, vads[0], c, True, margin)
                print(f"{vads[0]} {c['name']} overlap_margin {margin}: estimated {cell(est, True)}; "
                      f"oracle count {cell(ora, False)}")
    else:
        table(recs, embs, vads)


if __name__ == "__main__":
    main()
