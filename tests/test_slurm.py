"""`snakemake --profile cluster` on a real one-node SLURM cluster (tests/slurm/cluster.sh, fake GPU).

GPU requests reach sbatch, outputs equal a local run, a failing rule names its log and fails the run, and an
unknown partition stops Snakemake before anything is submitted. Needs root; installs SLURM with apt-get.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from test_workflow import tiny_config  # pytest puts tests/ on sys.path

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "tests/slurm/cluster.sh"
STAND_IN = REPO / "tests/slurm/Snakefile"
RUN_TIMEOUT_S = 240  # per snakemake run; hung runs are killed (SIGKILL) rather than waited for
pytestmark = pytest.mark.workflow

SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.")


def cluster(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLUSTER_SH), cmd], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def slurm():
    """The cluster, brought up for the session (and down after it, unless it was already up)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("the SLURM test cluster needs root and apt-get (to install munge, slurm, slurmdbd, mariadb)")
    was_up = cluster("status").returncode == 0
    up = cluster("up")
    if up.returncode == 3:
        pytest.skip(f"apt-get cannot install the SLURM packages: {up.stderr.strip()[-500:]}")
    if up.returncode != 0:
        if not was_up:
            cluster("down")
        pytest.fail(f"tests/slurm/cluster.sh up failed:\n{up.stdout}\n{up.stderr}")
    yield
    if not was_up:
        down = cluster("down")
        assert down.returncode == 0, down.stderr


def snakemake(workdir: Path, *args: str, snakefile: Path = STAND_IN, slurm_env: dict | None = None,
              local: bool = False) -> subprocess.CompletedProcess:
    """Snakemake as a user types it in the repository root: `snakemake --profile cluster ...` (or a local run).
    Targets go first in `args`: options like --configfile take every word after them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXFLOW_SLURM_", "SNAKEMAKE_PROFILE"))}
    env.update(slurm_env or {}, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    mode = ["--cores", "2"] if local else ["--profile", "cluster", "--slurm-init-seconds-before-status-checks", "1"]
    cmd = ["timeout", "-s", "KILL", str(RUN_TIMEOUT_S), sys.executable, "-m", "snakemake", *mode,
           "-s", str(snakefile), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    proc.output = proc.stdout + proc.stderr
    assert proc.returncode != -9, f"snakemake hung and was killed after {RUN_TIMEOUT_S}s:\n{proc.output[-5000:]}"
    return proc


def submitted(output: str) -> dict[str, str]:
    """Rule -> SLURM job id, from Snakemake's own log lines."""
    return {re.search(r"/rule_(\w+)/", log).group(1): jobid for jobid, log in SUBMITTED.findall(output)}


def sacct(jobid: str) -> dict[str, str]:
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", jobid, "-o", "Partition,ReqTRES,State"],
                         capture_output=True, text=True, check=True).stdout.strip()
    partition, tres, state = out.splitlines()[0].split("|")
    return {"partition": partition, "tres": tres, "state": state}


def job_threads(output: str, rule: str) -> int:
    block = re.search(rf"^rule {rule}:\n(.*?)^Shell command", output, re.M | re.S).group(1)
    found = re.search(r"^\s+threads: (\d+)$", block, re.M)
    return int(found.group(1)) if found else 1


def files(root: Path, *subdirs: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for d in subdirs for p in sorted((root / d).rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def stand_in_run(slurm, tmp_path_factory):
    """The stand-in workflow through SLURM with device cuda and a separate GPU partition."""
    workdir = tmp_path_factory.mktemp("slurm_stand_in")
    proc = snakemake(workdir, "--config", "device=cuda", "--slurm-keep-successful-logs",
                     slurm_env={"VOXFLOW_SLURM_PARTITION": "cpu", "VOXFLOW_SLURM_GPU_PARTITION": "gpu"})
    assert proc.returncode == 0, proc.output[-5000:]
    return workdir, proc


def test_gpu_rule_gets_a_gpu_in_the_gpu_partition(stand_in_run):
    workdir, proc = stand_in_run
    jobs = submitted(proc.output)
    assert set(jobs) == {"shards", "train_stage"}, proc.output[-3000:]
    train, shards = sacct(jobs["train_stage"]), sacct(jobs["shards"])
    assert train["state"] == shards["state"] == "COMPLETED"
    assert (train["partition"], shards["partition"]) == ("gpu", "cpu")
    assert "gres/gpu=1" in train["tres"] and "gres/gpu" not in shards["tres"]
    # The profile's per-rule resources: memory, and CPUs = the job's threads (also OMP_NUM_THREADS in the job).
    threads = job_threads(proc.output, "train_stage")
    assert f"cpu={threads}," in train["tres"] and "mem=32000M" in train["tres"], train
    job_env = (workdir / "logs/train_stage.log").read_text()
    in_job = min(threads, os.cpu_count())  # inside the job, snakemake caps threads at the node's real cores
    assert "CUDA_VISIBLE_DEVICES=0" in job_env and f"OMP_NUM_THREADS={in_job}" in job_env, job_env


def test_outputs_equal_a_local_run(stand_in_run, tmp_path):
    workdir, _ = stand_in_run
    local = snakemake(tmp_path, "--config", "device=cuda", local=True)
    assert local.returncode == 0, local.output[-3000:]
    assert files(workdir, "data", "exp") == files(tmp_path, "data", "exp")


def test_failing_rule_names_its_log_and_fails_the_run(stand_in_run):
    workdir, _ = stand_in_run
    proc = snakemake(workdir, "failed.txt")
    assert proc.returncode != 0
    assert "Error in rule failing" in proc.output
    assert "logs/failing.log" in proc.output and "failing on purpose" in proc.output  # show-failed-logs
    assert re.search(r"\.snakemake/slurm_logs/rule_failing/\d+\.log", proc.output), proc.output[-3000:]
    assert not (workdir / "failed.txt").exists()


@pytest.mark.parametrize("var", ["VOXFLOW_SLURM_PARTITION", "VOXFLOW_SLURM_GPU_PARTITION"])
def test_unknown_partition_stops_before_anything_is_submitted(slurm, tmp_path, var):
    jobs_before = subprocess.run(["sacct", "-n", "-X", "-a", "-o", "JobID"], capture_output=True, text=True).stdout
    start = time.monotonic()
    proc = snakemake(tmp_path, slurm_env={var: "no_such_partition"})
    assert proc.returncode != 0
    assert f"{var}=no_such_partition: no such partition on this cluster" in proc.output, proc.output[-3000:]
    assert "cpu*, gpu" in proc.output  # the partitions that do exist
    assert time.monotonic() - start < 30
    assert "submitted" not in proc.output and not (tmp_path / "data").exists()
    assert subprocess.run(["sacct", "-n", "-X", "-a", "-o", "JobID"], capture_output=True, text=True).stdout \
        == jobs_before


def _checkpoint_tensors(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    out = {}

    def walk(prefix, obj):
        if isinstance(obj, torch.Tensor):
            out[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}", v)

    walk("", state)
    return out


def test_recipe_training_stage_on_a_fake_gpu_matches_a_local_run(slurm, tmp_path):
    """The real recipe: data made locally, then its first training stage through SLURM with a GPU request
    (device stays cpu: there is no real GPU) and, side by side, locally; the checkpoints must agree."""
    cfg = tiny_config()
    cfg["cleaning"]["enabled"] = False
    target = "exp/xvector_aam/warmup/final.pt"
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    on_slurm.mkdir()
    (on_slurm / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    recipe = ("--configfile", str(on_slurm / "config.yaml"))
    prep = snakemake(on_slurm, target, *recipe, "--omit-from", "train_stage", snakefile=REPO / "Snakefile",
                     local=True)
    assert prep.returncode == 0, prep.output[-5000:]
    shutil.copytree(on_slurm, local, symlinks=True)

    # Equal torch thread counts (OMP_NUM_THREADS = the job's threads) make CPU training reproducible.
    same_threads = ("--set-threads", "train_stage=2")
    with ThreadPoolExecutor(1) as pool:
        local_run = pool.submit(snakemake, local, target, "--configfile", str(local / "config.yaml"), *same_threads,
                                snakefile=REPO / "Snakefile", local=True)
        proc = snakemake(on_slurm, target, *recipe, *same_threads, "--set-resources", "train_stage:gpu=1",
                         snakefile=REPO / "Snakefile")
        local_proc = local_run.result()
    assert proc.returncode == 0, proc.output[-5000:]
    assert local_proc.returncode == 0, local_proc.output[-5000:]

    jobs = submitted(proc.output)
    assert set(jobs) == {"train_stage"}, proc.output[-3000:]
    job = sacct(jobs["train_stage"])
    assert job["state"] == "COMPLETED" and "gres/gpu=1" in job["tres"], job
    a, b = _checkpoint_tensors(on_slurm / target), _checkpoint_tensors(local / target)
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), rtol=1e-5, atol=1e-7), name
    log_a = pd.read_parquet(on_slurm / "exp/xvector_aam/warmup/train_log.parquet")
    log_b = pd.read_parquet(local / "exp/xvector_aam/warmup/train_log.parquet")
    assert len(log_a) == len(log_b) > 0
