"""`voxflow summarize` and the workflow's onerror summary: every expected result is a row, ok or missing."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_workflow import REPO, snakemake, tiny_config, write_config  # pytest puts tests/ on sys.path
from voxflow.metrics.verification import summarize as score_metrics, summarize_llr
from voxflow.report.summary import load_workflow_config, summarize, summary_inputs

VOXFLOW = [str(Path(sys.executable).parent / "voxflow")]  # the console script, as a user runs it


def unit_config() -> dict:
    """2 systems (an experiment and its untrained baseline) x 2 back-ends, calibrated, one diarization set."""
    cfg = tiny_config()
    cfg["backends"] = {"cosine": {"type": "cosine"}, "plda": {"type": "plda"}}
    return cfg


def fake_results(paths: dict) -> None:
    """Metrics and DER files as scripts/backend.py score, scripts/calibrate.py and scripts/der.py write them."""
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(50, bool), np.zeros(150, bool)]
    for i, path in enumerate(paths["metrics"]):
        scores = rng.normal(size=200) + 2.0 * labels + 0.1 * i
        if "/calibrated/" in path:
            metrics = summarize_llr(scores, labels, 0.01)
            metrics["calibration"] = {"quality": ["duration", "norm"], "weights": {}, "constant": []}
        else:
            metrics = score_metrics(scores, labels)
        metrics.update(backend=Path(path).stem)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(metrics, indent=1))
    for path in paths["der"]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"der": 0.12, "miss": 0.02, "false_alarm": 0.08, "confusion": 0.02,
                                          "collar": 0.25, "uem": None}))


@pytest.fixture
def unit_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, unit_config())
    config = load_workflow_config(tmp_path / "config.yaml")
    paths = summary_inputs(config)
    fake_results(paths)
    return tmp_path, config, paths


def test_missing_rows_are_marked(unit_run):
    workdir, config, paths = unit_run
    assert len(paths["metrics"]) == 8 and len(paths["der"]) == 1  # (scores, calibrated) x 2 systems x 2 back-ends
    gone = ["exp/xvector_aam_untrained/scores/demo/plda.json", "exp/xvector_aam/calibrated/demo/cosine.json",
            "exp/xvector_aam/diarization/demo/der.json"]
    for path in gone:
        os.remove(path)
    table, message = summarize(config)
    assert "3 missing" in message
    csv = pd.read_csv(workdir / "results/summary.csv")
    assert list(csv.columns[:6]) == ["task", "system", "backend", "calibration", "set", "status"]
    assert csv.columns[-1] == "path"
    assert len(csv) == 9 and set(csv.status) == {"ok", "missing"}
    missing = csv[csv.status == "missing"]
    assert sorted(missing.path) == sorted(gone)
    assert missing["eer_%"].isna().all() and missing["der_%"].isna().all()
    ok = csv[csv.status == "ok"]
    assert ok[ok.task == "verification"]["eer_%"].notna().all() and len(ok) == 6
    row = missing[missing.backend == "cosine"].iloc[0]
    assert (row.system, row.calibration, row.set) == ("xvector_aam", "QMF (duration, norm)", "demo")
    as_text = pd.read_csv(workdir / "results/summary.csv", dtype=str)
    assert as_text.trials.dropna().tolist() == ["200"] * 6  # integers, also next to missing and diarization rows
    first = json.loads((workdir / paths["metrics"][0]).read_text())
    assert csv["eer_%"].iloc[0] == pytest.approx(100 * first["eer"], abs=1e-5)

    md = (workdir / "results/summary.md").read_text()
    section = md.split("## Missing")[1]
    assert all(path in section for path in gone) and "3 expected result(s)" in section
    assert "## Speaker verification" in md.split("## Missing")[0]
    plda_untrained = next(line for line in md.splitlines() if line.startswith("| xvector_aam_untrained | plda | none"))
    assert "| - | - | - |" in plda_untrained  # the missing row is in the table, without numbers


def test_nothing_missing_without_missing_section(unit_run):
    workdir, config, _ = unit_run
    table, message = summarize(config)
    assert (table.status == "ok").all() and "none missing" in message
    assert "## Missing" not in (workdir / "results/summary.md").read_text()


@pytest.mark.workflow
def test_cli_writes_the_table_of_rule_summary(unit_run):
    """The rule's own command (as Snakemake prints it) and `voxflow summarize` write the same files."""
    workdir, _, _ = unit_run
    dry = snakemake(workdir, "-n", "-p", "results/summary.csv").stdout
    command = re.search(r"python \S+/scripts/summary\.py .*", dry).group(0)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    (workdir / "logs").mkdir()
    subprocess.run(command, shell=True, cwd=workdir, env=env, check=True, capture_output=True)
    rule = {name: (workdir / "results" / name).read_text() for name in ("summary.csv", "summary.md")}
    assert rule["summary.csv"].count("\n") == 10
    (workdir / "results/summary.csv").unlink()
    out = subprocess.run([*VOXFLOW, "summarize", "--configfile", "config.yaml"], cwd=workdir, env=env,
                         capture_output=True, text=True, check=True)
    assert "none missing" in out.stdout
    assert {name: (workdir / "results" / name).read_text() for name in rule} == rule


@pytest.mark.workflow
def test_keep_going_run_with_a_failed_backend_still_summarizes(tmp_path):
    """A real run: the plda back-end cannot be fitted on 1 utterance (1 speaker), cosine needs no statistics.
    Cheap on purpose: 4 training speakers, 1 epoch, no cleaning, validation, calibration or diarization."""
    start = time.monotonic()
    cfg = tiny_config()
    cfg["demo"].update(n_dev_speakers=4, n_test_speakers=3, n_heldout_speakers=0, n_mislabeled=0,
                       n_conversations=0)
    cfg["cleaning"]["enabled"] = False
    cfg["calibration"]["enabled"] = False
    cfg["validation"]["corpus"] = ""
    cfg["diarization_sets"] = {}
    exp = cfg["experiments"]["xvector_aam"]
    exp.update(untrained_baseline=False, select="last")
    exp["margin"]["epochs"] = exp["finetune"]["epochs"] = 0
    exp["data"]["aug_prob"] = 0.0
    cfg["backends"] = {"cosine": {"type": "cosine"}, "plda": {"type": "plda"}}
    cfg["backend_training"] = {"corpus": "demo_test", "max_utts": 1}  # embeddings of one corpus only
    write_config(tmp_path, cfg)

    proc = snakemake(tmp_path, "--keep-going", check=False)
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert re.search(r"Error in rule fit_backend", log) and "wildcards: system=xvector_aam, backend=plda" in log
    assert "results/summary.csv and summary.md: 2 expected results, 1 missing" in log
    after_run = {name: (tmp_path / "results" / name).read_text() for name in ("summary.csv", "summary.md")}
    csv = pd.read_csv(tmp_path / "results/summary.csv")
    assert dict(zip(csv.backend, csv.status)) == {"cosine": "ok", "plda": "missing"}
    assert csv[csv.backend == "cosine"]["eer_%"].between(0, 100).all()
    assert "exp/xvector_aam/scores/demo/plda.json" in after_run["summary.md"].split("## Missing")[1]

    for path in after_run:
        (tmp_path / "results" / path).unlink()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run([*VOXFLOW, "summarize", "--configfile", "config.yaml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    assert "1 missing" in out.stdout
    assert {name: (tmp_path / "results" / name).read_text() for name in after_run} == after_run
    print(f"keep-going run and summaries: {time.monotonic() - start:.1f} s")
