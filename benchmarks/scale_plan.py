"""Row 1 of the scale benchmark: planning a VoxCeleb run.

``snakemake -n`` on each recipe config (config/voxceleb_*.yaml, unedited) with a second ``--configfile`` that
points ``data_dir`` at a directory holding VoxCeleb-sized manifests (VoxCeleb2 dev as the imported corpus and as
the training set, VoxCeleb1, VoxCeleb1 dev) and ``trial_sets`` at VoxCeleb-sized Vox1-O/E/H lists: the state
after the corpora are imported, when the DAG's resource requests read the manifests. The full mode also plans
from nothing (no manifests). And the planning step of the shards rule (plan_shards: shuffle, per-utterance
metadata, the 1,093 shard member lists) on the 1,092,009-row training set.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

import yaml

from scale_common import REPO, fmt_mb, fmt_s, judged, make_row, run_measured, run_step
from scale_manifests import make_voxceleb_inputs

CONFIGS = ("voxceleb_resnet34_ecapa", "voxceleb_xvector_margins", "voxceleb_lstm_netvlad")
TARGET_S = 30.0


def overlay(inputs: dict, data_dir: str) -> dict:
    """The config overlay: data_dir and the trial lists (everything else stays the recipe's)."""
    return {"data_dir": data_dir,
            "trial_sets": {t: {"path": inputs["paths"][t]} for t in ("vox1_o", "vox1_e", "vox1_h")}}


def place_manifests(inputs: dict, data_dir: Path) -> None:
    """Put the manifests where the workflow's rules write them: the imported corpora and the training set."""
    (data_dir / "manifests").mkdir(parents=True, exist_ok=True)
    (data_dir / "train").mkdir(parents=True, exist_ok=True)
    for name in ("vox2_dev", "vox1", "vox1_dev"):
        shutil.copy(inputs["paths"][name], data_dir / "manifests" / f"{name}.parquet")
    shutil.copy(inputs["paths"]["vox2_dev"], data_dir / "train" / "utterances.parquet")


def dry_run(config: str, workdir: Path, overlay_file: Path) -> dict:
    """``snakemake -n`` of one recipe config; wall/CPU time, peak memory, planned jobs."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--directory",
            str(workdir), "--configfile", str(REPO / "config" / f"{config}.yaml"), str(overlay_file)]
    res = run_measured(argv, cwd=str(workdir), timeout=600)
    if res["returncode"] != 0:
        raise RuntimeError(f"snakemake -n on {config} failed:\n{res['output']}")
    m = re.search(r"^total\s+(\d+)\s*$", res["output"], re.M)
    res["jobs"] = int(m.group(1)) if m else -1
    return res


def shard_plan(manifest: str, utts_per_shard: int = 1000) -> dict:
    """Time of plan_shards (what write_shards does before its first tar) on a manifest, in this process."""
    from voxflow.data.manifests import read_table
    from voxflow.data.shards import plan_shards

    df = read_table(manifest, "utterances")
    t0, c0 = time.perf_counter(), time.process_time()
    tasks = plan_shards(df, "/nonexistent/shards", utts_per_shard=utts_per_shard)
    return {"plan_wall_s": time.perf_counter() - t0, "plan_cpu_s": time.process_time() - c0, "shards": len(tasks),
            "utts": sum(len(m) for _, m in tasks)}


def _time_figure(wall: float, cpu: float, peak_mb: float) -> str:
    return f"{fmt_s(wall)} wall ({fmt_s(cpu)} CPU), peak {fmt_mb(peak_mb)}"


def planning_rows(workdir: str, quick: bool, configs: tuple[str, ...] = CONFIGS, scale: float = 1.0,
                  units: dict | None = None) -> list[dict]:
    """Row 1 at full size (the quick mode plans the same full-size inputs, but only once the manifests exist);
    ``scale`` < 1 shrinks the inputs (tests). Per-unit figures for row 6 go into ``units``."""
    root = Path(workdir) / "row1"
    inputs = make_voxceleb_inputs(str(root / "inputs"), scale=scale)
    size = (f"manifests {inputs['vox2_utts']:,} (VoxCeleb2 dev, {inputs['vox2_speakers']:,} speakers) + "
            f"{inputs['vox1_utts']:,} rows (VoxCeleb1), Vox1-O/E/H lists")
    rows = []
    scenarios = [("imported", True)] + ([] if quick else [("from nothing", False)])
    for label, with_manifests in scenarios:
        data_dir = root / f"data_{label.replace(' ', '_')}"
        if with_manifests:
            place_manifests(inputs, data_dir)
        ov = root / f"overlay_{label.replace(' ', '_')}.yaml"
        ov.write_text(yaml.safe_dump(overlay(inputs, str(data_dir))))
        for config in configs:
            r = dry_run(config, root / f"wd_{config}_{label.replace(' ', '_')}", ov)
            t = judged(r["wall_s"], r["cpu_s"])
            what = (f"snakemake -n, config/{config}.yaml, {size}" if with_manifests
                    else f"snakemake -n, config/{config}.yaml, no manifests yet")
            rows.append(make_row("1 planning", f"{what}: {r['jobs']} jobs",
                                 _time_figure(r["wall_s"], r["cpu_s"], r["peak_mb"]), f"< {TARGET_S:.0f} s",
                                 t < TARGET_S, "profile the DAG build (snakemake --profile-... / cProfile); see docs"))
    r = run_step("scale_plan", "shard_plan", dict(manifest=inputs["paths"]["vox2_dev"]))
    t = judged(r["plan_wall_s"], r["plan_cpu_s"])
    if units is not None:
        units["shard_plan_peak_mb"] = r["peak_mb"]
        units["shard_plan_utts"] = r["utts"]
    rows.append(make_row(
        "1 planning", f"shard planning (plan_shards) of {r['utts']:,} utterances into {r['shards']:,} shards of 1,000",
        f"{_time_figure(r['plan_wall_s'], r['plan_cpu_s'], r['peak_mb'])} (peak incl. the manifest)",
        f"< {TARGET_S:.0f} s", t < TARGET_S, "per-row Python work in plan_shards; vectorise it further"))
    return rows
