"""Runs the real Snakemake workflow on a tiny config: outputs, report, rerun semantics, config errors."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow


def tiny_config() -> dict:
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["demo"].update(n_dev_speakers=8, n_test_speakers=4, n_heldout_speakers=3, sessions_per_speaker=2, utts_per_session=3,
                       n_mislabeled=2, n_conversations=1)
    small = {"name": "xvector", "channels": 32, "stats_channels": 64, "embed_dim": 32}
    cfg["cleaning"]["seed_model"]["model"] = dict(small)
    cfg["cleaning"]["seed_model"]["warmup"]["epochs"] = 1
    exp = cfg["experiments"]["xvector_aam"]
    exp["model"] = dict(small)
    exp["data"]["batch_size"] = 16
    cfg["cleaning"]["seed_model"]["data"]["batch_size"] = 16
    for stage in ("warmup", "margin", "finetune"):
        exp[stage]["epochs"] = 1
    exp["margin"]["head"]["schedule"] = {"start_epoch": 0, "end_epoch": 1, "mode": "linear"}
    cfg["shards"]["utts_per_shard"] = 10
    return cfg


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(workdir: Path) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when there is nothing to do)."""
    out = snakemake(workdir, "-n").stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def write_config(workdir: Path, cfg: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wf")
    cfg = tiny_config()
    write_config(workdir, cfg)
    snakemake(workdir)
    return workdir, cfg


def test_every_output_exists_and_parses(finished_run):
    workdir, cfg = finished_run
    summary = pd.read_csv(workdir / "results/summary.csv")
    ver = summary[summary.task == "verification"]
    assert set(ver.system) == {"xvector_aam", "xvector_aam_untrained"}
    assert set(ver.backend) == {"cosine", "cosine_asnorm", "plda"}
    assert ver["eer_%"].between(0, 100).all() and ver["min_dcf_0.01"].between(0, 1.0001).all()
    dia = summary[summary.task == "diarization"]
    assert len(dia) == 1 and 0 <= dia["der_%"].iloc[0]
    metrics = json.loads((workdir / "exp/xvector_aam/scores/demo/cosine.json").read_text())
    assert {"eer", "min_dcf_0.01", "min_dcf_0.001", "n_target", "n_nontarget"} <= set(metrics)
    assert set(ver.calibration) == {"none", "QMF (duration, norm)"}  # calibration: enabled in the demo config
    assert ver[ver.calibration != "none"]["cllr"].gt(0).all() and ver[ver.calibration == "none"]["cllr"].isna().all()
    calibrated = json.loads((workdir / "exp/xvector_aam/calibrated/demo/cosine.json").read_text())
    assert calibrated["calibration"]["constant"] == ["norm_min", "norm_max"]  # the embeddings are L2-normalised
    assert {"cllr", "act_dcf", "act_dcf_0.01"} <= set(calibrated)
    der = json.loads((workdir / "exp/xvector_aam/diarization/demo/der.json").read_text())
    assert abs(der["der"] - (der["miss"] + der["false_alarm"] + der["confusion"])) < 1e-6
    for png in ("det_demo.png", "training_curves.png", "diarization_demo.png"):
        assert (workdir / "results" / png).read_bytes()[:4] == b"\x89PNG"
    assert "planted mislabels caught" in (workdir / "results/cleaning.md").read_text()
    for rel in ("exp/xvector_aam/model.ts", "exp/xvector_aam/model.onnx", "data/shards/train/shards.parquet",
                "data/cleaning/exclusions.parquet", "exp/xvector_aam/margin/train_log.parquet"):
        assert (workdir / rel).stat().st_size > 0, rel
    for rule_log in ("demo_corpus", "shards", "train/xvector_aam_warmup"):
        assert (workdir / "logs" / f"{rule_log}.log").exists()
    assert list((workdir / "logs/bench").glob("*.tsv"))


def test_report_and_nothing_left_to_do(finished_run):
    workdir, _ = finished_run
    assert planned_jobs(workdir) == {}
    snakemake(workdir, "--report", str(workdir / "results/report.html"))
    html = (workdir / "results/report.html").read_text(errors="ignore")
    assert len(html) > 10000 and "det_demo.png" in html


def test_training_change_reruns_training_not_data(finished_run):
    workdir, cfg = finished_run
    changed = json.loads(json.dumps(cfg))
    changed["experiments"]["xvector_aam"]["margin"]["head"]["margin"] = 0.25
    write_config(workdir, changed)
    try:
        jobs = planned_jobs(workdir)
    finally:
        write_config(workdir, cfg)
    assert {"train_stage", "average", "export", "embed", "score", "summary"} <= set(jobs)
    assert jobs["train_stage"] == 2  # the margin stage and the fine-tune after it, not the warm-up
    assert not {"demo_corpus", "manifest", "shards", "train_seed_model", "clean_speakers",
                "export_untrained"} & set(jobs)


def test_backend_change_reruns_only_scoring(finished_run):
    workdir, cfg = finished_run
    changed = json.loads(json.dumps(cfg))
    changed["backends"]["cosine_asnorm"]["top_n"] = 10
    write_config(workdir, changed)
    try:
        jobs = planned_jobs(workdir)
    finally:
        write_config(workdir, cfg)
    assert {"fit_backend", "score", "summary"} <= set(jobs)
    assert set(jobs) <= {"fit_backend", "score", "calibrate", "det_plot", "summary", "all"}


def test_misspelled_key_is_named(tmp_path):
    cfg = tiny_config()
    cfg["experiments"]["xvector_aam"]["optimizer"]["lerning_rate"] = 0.1
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "lerning_rate" in proc.stdout + proc.stderr


def test_schema_fills_defaults(tmp_path):
    cfg = tiny_config()
    del cfg["diarization"]
    del cfg["embedding"]
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
