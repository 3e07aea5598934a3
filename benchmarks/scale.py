"""VoxCeleb at scale, measured (issue 16): one Markdown table of what a VoxCeleb run costs outside the GPU.

    python benchmarks/scale.py --quick                   # about 5 minutes on a 2-core machine
    python benchmarks/scale.py                           # full size: see docs/benchmarks.md for its run time
    python benchmarks/scale.py --rows 1,3 --json out.json --workdir /tmp/scale

Rows: 1 planning (snakemake -n on the VoxCeleb recipes over VoxCeleb-sized manifests; shard planning),
2 manifests and shards (the 1.09 M-row manifest's I/O; shard writing on real audio files), 3 cleaning
(Kaseva & Kurimo's rule on 6.8 M segment embeddings), 4 extraction and 5 scoring (benchmarks/scale_backend.py),
6 cluster resources (the recipes' `resources:` against the measured per-unit costs). Every row has its figure,
its target, the ratio to Wespeaker's figure where one exists, and a verdict. The quick mode measures smaller sizes
and projects per-unit figures to full size (the row says so). Every measured step runs in a process of its own,
so that its peak memory is its own. On a shared machine (load average above half the cores) single-threaded
steps are judged on CPU time, and the header says the machine was shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_common import check_row, machine, machine_line  # noqa: E402

ALL_ROWS = (1, 2, 3, 4, 5, 6)
COLUMNS = ("row", "measure", "figure", "target", "wespeaker", "verdict")
HEADERS = ("row", "measured", "figure", "target", "vs Wespeaker", "verdict")


def backend_rows(quick: bool, which: int) -> list[dict]:
    """Rows 4 (extraction) and 5 (scoring) from benchmarks/scale_backend.py (helper module of its own)."""
    try:
        import scale_backend
    except ImportError as exc:
        return [dict(row=f"{which} {'extraction' if which == 4 else 'scoring'}", measure="benchmarks/scale_backend.py",
                     figure="not measured", target="-", wespeaker="",
                     verdict=f"misses: benchmarks/scale_backend.py is not importable ({exc})")]
    return scale_backend.extraction_rows(quick) if which == 4 else scale_backend.scoring_rows(quick)


def run_rows(rows: tuple[int, ...], quick: bool, workdir: str, threads: int = 2, jobs: int = 8,
             units: dict | None = None) -> list[dict]:
    """Measure the selected rows in order; row 6 uses the per-unit costs rows 1-3 put in ``units``."""
    from scale_cleaning import cleaning_rows
    from scale_manifests import manifest_rows
    from scale_plan import planning_rows
    from scale_resources import resource_rows

    units = {} if units is None else units
    out: list[dict] = []
    for r in rows:
        t0 = time.perf_counter()
        if r == 1:
            got = planning_rows(workdir, quick, units=units)
        elif r == 2:
            got = manifest_rows(workdir, quick, jobs=jobs, units=units)
        elif r == 3:
            got = cleaning_rows(workdir, quick, threads=threads, units=units)
        elif r in (4, 5):
            got = backend_rows(quick, r)
        else:
            got = resource_rows(units, out)
        out += [check_row(x) for x in got]
        print(f"[row {r}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    return out


def markdown(rows: list[dict], header: dict) -> str:
    def cell(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")

    lines = [f"VoxCeleb scale benchmark ({header['mode']}), {header['date']}, {header['run_time']}",
             f"Machine: {header['machine_line']}", "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def parse_rows(text: str) -> tuple[int, ...]:
    try:
        rows = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise SystemExit(f"--rows: expected numbers from 1 to 6 separated by commas, got {text!r}")
    if not rows or not set(rows) <= set(ALL_ROWS):
        raise SystemExit(f"--rows: expected numbers from 1 to 6 separated by commas, got {text!r}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="scaled-down sizes, projected to full size (~5 min)")
    ap.add_argument("--rows", default="1,2,3,4,5,6", help="rows to run, e.g. 1,3 (default: all)")
    ap.add_argument("--json", help="also write the rows and the header as JSON here")
    ap.add_argument("--workdir", help="where the synthetic inputs go (default: a temporary directory, removed)")
    ap.add_argument("--threads", type=int, default=2, help="cleaning threads (the clean_speakers job's CPUs)")
    ap.add_argument("--jobs", type=int, default=8, help="shard-writing jobs the projection assumes (shards.jobs)")
    args = ap.parse_args(argv)
    rows = parse_rows(args.rows)
    m = machine()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="voxflow_scale_") as tmp:
        workdir = args.workdir or tmp
        Path(workdir).mkdir(parents=True, exist_ok=True)
        units: dict = {}
        table = run_rows(rows, args.quick, workdir, threads=args.threads, jobs=args.jobs, units=units)
    after = machine()
    m["shared"] = m["shared"] or after["shared"]
    m["load_average"] = max(m["load_average"], after["load_average"])
    header = {"mode": "quick" if args.quick else "full", "date": dt.datetime.now(dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"), "run_time": f"run time {(time.perf_counter() - t0) / 60:.1f} min",
        "machine": m, "machine_line": machine_line(m)}
    print(markdown(table, header))
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": table, "units": units}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
