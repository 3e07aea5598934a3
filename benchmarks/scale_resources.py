"""Row 6 of the scale benchmark: the `resources:` requests of the VoxCeleb recipes against measured costs.

A rule's request is base + per_unit x its data size (README/docs "cluster"); an entry of a recipe replaces the
schema's default entry, and keys it leaves out get 1 CPU, 4000 MB, 60 minutes, no scaling. Each row computes
the request at VoxCeleb size and compares it with what rows 1-3 measured in this run (projected to full size),
asking for headroom: 1.5x on memory, 2x on time (other storage, other CPUs; a retry adds retry_scale on top).
The entries of embed, fit_backend and score are checked against rows 4-5 (benchmarks/scale_backend.py) in the
docs, by hand: their row dicts carry formatted figures only.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from scale_common import CLEANING_SEGMENTS, REPO, VOX2_DEV_HOURS, VOX2_DEV_UTTS, fmt_mb, make_row

RECIPES = ("voxceleb_resnet34_ecapa", "voxceleb_xvector_margins", "voxceleb_lstm_netvlad")
ENTRY_DEFAULTS = {"cpus": 1, "mem_mb": 4000, "mem_mb_per_unit": 0.0, "runtime": 60, "runtime_per_unit": 0.0}
MEM_HEADROOM, TIME_HEADROOM = 1.5, 2.0


def shipped_entries() -> dict:
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    props = schema["properties"]["resources"]["properties"]
    return {k: v.get("default", {}) for k, v in props.items() if isinstance(v.get("default"), dict)}


def entry(recipe: str, rule: str) -> dict:
    """The effective resources entry of ``rule`` in a recipe config."""
    cfg = yaml.safe_load((REPO / "config" / f"{recipe}.yaml").read_text())
    own = (cfg.get("resources") or {}).get(rule)
    return {**ENTRY_DEFAULTS, **(own if own is not None else shipped_entries().get(rule, {}))}


def request(spec: dict, units: float) -> tuple[float, float]:
    """(MB, minutes) asked for at ``units`` units."""
    return spec["mem_mb"] + spec["mem_mb_per_unit"] * units, spec["runtime"] + spec["runtime_per_unit"] * units


def _check(row: str, what: str, spec: dict, units_n: float, unit_name: str, need_mb: float | None,
           need_min: float | None, basis: str) -> dict:
    mem, minutes = request(spec, units_n)
    ok_mem = need_mb is None or mem >= MEM_HEADROOM * need_mb
    ok_time = need_min is None or minutes >= TIME_HEADROOM * need_min
    needs = []
    if need_mb is not None:
        needs.append(f"memory {fmt_mb(need_mb)}")
    if need_min is not None:
        needs.append(f"time {need_min:.1f} min")
    miss = []
    if not ok_mem:
        miss.append(f"memory: asks {fmt_mb(mem)} < {MEM_HEADROOM}x the measured {fmt_mb(need_mb)}")
    if not ok_time:
        miss.append(f"time: asks {minutes:.0f} min < {TIME_HEADROOM}x the measured {need_min:.1f} min")
    return make_row(
        row, f"{what}: {_spec_text(spec)}, at {units_n:,.0f} {unit_name}",
        f"asks {fmt_mb(mem)}, {minutes:,.0f} min; measured {', '.join(needs)} ({basis})",
        f">= {MEM_HEADROOM}x measured memory, >= {TIME_HEADROOM}x measured time", ok_mem and ok_time,
        "; ".join(miss) + "; raise the entry in the config's resources")


def _spec_text(spec: dict) -> str:
    return (f"{spec['cpus']} CPU, {spec['mem_mb']:g} MB + {spec['mem_mb_per_unit']:g}/unit, "
            f"{spec['runtime']:g} min + {spec['runtime_per_unit']:g}/unit")


def resource_rows(units: dict, measured_rows: list[dict], recipes: tuple[str, ...] = RECIPES) -> list[dict]:
    """Row 6 from the per-unit costs rows 1-3 put in ``units``, and rows 4-5's figures quoted."""
    rows = []
    for recipe in recipes:
        cfg = yaml.safe_load((REPO / "config" / f"{recipe}.yaml").read_text())
        where = f"config/{recipe}.yaml"
        if "manifest_peak_mb" in units and "import_utts_per_s_wav" in units:
            minutes = VOX2_DEV_UTTS / units["import_utts_per_s_wav"] / 60
            rows.append(_check("6 resources", f"{where} manifest", entry(recipe, "manifest"), 1, "job",
                               units["manifest_peak_mb"], minutes,
                               "header reads of real WAV files in the page cache, x 1,092,009; table I/O"))
        if "shard_utts_per_s_wav" in units:
            jobs = int(cfg.get("shards", {}).get("jobs", 1))
            minutes = VOX2_DEV_UTTS / (units["shard_utts_per_s_wav"] * jobs) / 60
            need_mb = units.get("shard_plan_peak_mb")
            rows.append(_check("6 resources", f"{where} shards ({jobs} jobs)", entry(recipe, "shards"),
                               VOX2_DEV_HOURS, "h of training audio", need_mb, minutes,
                               "write_shards rate on real WAV files in the page cache; plan_shards peak"))
        if cfg.get("cleaning", {}).get("enabled") and "clean_min_per_kseg" in units:
            spec = entry(recipe, "clean_speakers")
            dim = _embedding_dim(cfg)
            seg_bytes = dim * 4 + 150  # float32 vector + its ids and times in the table
            grow = seg_bytes / (256 * 4 + 150)  # row 3 measured 256-d; memory and K-means time grow with D
            base = units.get("clean_base_mb", 700.0)
            need_mb = base + (units["clean_peak_mb_full"] - base) * grow
            need_min = (units["clean_min_per_kseg"] * CLEANING_SEGMENTS / 1000 * units.get("clean_threads", 2)
                        / spec["cpus"] * dim / 256)
            rows.append(_check("6 resources", f"{where} clean_speakers ({dim}-d, {spec['cpus']} CPUs)", spec,
                               CLEANING_SEGMENTS / 1000, "x 1000 segment embeddings", need_mb, need_min,
                               f"row 3 at 6.8 M 256-d segments, {units.get('clean_threads', 2)} threads, scaled "
                               f"to {dim}-d (memory x{grow:.2f}, time x{dim / 256:.2f}) and the entry's CPUs"))
            need = units["clean_segments_per_hour"] * VOX2_DEV_HOURS * seg_bytes / 2**20
            rows.append(_check("6 resources", f"{where} embed_segments memory ({dim}-d)",
                               entry(recipe, "embed_segments"), VOX2_DEV_HOURS, "h of training audio", need, None,
                               f"{units['clean_segments_per_hour']:,.0f} segments per hour x {seg_bytes} B, held "
                               "once (write_embeddings makes no copy)"))
    if not rows:
        rows.append(make_row("6 resources", "the recipes' resources against measured costs", "not checked", "-",
                             False, "row 6 needs rows 1-3 in the same run (--rows 1,2,3,6)"))
    return rows


def _embedding_dim(cfg: dict) -> int:
    """The seed model's embedding size where the recipe says it, else 256."""
    model = cfg.get("cleaning", {}).get("seed_model", {}).get("model", {})
    return int(model.get("embed_dim", 700 if "lstm" in str(model.get("name", "")) else 256))


if __name__ == "__main__":
    print(Path(__file__).name, "is run by benchmarks/scale.py")
