"""Shared pieces of the VoxCeleb-scale benchmark (benchmarks/scale.py): the row format, the machine, and running a
measured step in a fresh Python process so that its wall time and peak memory are its own.

A row is a dict with keys ``row`` ("3 cleaning"), ``measure`` (what is measured, with its size), ``figure``
(the measured value with its unit), ``target``, ``wespeaker`` (ratio to Wespeaker's figure, or "") and
``verdict`` ("meets", or "misses: why, and what would meet it").
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROW_KEYS = ("row", "measure", "figure", "target", "wespeaker", "verdict")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# VoxCeleb sizes (Nagrani et al. 2017; Chung et al. 2018) and the cleaning set of Kaseva & Kurimo.
VOX2_DEV_UTTS, VOX2_DEV_SPEAKERS, VOX2_DEV_HOURS = 1_092_009, 5_994, 2_360.0
VOX1_UTTS, VOX1_SPEAKERS = 153_516, 1_251
VOX1_TRIALS = {"vox1_o": 37_611, "vox1_e": 579_818, "vox1_h": 550_894}
CLEANING_SEGMENTS = 6_800_000
SHARDS_FULL = 1_092  # 1,000 utterances per shard


def make_row(row: str, measure: str, figure: str, target: str, ok: bool, miss: str = "", wespeaker: str = "") -> dict:
    """One table row; ``miss`` says why the target is missed and what would meet it (used when not ``ok``)."""
    verdict = "meets" if ok else f"misses: {miss or 'see the docs'}"
    return dict(row=row, measure=measure, figure=figure, target=target, wespeaker=wespeaker, verdict=verdict)


def check_row(row: dict) -> dict:
    """Raise ValueError unless ``row`` has exactly the row keys with string values and a valid verdict."""
    if tuple(sorted(row)) != tuple(sorted(ROW_KEYS)):
        raise ValueError(f"row keys {sorted(row)} != {sorted(ROW_KEYS)}")
    if not all(isinstance(v, str) for v in row.values()):
        raise ValueError(f"row values must be strings: {row}")
    if not (row["verdict"] == "meets" or row["verdict"].startswith("misses: ")):
        raise ValueError(f"verdict must be 'meets' or 'misses: ...': {row['verdict']!r}")
    return row


def machine() -> dict:
    """CPU model, cores, RAM, torch threads, load average and whether the machine looked shared."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    import torch

    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    return dict(cpu=model, cores=cores, ram_gb=round(ram_gb, 1), torch_threads=torch.get_num_threads(),
                load_average=round(load, 2), shared=load > 0.5 * cores)


def machine_line(m: dict) -> str:
    shared = "; machine shared (load average above half the cores: timings inflated)" if m["shared"] else ""
    return (f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']:.0f} GB RAM, torch threads {m['torch_threads']}, "
            f"load average {m['load_average']:.2f}{shared}")


# A small launcher runs the measured command: on Linux a child's ru_maxrss starts from its parent's peak at fork
# (the high-water mark survives exec), so forking the benchmark (which may hold a large table) would inflate it.
_LAUNCHER = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(f'@@RUSAGE@@ {u.ru_maxrss} {u.ru_utime + u.ru_stime}', flush=True); sys.exit(rc)"
)


def run_measured(argv: list[str], env: dict | None = None, cwd: str | os.PathLike | None = None,
                 timeout: float | None = None) -> dict:
    """Run a command to its end; return wall seconds, CPU seconds (user + system, its descendants included), peak
    RSS (MB, of the command's process) and return code, and the tail of its output (kept in a temporary file)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, *argv], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    marker = text.rfind("@@RUSAGE@@")
    maxrss_kb, cpu = (text[marker:].split()[1:3] if marker >= 0 else (0, 0.0))
    return dict(wall_s=wall, cpu_s=float(cpu), peak_mb=int(maxrss_kb) / 1024, returncode=proc.returncode,
                output=text[:marker][-6000:] if marker >= 0 else text[-6000:])


def run_step(module: str, func: str, kwargs: dict, timeout: float | None = None) -> dict:
    """Call ``benchmarks/<module>.py``'s ``func(**kwargs)`` in a fresh Python process; return its JSON result plus
    ``wall_s``, ``cpu_s`` and ``peak_mb`` of that process. A failure raises RuntimeError with the child's output."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import importlib; "
        "m = importlib.import_module(sys.argv[2]); r = getattr(m, sys.argv[3])(**json.loads(sys.argv[4])); "
        "print('@@RESULT@@' + json.dumps(r))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    res = run_measured([sys.executable, "-c", code, str(HERE), module, func, json.dumps(kwargs)], env=env,
                       timeout=timeout)
    marker = res["output"].rfind("@@RESULT@@")
    if res["returncode"] != 0 or marker < 0:
        raise RuntimeError(f"{module}.{func} failed (exit {res['returncode']}):\n{res['output']}")
    result = json.loads(res["output"][marker + len("@@RESULT@@"):].splitlines()[0])
    result.update(wall_s=res["wall_s"], cpu_s=res["cpu_s"], peak_mb=res["peak_mb"])
    return result


def machine_shared() -> bool:
    """True when the 1-minute load average exceeds half the cores: other work competes for the CPUs."""
    return os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1)


def judged(wall_s: float, cpu_s: float) -> float:
    """The time a verdict is judged on: wall time, or on a shared machine the CPU time (what a single-threaded step
    takes alone; a multi-threaded step's CPU time over-states its wall time, so this errs on the safe side)."""
    return cpu_s if machine_shared() else wall_s


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def fmt_mb(mb: float) -> str:
    return f"{mb:.0f} MB" if mb < 2048 else f"{mb / 1024:.1f} GB"
