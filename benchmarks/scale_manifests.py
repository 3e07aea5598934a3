"""Synthetic VoxCeleb-sized manifests (real Parquet in the pipeline's utterances schema) and trial lists, and
row 2 of the scale benchmark: manifest write/read time and size, shard-writing throughput on real audio files.

The rows are synthetic (ids in VoxCeleb's ``idNNNNN/<video>/<NNNNN>`` layout, durations drawn to VoxCeleb's mean
of about 7.8 s, at least 4 s); only their count and shape matter for planning and I/O.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from scale_common import (VOX1_SPEAKERS, VOX1_TRIALS, VOX1_UTTS, VOX2_DEV_SPEAKERS, VOX2_DEV_UTTS, fmt_mb,
                          fmt_s, judged, make_row, run_step)
from voxflow.data.manifests import read_table, write_table

SR = 16000
VOICES = Path("/tmp/hw/usr/share/games/hedgewars/Data/Sounds/voices")


def synthetic_manifest(n_utts: int, n_speakers: int, corpus: str, root: str, seed: int = 0,
                       first_speaker: int = 0) -> pd.DataFrame:
    """An utterances table of ``n_utts`` rows over ``n_speakers`` speakers (uneven, as VoxCeleb), ~8 per session."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 0.5, n_speakers)
    per_spk = np.maximum(1, np.floor(weights / weights.sum() * n_utts)).astype(np.int64)
    while per_spk.sum() != n_utts:  # fix the rounding: add or remove one at a time on the largest speakers
        diff = n_utts - per_spk.sum()
        idx = np.argsort(-per_spk)[: abs(diff)]
        per_spk[idx] += np.sign(diff)
    spk = np.repeat(np.arange(n_speakers), per_spk)
    k = np.arange(n_utts) - np.repeat(np.cumsum(per_spk) - per_spk, per_spk)  # index within the speaker
    sess = k // 8
    spk_names = [f"id{i + first_speaker:05d}" for i in range(n_speakers)]
    spk_ids = [spk_names[i] for i in spk.tolist()]
    sess_ids = [f"{p}/v{q:010d}" for p, q in zip(spk_ids, sess.tolist())]
    utt_ids = [f"{p}/{q % 8 + 1:05d}" for p, q in zip(sess_ids, k.tolist())]
    prefix = root.rstrip("/") + "/"
    num_samples = ((4.0 + rng.exponential(3.8, n_utts)) * SR).astype(np.int64)
    return pd.DataFrame({
        "utt_id": utt_ids, "spk_id": spk_ids, "session_id": sess_ids, "path": [f"{prefix}{u}.wav" for u in utt_ids],
        "sample_rate": np.full(n_utts, SR, dtype=np.int64), "num_samples": num_samples,
        "duration_s": num_samples / SR, "corpus": corpus,
    })


def write_trial_list(utts: pd.DataFrame, n_trials: int, path: Path, seed: int = 0) -> None:
    """A VoxCeleb-format list ``<1|0> enroll.wav test.wav`` over ``utts``, half target trials."""
    rng = np.random.default_rng(seed)
    ids = utts["utt_id"].to_numpy()
    spk_codes = pd.factorize(utts["spk_id"])[0]
    order = np.argsort(spk_codes, kind="stable")
    starts = np.searchsorted(spk_codes[order], np.arange(spk_codes.max() + 1))
    counts = np.bincount(spk_codes)
    enroll = rng.integers(0, len(ids), n_trials)
    target = rng.random(n_trials) < 0.5
    same = order[starts[spk_codes[enroll]] + (rng.random(n_trials) * counts[spk_codes[enroll]]).astype(np.int64)]
    test = np.where(target, same, rng.integers(0, len(ids), n_trials))
    label = (spk_codes[enroll] == spk_codes[test]).astype(int)
    lines = [f"{lab} {ids[e]}.wav {ids[t]}.wav" for lab, e, t in zip(label.tolist(), enroll.tolist(), test.tolist())]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def make_voxceleb_inputs(root: str, scale: float = 1.0) -> dict:
    """Manifests of VoxCeleb2 dev and VoxCeleb1 (and VoxCeleb1 dev) and the three Vox1 trial lists under ``root``;
    ``scale`` < 1 shrinks every count. Returns the paths and sizes."""
    root_p = Path(root)
    (root_p / "manifests").mkdir(parents=True, exist_ok=True)
    (root_p / "lists").mkdir(parents=True, exist_ok=True)
    n2, s2 = max(8, int(VOX2_DEV_UTTS * scale)), max(2, int(VOX2_DEV_SPEAKERS * scale))
    n1, s1 = max(8, int(VOX1_UTTS * scale)), max(2, int(VOX1_SPEAKERS * scale))
    vox2 = synthetic_manifest(n2, s2, "vox2_dev", "/data/voxceleb2/dev/wav", seed=2)
    vox1 = synthetic_manifest(n1, s1, "vox1", "/data/voxceleb1/wav", seed=1, first_speaker=10_001)
    out = {"vox2_dev": root_p / "manifests" / "vox2_dev.parquet", "vox1": root_p / "manifests" / "vox1.parquet"}
    write_table(vox2, out["vox2_dev"], "utterances")
    write_table(vox1, out["vox1"], "utterances")
    dev = vox1[vox1["spk_id"] >= f"id{10_001 + max(1, s1 // 31):05d}"]  # Vox1 dev: all but the 40 test speakers
    out["vox1_dev"] = root_p / "manifests" / "vox1_dev.parquet"
    write_table(dev, out["vox1_dev"], "utterances")
    for name, n in VOX1_TRIALS.items():
        out[name] = root_p / "lists" / f"{name}.txt"
        write_trial_list(vox1, max(4, int(n * scale)), out[name], seed=len(name) + n)
    return {"paths": {k: str(v) for k, v in out.items()}, "vox2_utts": n2, "vox2_speakers": s2, "vox1_utts": n1,
            "vox1_speakers": s1, "vox2_hours": float(vox2["duration_s"].sum() / 3600)}


# ---------------------------------------------------------------- row 2 steps (each run in its own process)
def manifest_io(path: str, n_utts: int, n_speakers: int) -> dict:
    """Write the manifest with write_table (validated, atomic) and read it back with read_table; times and size."""
    df = synthetic_manifest(n_utts, n_speakers, "vox2_dev", "/data/voxceleb2/dev/wav")
    t0 = time.perf_counter()
    write_table(df, path, "utterances")
    write_s = time.perf_counter() - t0
    del df
    t0 = time.perf_counter()
    back = read_table(path, "utterances")
    read_s = time.perf_counter() - t0
    return {"write_s": write_s, "read_s": read_s, "bytes": Path(path).stat().st_size, "rows": len(back)}


def make_audio_corpus(root: str, n_utts: int, fmt: str = "wav", seed: int = 0) -> pd.DataFrame:
    """``n_utts`` real 16 kHz audio files of 4-12 s: recorded voices (Hedgewars clips, when installed) strung
    together with pauses, else a synthetic voiced signal; a manifest of them."""
    import soundfile as sf
    from voxflow.audio.io import read_audio

    rng = np.random.default_rng(seed)
    clips = []
    if VOICES.is_dir():
        for p in sorted(VOICES.rglob("*"))[:300]:
            if p.suffix.lower() in (".ogg", ".wav", ".flac"):
                try:
                    wav, sr = read_audio(str(p))
                except Exception:  # a clip libsndfile cannot read is skipped
                    continue
                if sr != SR:
                    idx = np.arange(0, len(wav), sr / SR).astype(np.int64)
                    wav = wav[idx[idx < len(wav)]]
                clips.append(wav.astype(np.float32))
    rows = []
    for i in range(n_utts):
        n = int(rng.uniform(4, 12) * SR)
        if clips:
            parts, total = [], 0
            while total < n:
                c = clips[int(rng.integers(len(clips)))]
                parts += [c, np.zeros(int(rng.uniform(0.05, 0.3) * SR), np.float32)]
                total += len(c) + len(parts[-1])
            wav = np.concatenate(parts)[:n]
        else:
            t = np.arange(n) / SR
            wav = 0.3 * np.sin(2 * np.pi * (110 + 40 * np.sin(2 * np.pi * 0.5 * t)) * t).astype(np.float32)
        wav = wav + 0.003 * rng.standard_normal(n).astype(np.float32)
        spk = f"id{i % 50:05d}"
        p = Path(root) / spk / f"v{i // 50:04d}" / f"{i:05d}.{fmt}"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p), np.clip(wav, -1, 1), SR, subtype="PCM_16")
        rows.append(dict(utt_id=f"{spk}/v{i // 50:04d}/{i:05d}", spk_id=spk, session_id=f"{spk}/v{i // 50:04d}",
                         path=str(p), sample_rate=SR, num_samples=n, duration_s=n / SR))
    return pd.DataFrame(rows)


def shard_rate(root: str, n_utts: int, fmt: str) -> dict:
    """Utterances/s of write_shards in one job (one process) on ``n_utts`` real files (in the page cache)."""
    from voxflow.data.shards import write_shards

    from voxflow.corpora.importers import import_corpus

    df = make_audio_corpus(str(Path(root) / "audio"), n_utts, fmt=fmt)
    t0, c0 = time.perf_counter(), time.process_time()
    imported = import_corpus(str(Path(root) / "audio"), fmt="voxceleb")  # what rule manifest does: header reads
    import_wall, import_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(imported) == n_utts
    t0, c0 = time.perf_counter(), time.process_time()
    table = write_shards(df, str(Path(root) / "shards"), utts_per_shard=100, jobs=1)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"utts": int(table["num_utts"].sum()), "write_wall_s": wall, "write_cpu_s": cpu,
            "import_wall_s": import_wall, "import_cpu_s": import_cpu,
            "hours": float(df.duration_s.sum() / 3600), "bytes": int(table["num_bytes"].sum())}


def manifest_rows(workdir: str, quick: bool, jobs: int = 8, units: dict | None = None, frac: float | None = None,
                  n_audio: int | None = None) -> list[dict]:
    """Row 2: manifest write/read time and size at 1.09 M rows (quick: 1/10, projected); shard-writing rate on
    real audio files (quick: 120 files, else 600). ``frac``/``n_audio`` override the sizes (tests); per-unit
    figures for row 6 go into ``units``."""
    units = {} if units is None else units
    frac = frac or (0.1 if quick else 1.0)
    n, s = int(VOX2_DEV_UTTS * frac), max(2, int(VOX2_DEV_SPEAKERS * frac))
    r = run_step("scale_manifests", "manifest_io", dict(path=f"{workdir}/row2_manifest.parquet", n_utts=n, n_speakers=s))
    k = 1 / frac
    units["manifest_peak_mb"] = r["peak_mb"] * k
    size = f"{n:,} rows" + (f", projected x{k:.0f} to {VOX2_DEV_UTTS:,}" if quick else "")
    rows = [
        make_row("2 manifests", f"write_table of the VoxCeleb2 dev manifest ({size})",
                 f"write {fmt_s(r['write_s'] * k)}, read {fmt_s(r['read_s'] * k)}, {fmt_mb(r['bytes'] * k / 2**20)} "
                 f"on disk, peak {fmt_mb(r['peak_mb'] * (k if quick else 1))}",
                 "< 30 s write + read (a step of planning and of every rule that reads it)",
                 (r["write_s"] + r["read_s"]) * k < 30, "reading it is on every rule's path: see the docs"),
    ]
    n_audio = n_audio or (120 if quick else 600)
    for fmt in ("wav", "flac"):
        r = run_step("scale_manifests", "shard_rate", dict(root=f"{workdir}/row2_{fmt}", n_utts=n_audio, fmt=fmt))
        rate = r["utts"] / judged(r["write_wall_s"], r["write_cpu_s"])
        hours_full = VOX2_DEV_UTTS / (rate * jobs) / 3600
        units[f"shard_utts_per_s_{fmt}"] = rate
        units[f"shard_mean_duration_s_{fmt}"] = r["hours"] * 3600 / r["utts"]
        units[f"import_utts_per_s_{fmt}"] = r["utts"] / judged(r["import_wall_s"], r["import_cpu_s"])
        if fmt == "wav":
            import_min = VOX2_DEV_UTTS / units["import_utts_per_s_wav"] / 60
            rows.append(make_row(
                "2 manifests", f"rule manifest's import (header reads) of {r['utts']} real WAV files (page cache "
                f"warm), projected to {VOX2_DEV_UTTS:,} utterances",
                f"{units['import_utts_per_s_wav']:,.0f} utts/s; {import_min:.1f} min", "< 60 min",
                import_min < 60, "header reads are bound by the storage's latency: see the docs"))
        rows.append(make_row(
            "2 shards", f"write_shards, 1 job, {r['utts']} real {fmt.upper()} files of 4-12 s (page cache warm), "
            f"projected to {VOX2_DEV_UTTS:,} utterances on {jobs} jobs",
            f"{rate:,.0f} utts/s per job ({r['utts'] / r['write_wall_s']:,.0f} per wall s); {hours_full:.2f} h on {jobs} jobs",
            f"< 2 h for VoxCeleb2 dev on {jobs} jobs (the shards rule's jobs)", hours_full < 2,
            "shard writing is bound by reading the audio; more shards.jobs or faster storage"))
    return rows
