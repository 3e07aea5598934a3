"""The shipped configs: each passes the schema and builds its DAG (a real ``snakemake -n --configfile``), and each
recipe's networks and heads build at the sizes docs/training.md lists (the papers' parameter counts)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from voxflow.audio.features import feature_dim, num_frames
from voxflow.data.config import validate_data_cfg
from voxflow.train.network import build_classifier, build_network
from voxflow.train.schedules import margin_scheduler
from voxflow.train.stage_config import STAGES, resolve_stage

REPO = Path(__file__).resolve().parents[1]
# Workflow configs are the YAML files with experiments (config/corpora.yaml is the download catalogue).
# config/voxconverse.yaml (diarization only, a model path to edit) is dry-run by tests/test_diarize_recipe.py.
CONFIGS = sorted(p for p in (REPO / "config").glob("*.yaml")
                 if p.name not in ("schema.yaml", "voxconverse.yaml")
                 and "experiments" in (yaml.safe_load(p.read_text()) or {}))
RECIPES = [p for p in CONFIGS if p.name.startswith("voxceleb_")]
VOXCELEB2_SPEAKERS = 5994

# Parameter counts (docs/training.md "Models"): (model name, width option) -> (low, high).
PAPER_SIZES = {
    ("xvector", None): (4.2e6, 4.6e6),  # Margin Matters Table 1 (4.2 M as Kaseva & Kurimo cite it)
    ("lstm_netvlad", 14): (0.95 * 6.7e6, 1.05 * 6.7e6),  # Kaseva & Kurimo: 6.7 M at K = 14
    ("lstm_avg", None): (0.95 * 6.7e6, 1.05 * 6.7e6),  # sized like the K = 14 model
    ("resnet34", None): (0.95 * 6.6e6, 1.05 * 6.6e6),  # Wespeaker ResNet34, 80 fbank
    ("ecapa_tdnn", 512): (0.95 * 6.2e6, 1.05 * 6.2e6),  # ECAPA-TDNN C = 512
    ("ecapa_tdnn", 1024): (0.95 * 14.7e6, 1.05 * 14.7e6),  # C = 1024
}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def dry_run(config: Path, workdir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(config), "--cores", "2", "-n"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def trained_stages(exp: dict) -> list[str]:
    return [s for s in STAGES if s in exp and exp[s]["epochs"] > 0]


def test_configs_found():
    names = {p.name for p in CONFIGS}
    assert {"config.yaml", "voxceleb_lstm_netvlad.yaml", "voxceleb_xvector_margins.yaml",
            "voxceleb_resnet34_ecapa.yaml"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_builds_its_dag(config, tmp_path):
    proc = dry_run(config, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cfg = load(config)
    jobs = job_counts(proc.stdout)
    experiments = cfg["experiments"]
    systems = len(experiments) + sum(bool(e.get("untrained_baseline")) for e in experiments.values())
    backends = len(cfg.get("backends") or {"cosine": {}})
    assert jobs["train_stage"] == sum(len(trained_stages(e)) for e in experiments.values())
    assert jobs["export"] == len(experiments)
    calibrated = bool(cfg.get("calibration", {}).get("enabled"))  # + the calibration trials, scored likewise
    assert jobs["score"] == systems * (len(cfg["trial_sets"]) + calibrated) * backends
    assert jobs.get("calibrate", 0) == calibrated * systems * len(cfg["trial_sets"]) * backends
    if not cfg["demo"].get("enabled", True):
        assert "demo_corpus" not in jobs


def test_recipe_misspelled_key_is_refused(tmp_path):
    """The dry run really validates a recipe: a head key the schema lacks stops it, naming the key."""
    cfg = load(REPO / "config/voxceleb_xvector_margins.yaml")
    cfg["experiments"]["xvector_asoftmax"]["margin"]["head"]["lambda_start"] = 5.0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = dry_run(bad, tmp_path)
    assert proc.returncode != 0 and "lambda_start" in proc.stdout + proc.stderr


def _trainings(cfg: dict):
    """(name, experiment config) of every network a recipe trains, the cleaning seed model included."""
    seed = cfg.get("cleaning", {})
    if seed.get("enabled") and "seed_model" in seed:
        yield "cleaning.seed_model", seed["seed_model"]
    yield from cfg["experiments"].items()


def _size_key(model_cfg: dict):
    name = model_cfg["name"]
    width = {"lstm_netvlad": model_cfg.get("clusters", 14), "ecapa_tdnn": model_cfg.get("channels", 512)}
    return name, width.get(name)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_networks_and_heads_build_at_paper_sizes(recipe):
    torch.manual_seed(0)
    cfg = load(recipe)
    necks = {}  # one forward pass per distinct network and features (the twins share them)
    for name, exp in _trainings(cfg):
        stages = [resolve_stage(exp, s) for s in trained_stages(exp)]
        assert stages, f"{name}: no stage trains"
        datas = [validate_data_cfg(s.get("data"), where=f"{name}.{s['stage']}.data") for s in stages]
        fdim = feature_dim(datas[0]["features"])
        assert all(feature_dim(d["features"]) == fdim for d in datas), f"{name}: stages with other features"
        key = _size_key(exp["model"])
        assert key in PAPER_SIZES, f"{name}: no paper size listed for {key}"
        cache_key = json.dumps([exp["model"], datas[0]["features"]], sort_keys=True)
        if cache_key not in necks:
            model = build_network(exp["model"], datas[0])
            low, high = PAPER_SIZES[key]
            count = sum(p.numel() for p in model.parameters())
            assert low <= count <= high, f"{name}: {key} has {count:,} parameters, expected {low:,.0f}-{high:,.0f}"
            rate = datas[0]["sample_rate"]
            frames = num_frames(round(datas[0]["chunk_s"] * rate), rate, datas[0]["features"])
            neck = model.train().neck(model(torch.randn(2, frames, fdim)))
            assert neck.shape == (2, model.neck_dim)
            necks[cache_key] = neck.detach().requires_grad_()
        neck = necks[cache_key]
        # every stage's head (and margin schedule) on that neck: finite loss and gradients
        labels = torch.tensor([0, 1])
        for stage in stages:
            head = build_classifier(stage["head"], neck.shape[1], VOXCELEB2_SPEAKERS).train()
            margin_scheduler(stage["head"])
            loss = F.cross_entropy(head(neck, labels), labels)
            (grad,) = torch.autograd.grad(loss, neck)
            assert torch.isfinite(loss) and torch.isfinite(grad).all(), f"{name}.{stage['stage']}: loss {loss}"
