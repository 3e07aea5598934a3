"""Row 3 of the scale benchmark: Kaseva & Kurimo's speaker cleaning at VoxCeleb2 size.

6.8 M synthetic 256-d segment embeddings of 5,994 speakers (uneven: 100 to ~6,000 segments per speaker, about 6
segments per utterance, as 2 s windows with a 1 s hop over VoxCeleb2's utterances) are written as the segment
embeddings Parquet that rule embed_segments makes, one row group per block of speakers. A speaker is a random unit
centre plus isotropic noise (within-speaker cosine about 0.5); one speaker in ten has 10-30 % of its utterances
from another speaker: the planted mislabels, listed in a ground-truth CSV. The measured step is the rule's own
script (scripts/clean_speakers.py: read, clean, compare with the ground truth, write) in a process of its own:
its wall and CPU time and peak memory. The quick mode runs 1/20 of the speakers and projects time and memory
linearly (both are linear in the segments: see the per-speaker costs).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scale_common import (CLEANING_SEGMENTS, REPO, VOX2_DEV_HOURS, VOX2_DEV_SPEAKERS, fmt_mb, fmt_s, judged, make_row,
                          run_measured, run_step)

DIM = 256
SIGMA = float(1.0 / np.sqrt(DIM))  # a Python float keeps float32 arrays float32; noise norm ~1 against a unit centre: cosine to the centre ~0.7, between segments ~0.5
TARGET_MIN, TARGET_GB = 10.0, 16.0


def speaker_sizes(n_speakers: int, n_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Segments per speaker: lognormal around the mean, at least 100, summing to ``n_segments``."""
    w = rng.lognormal(0.0, 0.6, n_speakers)
    sizes = np.maximum(100, np.floor(w / w.sum() * n_segments)).astype(np.int64)
    diff = n_segments - int(sizes.sum())
    order = np.argsort(-sizes)
    sizes[order[: abs(diff) % n_speakers]] += np.sign(diff)
    sizes[order] += np.sign(diff) * (abs(diff) // n_speakers)
    return sizes


def make_cleaning_set(root: str, n_speakers: int, n_segments: int, seed: int = 0, block: int = 60) -> dict:
    """Write ``segments.parquet`` (the embeddings schema of rule embed_segments) and ``truth.csv``; return sizes."""
    rng = np.random.default_rng(seed)
    sizes = speaker_sizes(n_speakers, n_segments, rng)
    centres = rng.standard_normal((n_speakers, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    truth, writer, planted_segments = [], None, 0
    path = out / "segments.parquet"
    tmp = path.with_suffix(".tmp")
    try:
        for first in range(0, n_speakers, block):
            ids, spk_col, starts, mats = [], [], [], []
            for s in range(first, min(first + block, n_speakers)):
                n = int(sizes[s])
                spk = f"id{s:05d}"
                utt_of = np.arange(n) // 6  # ~6 two-second windows per utterance
                owner = np.full(n, s)
                if s % 10 == 3:  # planted: whole utterances of another speaker
                    n_utts = int(utt_of[-1]) + 1
                    bad = rng.choice(n_utts, max(1, int(rng.uniform(0.1, 0.3) * n_utts)), replace=False)
                    other = (s + 1 + int(rng.integers(n_speakers - 1))) % n_speakers
                    owner[np.isin(utt_of, bad)] = other
                    planted_segments += int(np.isin(utt_of, bad).sum())
                    truth += [(f"{spk}/v{u // 8:010d}/{u % 8 + 1:05d}", spk, f"id{other:05d}") for u in sorted(bad)]
                mats.append(centres[owner] + SIGMA * rng.standard_normal((n, DIM), dtype=np.float32))
                assert mats[-1].dtype == np.float32
                utts = [f"{spk}/v{u // 8:010d}/{u % 8 + 1:05d}" for u in utt_of.tolist()]
                ids += utts
                spk_col += [spk] * n
                starts.append((np.arange(n) % 6).astype(np.float64))
            mat = np.concatenate(mats)
            start = np.concatenate(starts)
            table = pa.table({
                "utt_id": ids, "model": pa.array(["seed_model/final.pt"] * len(ids)),
                "segment_id": [f"{u}@{s:.2f}" for u, s in zip(ids, start.tolist())], "spk_id": spk_col,
                "start_s": start, "end_s": start + 2.0,
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(mat.reshape(-1)), DIM),
            })
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        writer.close()
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    with open(out / "truth.csv", "w") as f:
        f.write("utt_id,labeled_spk,true_spk\n" + "".join(f"{u},{a},{b}\n" for u, a, b in truth))
    return {"segments": int(sizes.sum()), "speakers": n_speakers, "planted_utts": len(truth),
            "planted_segments": planted_segments, "max_per_speaker": int(sizes.max()),
            "bytes": path.stat().st_size}


def run_rule_script(root: str, threads: int) -> dict:
    """scripts/clean_speakers.py on the set, as rule clean_speakers runs it; time, peak memory and its summary."""
    out = Path(root)
    argv = [sys.executable, str(REPO / "scripts" / "clean_speakers.py"), "--segments", str(out / "segments.parquet"),
            "--ground-truth", str(out / "truth.csv"), "--threads", str(threads),
            "--exclusions", str(out / "exclusions.parquet"), "--speakers", str(out / "speakers.parquet"),
            "--summary", str(out / "summary.json")]
    res = run_measured(argv)
    if res["returncode"] != 0:
        raise RuntimeError(f"clean_speakers.py failed:\n{res['output']}")
    summary = json.loads((out / "summary.json").read_text())
    return {**res, "summary": {k: v for k, v in summary.items() if not isinstance(v, list)}}


def per_speaker_cost(sizes=(1000, 5000, 20000), seed: int = 0) -> dict:
    """Seconds of one speaker's split (spherical K-means K=2, 10 restarts, + silhouette), one BLAS thread."""
    from threadpoolctl import threadpool_limits

    from voxflow.cluster.cleaning import split_speaker
    from voxflow.cluster.kmeans import normalize_rows

    rng = np.random.default_rng(seed)
    out = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for n in sizes:
            c = normalize_rows(rng.standard_normal((2, DIM)))
            owner = (rng.random(n) < 0.2).astype(int)  # a planted 20 % minority
            E = normalize_rows(c[owner] + SIGMA * rng.standard_normal((n, DIM)))
            best = np.inf
            for _ in range(3):
                t0 = time.process_time()
                split_speaker(E)
                best = min(best, time.process_time() - t0)
            out[str(n)] = best
    return {"seconds": out}


def cleaning_rows(workdir: str, quick: bool, threads: int = 2, speakers: int | None = None,
                  units: dict | None = None, cost_sizes: tuple[int, ...] = (1000, 5000, 20000)) -> list[dict]:
    """Row 3: the rule at full size (quick: 1/20 of the speakers, projected), and per-speaker costs.
    ``speakers``/``cost_sizes`` override the sizes (tests); per-unit figures for row 6 go into ``units``."""
    units = {} if units is None else units
    n_spk = speakers or (VOX2_DEV_SPEAKERS // 20 if quick else VOX2_DEV_SPEAKERS)
    n_seg = int(CLEANING_SEGMENTS * n_spk / VOX2_DEV_SPEAKERS)
    k = CLEANING_SEGMENTS / n_seg
    root = str(Path(workdir) / "row3")
    made = run_step("scale_cleaning", "make_cleaning_set", dict(root=root, n_speakers=n_spk, n_segments=n_seg))
    r = run_rule_script(root, threads)
    s = r["summary"]
    minutes = judged(r["wall_s"], r["cpu_s"] / threads) * k / 60
    # Not scaled: the interpreter with numpy, pandas and pyarrow and the Parquet decoding of one row group of the
    # embedding column; the rest (matrix, segments table) grows with the segments. 700 MB calibrates the projection
    # on the full-size run of 2026-12-03 (8.3 GB at 6.8 M segments; 1.10 GB at 1/20 of the speakers).
    base_mb = 700.0
    peak_gb = (base_mb + max(0.0, r["peak_mb"] - base_mb) * k) / 1024
    units.update(clean_base_mb=base_mb, clean_min_per_kseg=minutes / (CLEANING_SEGMENTS / 1000), clean_peak_mb_full=peak_gb * 1024,
                 clean_threads=threads, clean_segments_per_hour=CLEANING_SEGMENTS / VOX2_DEV_HOURS)
    proj = f", projected x{k:.0f} to {CLEANING_SEGMENTS / 1e6:.1f} M" if k > 1.01 else ""
    rows = [make_row(
        "3 cleaning",
        f"rule clean_speakers (read, K=2 spherical K-means + silhouette per speaker, majority rule, write) on "
        f"{made['segments']:,} 256-d segment embeddings of {n_spk:,} speakers ({fmt_mb(made['bytes'] / 2**20)} "
        f"Parquet), {threads} threads{proj}",
        f"{fmt_s(r['wall_s'])} wall ({fmt_s(r['cpu_s'])} CPU), peak {fmt_mb(r['peak_mb'])}"
        + (f"; projected {minutes:.1f} min, {peak_gb:.1f} GB" if proj else "")
        + f"; planted utterances caught {s.get('planted_caught')}/{s.get('planted')}, "
          f"other segments excluded {s.get('segments_excluded_other')}",
        f"< {TARGET_MIN:.0f} min and < {TARGET_GB:.0f} GB on 2 cores", minutes < TARGET_MIN and peak_gb < TARGET_GB,
        "see the docs: the per-speaker split dominates; more threads, or fewer K-means restarts (n_init)")]
    cost = run_step("scale_cleaning", "per_speaker_cost", {"sizes": list(cost_sizes)})["seconds"]
    per_k = {n: cost[n] / (int(n) / 1000) for n in cost}
    first, last = str(cost_sizes[0]), str(cost_sizes[-1])
    rows.append(make_row(
        "3 cleaning", "one speaker's split (K-means K=2 x 10 restarts + silhouette from cluster sums), 1 thread, "
        f"at {' / '.join(f'{n:,}' for n in cost_sizes)} segments",
        " / ".join(f"{cost[n] * 1e3:.0f} ms" for n in cost) + " ("
        + " / ".join(f"{per_k[n] * 1e3:.0f}" for n in per_k) + " ms per 1k segments)",
        f"cost per segment at {int(last):,} < 5x that at {int(first):,} (quadratic growth: "
        f"{int(last) // int(first)}x)", per_k[last] < 5 * per_k[first], "the cost per segment grows with the speaker's size: see the docs"))
    return rows
