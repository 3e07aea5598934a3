"""`snakemake --profile cluster` on a real one-node SLURM cluster (tests/slurm/cluster.sh, fake GPU).

GPU requests reach sbatch, outputs equal a local run, a failing rule names its log and fails the run, an
unknown partition or account stops Snakemake before anything is submitted, and the training job asks for the
CPUs, memory and time the config's resources section computes from the data, and a corpus embedded in parts
(embedding.parts) is one GPU job per part. Needs root; installs SLURM with
apt-get. The resource computation itself is checked without SLURM, through real dry runs of the workflow.
"""

import math
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
    fields = ["Partition", "ReqTRES", "State", "Account", "TimelimitRaw", "ReqMem", "ReqCPUS"]
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", jobid, "-o", ",".join(fields)],
                         capture_output=True, text=True, check=True).stdout.strip()
    keys = ["partition", "tres", "state", "account", "minutes", "mem", "cpus"]
    return dict(zip(keys, out.splitlines()[0].split("|")))


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
                     slurm_env={"VOXFLOW_SLURM_PARTITION": "cpu", "VOXFLOW_SLURM_GPU_PARTITION": "gpu",
                                "VOXFLOW_SLURM_ACCOUNT": "root"})
    assert proc.returncode == 0, proc.output[-5000:]
    return workdir, proc


def test_gpu_rule_gets_a_gpu_in_the_gpu_partition(stand_in_run):
    workdir, proc = stand_in_run
    jobs = submitted(proc.output)
    assert set(jobs) == {"shards", "train_stage"}, proc.output[-3000:]
    train, shards = sacct(jobs["train_stage"]), sacct(jobs["shards"])
    assert train["state"] == shards["state"] == "COMPLETED"
    assert (train["partition"], shards["partition"]) == ("gpu", "cpu")
    assert train["account"] == shards["account"] == "root"  # VOXFLOW_SLURM_ACCOUNT, checked and passed on
    assert "gres/gpu=1" in train["tres"] and "gres/gpu" not in shards["tres"]
    # The profile's default-resources (4000 MB, 60 min), and CPUs = the job's threads (also OMP_NUM_THREADS).
    threads = job_threads(proc.output, "train_stage")
    assert f"cpu={threads}," in train["tres"] and "mem=4000M" in train["tres"], train
    assert (train["minutes"], train["mem"]) == ("60", "4000M"), train
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
    # The profile's retries: 1 submits it once more, as attempt 2, which asks for more time.
    tries = [jobid for jobid, log in SUBMITTED.findall(proc.output) if "/rule_failing/" in log]
    assert len(tries) == 2, proc.output[-3000:]
    assert [(sacct(j)["state"], sacct(j)["minutes"]) for j in tries] == [("FAILED", "10"), ("FAILED", "20")]


def all_jobs() -> str:
    return subprocess.run(["sacct", "-n", "-X", "-a", "-o", "JobID"], capture_output=True, text=True).stdout


@pytest.mark.parametrize("var, value, message, valid", [
    ("VOXFLOW_SLURM_PARTITION", "no_such_partition", "no such partition on this cluster", "cpu*, gpu"),
    ("VOXFLOW_SLURM_GPU_PARTITION", "no_such_partition", "no such partition on this cluster", "cpu*, gpu"),
    ("VOXFLOW_SLURM_ACCOUNT", "no_such_account", "user root has no association with this account",
     "accounts of root: root"),
])
def test_unknown_partition_or_account_stops_before_anything_is_submitted(slurm, tmp_path, var, value, message,
                                                                        valid):
    jobs_before = all_jobs()
    start = time.monotonic()
    proc = snakemake(tmp_path, slurm_env={var: value})
    assert proc.returncode != 0
    assert f"voxflow cluster profile: error: {var}={value}: {message}" in proc.output, proc.output[-3000:]
    assert valid in proc.output  # what does exist
    assert "Traceback" not in proc.output
    assert time.monotonic() - start < 30
    assert "submitted" not in proc.output and not (tmp_path / "data").exists()
    assert all_jobs() == jobs_before


def test_unknown_partition_in_the_config_stops_before_anything_is_submitted(slurm, tmp_path):
    cfg = tiny_config()
    cfg["resources"]["train_stage"]["partition"] = "no_such_partition"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    jobs_before = all_jobs()
    proc = snakemake(tmp_path, "--configfile", str(tmp_path / "config.yaml"), snakefile=REPO / "Snakefile")
    assert proc.returncode != 0
    assert "resources.train_stage.partition: 'no_such_partition': no such partition on this cluster" \
        " (partitions: cpu, gpu)" in proc.output, proc.output[-3000:]
    assert "submitted" not in proc.output and not (tmp_path / "data").exists()
    assert all_jobs() == jobs_before


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
    (device stays cpu: there is no real GPU) and, side by side, locally; the checkpoints must agree. The job
    asks for what the config's resources section computes from the training manifest."""
    cfg = tiny_config()
    cfg["cleaning"]["enabled"] = False
    cfg["validation"]["corpus"] = ""  # no per-epoch validation: not what this test is about, and it takes time
    cfg["experiments"]["xvector_aam"]["select"] = "last"
    # 2 CPUs in both runs: equal torch thread counts (OMP_NUM_THREADS) make CPU training reproducible.
    cfg["resources"]["train_stage"] = {"cpus": 2, "mem_mb": 1000, "mem_mb_per_unit": 20000, "runtime": 3,
                                       "runtime_per_unit": 300}
    target = "exp/xvector_aam/warmup/final.pt"
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    on_slurm.mkdir()
    (on_slurm / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    recipe = ("--configfile", str(on_slurm / "config.yaml"))
    prep = snakemake(on_slurm, target, *recipe, "--omit-from", "train_stage", snakefile=REPO / "Snakefile",
                     local=True)
    assert prep.returncode == 0, prep.output[-5000:]
    shutil.copytree(on_slurm, local, symlinks=True)

    with ThreadPoolExecutor(1) as pool:
        local_run = pool.submit(snakemake, local, target, "--configfile", str(local / "config.yaml"),
                                snakefile=REPO / "Snakefile", local=True)
        proc = snakemake(on_slurm, target, *recipe, "--set-resources", "train_stage:gpu=1",
                         snakefile=REPO / "Snakefile")
        local_proc = local_run.result()
    assert proc.returncode == 0, proc.output[-5000:]
    assert local_proc.returncode == 0, local_proc.output[-5000:]

    jobs = submitted(proc.output)
    assert set(jobs) == {"train_stage"}, proc.output[-3000:]
    job = sacct(jobs["train_stage"])
    assert job["state"] == "COMPLETED" and "gres/gpu=1" in job["tres"], job
    # base + per unit x (hours of training audio x 1 warm-up epoch / 1 process)
    hours = pd.read_parquet(on_slurm / "data/train/utterances.parquet")["duration_s"].sum() / 3600
    minutes, mem = math.ceil(3 + 300 * hours), math.ceil(1000 + 20000 * hours)
    assert minutes >= 3 + 5 and mem >= 1000 + 300, hours  # the data's share is visible
    assert (job["minutes"], job["mem"], job["cpus"]) == (str(minutes), f"{mem}M", "2"), job
    a, b = _checkpoint_tensors(on_slurm / target), _checkpoint_tensors(local / target)
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), rtol=1e-5, atol=1e-7), name
    log_a = pd.read_parquet(on_slurm / "exp/xvector_aam/warmup/train_log.parquet")
    log_b = pd.read_parquet(local / "exp/xvector_aam/warmup/train_log.parquet")
    assert len(log_a) == len(log_b) > 0



def test_corpus_embedded_in_parts_one_gpu_job_each(slurm, tmp_path):
    """embedding.parts: 2 through SLURM: two embed jobs, each with its own GPU request (--set-resources as on a
    CUDA cluster; the device stays cpu: there is no real GPU) and its share of the audio; the split and the merge
    run on the submit host; the merged embeddings equal those of the parts' manifests embedded locally in one
    job (measured bit-identical on the CPU: the tolerance only absorbs a different BLAS/thread setting)."""
    from test_embed_parts import TARGET, parts_config
    from voxflow.demo.corpus import make_demo_corpus

    cfg = parts_config(2)
    cfg["demo"]["enabled"] = False  # the corpus made here, in this process: faster than the rule
    make_demo_corpus(tmp_path / "data/demo", seed=0, n_dev_speakers=2, n_test_speakers=2, sessions_per_speaker=2,
                     utts_per_session=3, n_mislabeled=0, n_conversations=0, n_noises=1, n_rirs=1, max_dur_s=4.0)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    recipe = ("--configfile", str(tmp_path / "config.yaml"))
    prep = snakemake(tmp_path, TARGET, *recipe, "--omit-from", "embed", snakefile=REPO / "Snakefile", local=True)
    assert prep.returncode == 0, prep.output[-5000:]
    local = tmp_path / "local"  # the same inputs, embedded in one local job (parts 1) while SLURM runs the parts
    local.mkdir()
    for sub in ("data", "exp"):
        shutil.copytree(tmp_path / sub, local / sub, symlinks=True)
    cfg["embedding"]["parts"] = 1
    (local / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    with ThreadPoolExecutor(1) as pool:
        local_run = pool.submit(snakemake, local, TARGET, "--configfile", str(local / "config.yaml"),
                                "--allowed-rules", "embed", snakefile=REPO / "Snakefile", local=True)
        proc = snakemake(tmp_path, TARGET, *recipe, "--set-resources", "embed:gpu=1", snakefile=REPO / "Snakefile")
        local_proc = local_run.result()
    assert proc.returncode == 0, proc.output[-5000:]
    assert local_proc.returncode == 0, local_proc.output[-3000:]
    jobs = SUBMITTED.findall(proc.output)
    assert sorted(re.search(r"/rule_(\w+)/", log).group(1) for _, log in jobs) == ["embed"] * 2, proc.output[-3000:]
    mems = []
    for jobid, _ in jobs:
        job = sacct(jobid)
        assert job["state"] == "COMPLETED" and "gres/gpu=1" in job["tres"], job
        mems.append(int(job["mem"].rstrip("M")))
    # resources.embed of parts_config: 100 MB + 100 GB per hour of the part's audio
    hours = [pd.read_parquet(tmp_path / f"data/split2/demo_test/{k}.parquet").duration_s.sum() / 3600 for k in (1, 2)]
    assert sorted(mems) == sorted(math.ceil(100 + 100_000 * h) for h in hours), (mems, hours)
    from voxflow.data.manifests import read_embeddings

    ids, merged, _ = read_embeddings(tmp_path / TARGET)
    ids_one, one, _ = read_embeddings(local / TARGET)
    assert ids == ids_one == pd.read_parquet(tmp_path / "data/manifests/demo_test.parquet").utt_id.tolist()
    assert float(abs(one - merged).max()) <= 1e-6

# ---------------------------------------------------------------- resource requests (no SLURM: real dry runs)

TEST_RESOURCES = {
    "retry_scale": 2.0, "max_mem_mb": 0, "max_runtime": 0,
    "shards": {"mem_mb": 500, "runtime": 5, "runtime_per_unit": 2},
    "train_seed_model": {"cpus": 2, "mem_mb": 1500, "runtime": 6, "runtime_per_unit": 4},
    "embed_segments": {"cpus": 2, "mem_mb": 700, "mem_mb_per_unit": 30, "runtime": 4, "runtime_per_unit": 3},
    "train_stage": {"cpus": 3, "mem_mb": 1000, "mem_mb_per_unit": 10, "runtime": 10, "runtime_per_unit": 6},
    "embed": {"cpus": 2, "mem_mb": 800, "mem_mb_per_unit": 40, "runtime": 7, "runtime_per_unit": 1.5},
    "fit_backend": {"mem_mb": 900, "mem_mb_per_unit": 100, "runtime": 8, "runtime_per_unit": 4},
    "score": {"mem_mb": 600, "mem_mb_per_unit": 50, "runtime": 9, "runtime_per_unit": 10},
    "diarize": {"cpus": 2, "mem_mb": 1200, "runtime": 11, "runtime_per_unit": 5000},
}


def sized_workdir(root: Path, train: int, dev: int, test: int, diar_bytes: int, **resources) -> dict:
    """A workdir with manifests, embeddings and recordings of the given sizes; returns the sizes' units."""
    root.mkdir()
    cfg = tiny_config()
    cfg["experiments"]["xvector_aam"]["warmup"]["epochs"] = 2
    cfg["resources"] = {**TEST_RESOURCES, **resources}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    def manifest(path: str, n: int) -> float:
        seconds = [30.0 + 12.0 * (i % 2) for i in range(n)]  # 30 s and 42 s, alternating
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"utt_id": [f"u{i}" for i in range(n)], "duration_s": seconds}).to_parquet(root / path)
        return sum(seconds) / 3600

    hours = {"train": manifest("data/train/utterances.parquet", train),
             "demo_dev": manifest("data/manifests/demo_dev.parquet", dev),
             "demo_test": manifest("data/manifests/demo_test.parquet", test)}
    for system in ("xvector_aam", "xvector_aam_untrained"):
        manifest(f"exp/{system}/embeddings/demo_dev.parquet", dev)
        manifest(f"exp/{system}/embeddings/demo_test.parquet", test)
    (root / "data/demo/diar/wav").mkdir(parents=True)
    (root / "data/demo/diar/wav/conv0.wav").write_bytes(b"\0" * diar_bytes)
    return {"hours": hours, "fit": min(dev, cfg["backend_training"]["max_utts"]) / 1000, "score": test / 1000,
            "gb": diar_bytes / 1e9}


def planned_requests(workdir: Path, *args: str) -> dict[tuple[str, str], dict]:
    """(rule, wildcards) -> threads, mem_mb and runtime of every job of a forced dry run of the recipe."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-n", "-F", "--cores", "64", "-s", str(REPO / "Snakefile"),
           "-d", str(workdir), "--configfile", str(workdir / "config.yaml"), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = {}
    for rule, body in re.findall(r"^rule (\w+):\n((?:    .*\n)+)", proc.stdout, re.M):
        fields = dict(re.findall(r"^    (\w+): (.*)$", body, re.M))
        res = dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if "=" in kv)
        out[(rule, fields.get("wildcards", ""))] = {"threads": int(fields.get("threads", 1)),
                                                     "mem_mb": res.get("mem_mb"), "runtime": res.get("runtime")}
    return out


def expected(rule: str, unit: float, scale: float = 1.0, cap: int = 0) -> dict:
    spec = {"cpus": 1, "mem_mb_per_unit": 0, "runtime_per_unit": 0, **TEST_RESOURCES[rule]}
    mem = (spec["mem_mb"] + spec["mem_mb_per_unit"] * unit) * scale
    runtime = (spec["runtime"] + spec["runtime_per_unit"] * unit) * scale
    return {"mem_mb": str(math.ceil(mem)), "runtime": str(math.ceil(min(runtime, cap) if cap else runtime))}


def test_resource_requests_scale_with_the_data_and_the_attempt(tmp_path):
    small = sized_workdir(tmp_path / "small", train=100, dev=300, test=120, diar_bytes=2_000_000)
    large = sized_workdir(tmp_path / "large", train=1000, dev=5000, test=1500, diar_bytes=8_000_000,
                          max_runtime=200)
    runs = [(small, planned_requests(tmp_path / "small"), 1.0, 0),
            (large, planned_requests(tmp_path / "large", "--attempt", "2"), 2.0, 200)]  # retry_scale 2
    for sizes, jobs, scale, cap in runs:
        h = sizes["hours"]
        want = {
            ("shards", ""): ("shards", h["train"], 2),  # threads: shards.jobs
            ("train_seed_model", ""): ("train_seed_model", h["train"] * 1, 2),  # 1 seed-model epoch
            ("embed_segments", ""): ("embed_segments", h["train"], 2),
            ("train_stage", "exp=xvector_aam, stage=warmup"): ("train_stage", h["train"] * 2, 3),  # 2 epochs
            ("train_stage", "exp=xvector_aam, stage=margin"): ("train_stage", h["train"], 3),
            ("embed", "system=xvector_aam, corpus=demo_dev"): ("embed", h["demo_dev"], 2),
            ("embed", "system=xvector_aam_untrained, corpus=demo_test"): ("embed", h["demo_test"], 2),
            ("fit_backend", "system=xvector_aam, backend=plda"): ("fit_backend", sizes["fit"], 1),
            ("score", "system=xvector_aam, trials=demo, backend=cosine"): ("score", sizes["score"], 1),
            ("diarize", "exp=xvector_aam, dset=demo"): ("diarize", sizes["gb"], 2),
        }
        for key, (rule, unit, threads) in want.items():
            assert jobs[key] == {"threads": threads, **expected(rule, unit, scale, cap)}, (key, jobs[key])
        # Rules without figures in the config: 1 thread, the profile's default-resources (none locally).
        assert jobs[("average", "exp=xvector_aam")] == {"threads": 1, "mem_mb": None, "runtime": None}
    # The numbers really moved: 10x the training audio, twice per retry.
    small_jobs, large_jobs = runs[0][1], runs[1][1]
    warmup = ("train_stage", "exp=xvector_aam, stage=warmup")
    assert (small_jobs[warmup]["runtime"], large_jobs[warmup]["runtime"]) == ("22", "200")  # 10+6*2*1 h; capped
    assert (small_jobs[warmup]["mem_mb"], large_jobs[warmup]["mem_mb"]) == ("1020", "2400")  # (1000+10*2*10 h)*2


def test_scaling_a_rule_without_a_data_size_is_named(tmp_path):
    sized_workdir(tmp_path / "w", train=10, dev=10, test=10, diar_bytes=10,
                  manifest={"mem_mb": 1000, "runtime": 60, "runtime_per_unit": 1})
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(REPO / "Snakefile"),
                           "-d", str(tmp_path / "w"), "--configfile", str(tmp_path / "w/config.yaml")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "config: resources.manifest.runtime_per_unit: rule manifest has no data size" in output, output[-3000:]
