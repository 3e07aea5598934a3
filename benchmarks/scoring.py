"""Throughput of the scoring back-ends (trials/s) against a naive per-trial loop measured in the same run.

    python benchmarks/scoring.py [--n-embeddings 20000 --dim 256 ...]

Embeddings are synthetic (speaker means + noise) with string ids, so the timings include the id
lookup and the scores-table assembly that the workflow pays for.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from voxflow.backend.cosine import cosine_space, score_trials
from voxflow.backend.norm import score_trials_normalized
from voxflow.backend.plda import PLDABackend


def best_of(repeats: int, fn):
    """Smallest wall time of ``repeats`` calls of ``fn``, the CPU time of that call, and its result."""
    best, cpu, out = np.inf, np.inf, None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    return (best, cpu), out


def make_data(rng, n_emb: int, dim: int, n_spk: int):
    spk = rng.integers(0, n_spk, n_emb)
    centres = rng.normal(size=(n_spk, dim)).astype(np.float32)
    emb = centres[spk] + 1.5 * rng.normal(size=(n_emb, dim)).astype(np.float32)
    ids = np.array([f"id{s:05d}/utt{k:07d}" for k, s in enumerate(spk)], dtype=object)
    return ids, emb, spk


def make_trials(rng, ids, n: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    a, b = rng.integers(0, len(ids), n), rng.integers(0, len(ids), n)
    return pd.DataFrame({"enroll_id": ids[a], "test_id": ids[b], "label": rng.integers(0, 2, n)}), a, b


def naive_cosine(emb, a, b):
    out = np.empty(len(a))
    for k, (i, j) in enumerate(zip(a, b)):
        e, t = emb[i].astype(np.float64), emb[j].astype(np.float64)
        out[k] = e @ t / np.sqrt((e @ e) * (t @ t))
    return out


def naive_asnorm(emb, cohort, a, b, top_n):
    unit_c = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)
    out = np.empty(len(a))
    for k, (i, j) in enumerate(zip(a, b)):
        e, t = emb[i] / np.linalg.norm(emb[i]), emb[j] / np.linalg.norm(emb[j])
        s = e @ t
        ce, ct = np.sort(unit_c @ e)[-top_n:], np.sort(unit_c @ t)[-top_n:]
        out[k] = 0.5 * ((s - ce.mean()) / ce.std() + (s - ct.mean()) / ct.std())
    return out


def naive_plda(backend: PLDABackend, emb, a, b):
    return np.array([backend.score(emb[i], emb[j]) for i, j in zip(a, b)])


def report(name, n_trials, timing, naive_n, naive_timing, target):
    (wall, cpu), naive_wall = timing, naive_timing[0]
    rate, naive_rate = n_trials / wall, naive_n / naive_wall
    print(
        f"{name:<38} {n_trials:>9,d} trials  {wall:6.2f} s wall ({cpu:5.2f} s CPU)  {rate:>11,.0f} trials/s"
        f"  | naive loop {naive_rate:>8,.0f} trials/s  x{rate / naive_rate:,.0f}  | target {target}"
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-embeddings", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--n-speakers", type=int, default=1_000)
    ap.add_argument("--cosine-trials", type=int, default=1_000_000)
    ap.add_argument("--norm-trials", type=int, default=580_000)
    ap.add_argument("--cohort", type=int, default=6_000)
    ap.add_argument("--top-n", type=int, default=300)
    ap.add_argument("--plda-trials", type=int, default=580_000)
    ap.add_argument("--lda-dim", type=int, default=128)
    ap.add_argument("--naive-trials", type=int, default=5_000, help="trials timed in the per-trial loops")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    ids, emb, spk = make_data(rng, args.n_embeddings, args.dim, args.n_speakers)
    print(
        f"{args.n_embeddings} embeddings of dim {args.dim}; best of {args.repeats} runs; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )

    trials, a, b = make_trials(rng, ids, args.cosine_trials)
    sec, out = best_of(args.repeats, lambda: score_trials(trials, ids, emb))
    m = args.naive_trials
    nsec, ref = best_of(1, lambda: naive_cosine(emb, a[:m], b[:m]))
    assert np.allclose(out["score"].to_numpy()[:m], ref, atol=1e-5)
    report("cosine", len(trials), sec, m, nsec, "< 2 s for 1 M")

    cohort = rng.normal(size=(args.cohort, args.dim)).astype(np.float32)
    trials, a, b = make_trials(rng, ids, args.norm_trials)
    n_used = len(np.unique(np.r_[a, b]))

    def asnorm():
        return score_trials_normalized(trials, ids, cosine_space(emb), cosine_space(cohort), top_n=args.top_n)

    sec, out = best_of(args.repeats, asnorm)
    m = max(args.naive_trials // 25, 10)
    nsec, ref = best_of(1, lambda: naive_asnorm(emb, cohort, a[:m], b[:m], args.top_n))
    assert np.allclose(out["score"].to_numpy()[:m], ref, atol=1e-3)
    report(f"cosine AS-Norm (cohort {args.cohort}, top {args.top_n})", len(trials), sec, m, nsec,
           f"< 3 s ({n_used} distinct embeddings)")
    # the floor: the bare float32 product of the distinct embeddings with the cohort (BLAS threads)
    unit, unit_c = cosine_space(emb[np.unique(np.r_[a, b])]).z, np.ascontiguousarray(cosine_space(cohort).z.T)
    (gemm_sec, gemm_cpu), _ = best_of(args.repeats, lambda: unit @ unit_c)
    print(f"{'  (bare cohort product alone)':<38} {'':>16}  {gemm_sec:6.2f} s wall ({gemm_cpu:5.2f} s CPU)"
          f"  AS-Norm takes x{sec[0] / gemm_sec:.2f} its wall time, x{sec[1] / gemm_cpu:.2f} its CPU time")

    (fit_sec, _), backend = best_of(1, lambda: PLDABackend(lda_dim=args.lda_dim).fit(emb, spk))
    trials, a, b = make_trials(rng, ids, args.plda_trials)
    sec, out = best_of(args.repeats, lambda: backend.score_trials(trials, ids, emb))
    m = args.naive_trials // 5
    nsec, ref = best_of(1, lambda: naive_plda(backend, emb, a[:m], b[:m]))
    assert np.allclose(out["score"].to_numpy()[:m], ref, atol=1e-3)
    report(f"LDA{args.lda_dim}+PLDA", len(trials), sec, m, nsec, "< 5 s")
    print(f"(PLDA back-end training on {args.n_embeddings} embeddings, {args.n_speakers} speakers: {fit_sec:.2f} s)")


if __name__ == "__main__":
    main()
