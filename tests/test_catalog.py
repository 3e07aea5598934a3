"""Snakemake workflow catalog conventions: the catalog file, config/README.md, profiles/README.md, report captions,
per-rule software environments, and voxflow used as a module of another workflow (real Snakemake runs)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pandas as pd
import pytest
import yaml
from docutils.core import publish_parts

from voxflow.report.summary import load_workflow_config

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "workflow" / "rules"
# Packages of requirements.txt that no rule needs: development and test tools.
DEVELOPMENT_ONLY = {"snakemake", "snakemake-executor-plugin-slurm", "pytest", "pytest-xdist", "snakefmt", "pyannote.metrics",
                    "speechbrain"}


def rule_files() -> dict[Path, str]:
    return {p: p.read_text() for p in sorted(RULES.glob("*.smk"))}


def call_arguments(text: str, start: int) -> str:
    """The text between the parenthesis at ``start`` and its match."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i]
    raise AssertionError(f"unbalanced parenthesis at offset {start}")


def report_items() -> list[dict]:
    """Every ``report(...)`` output of the rule files: its file, path pattern and keyword arguments."""
    items = []
    for path, text in rule_files().items():
        for m in re.finditer(r"\breport\(", text):
            args = call_arguments(text, m.end() - 1)
            kwargs = dict(re.findall(r'(\w+)="([^"]*)"', args))
            labels = re.search(r"labels=(\{[^}]*\})", args)
            items.append({"rule_file": path, "pattern": args.strip().split("\n")[0], **kwargs,
                          "labels": labels.group(1) if labels else None})
    return items


def render_caption(caption: Path, config: dict, wildcards: dict, html: bool = True) -> str:
    """The caption as Snakemake's report renders it: Jinja2 (an undefined config key fails), then
    reStructuredText to HTML (an RST warning fails)."""
    text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(caption.read_text()).render(
        snakemake=SimpleNamespace(config=config, wildcards=SimpleNamespace(**wildcards)))
    if not html:
        return text
    return publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 2})["body"]


def workflow_configs() -> list[Path]:
    return [p for p in sorted((REPO / "config").glob("*.yaml"))
            if "experiments" in (yaml.safe_load(p.read_text()) or {})]


# ---------------------------------------------------------------- catalog file and layout

def test_catalog_file_has_the_keys_the_catalog_reads():
    settings = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    flags = usage["mandatory-flags"]
    assert isinstance(flags["desc"], str) and len(flags["desc"]) > 50
    assert isinstance(flags["flags"], (str, list))
    deployment = usage["software-stack-deployment"]
    assert set(deployment) <= {"conda", "apptainer", "apptainer+conda"} and deployment
    assert all(isinstance(v, bool) for v in deployment.values())
    assert usage["report"] is True  # tests/test_workflow.py builds the report and finds every caption in it
    # where the catalog looks: workflow/Snakefile when workflow/ exists, rule modules as workflow/rules/*.smk
    assert (REPO / "workflow/Snakefile").is_file() and list(RULES.glob("*.smk"))
    assert (REPO / "Snakefile").resolve() == (REPO / "workflow/Snakefile").resolve()


def test_config_readme_names_every_config_file():
    readme = (REPO / "config/README.md").read_text()
    missing = [p.name for p in sorted((REPO / "config").glob("*.yaml")) if f"config/{p.name}" not in readme]
    assert not missing, f"config/README.md does not describe {missing}"


def test_profiles_readme_names_every_profile():
    readme = (REPO / "profiles/README.md").read_text()
    profiles = [p.name for p in (REPO / "profiles").iterdir() if p.is_dir()]
    assert profiles and not [p for p in profiles if f"profiles/{p}" not in readme]


# ---------------------------------------------------------------- report captions

def test_every_report_item_has_a_caption_category_and_subcategory():
    items = report_items()
    assert len(items) >= 5
    used = set()
    for item in items:
        where = f"{item['rule_file'].name}: report({item['pattern']}"
        assert item.get("category") and item.get("subcategory"), where
        caption = (item["rule_file"].parent / item["caption"]).resolve()
        assert caption.parent == REPO / "workflow/report" and caption.suffix == ".rst" and caption.is_file(), where
        wildcards = set(re.findall(r"\{\{(\w+)\}\}", item["pattern"]))
        if wildcards:  # items of a wildcard rule are told apart in the report by a label per wildcard
            assert item["labels"] and all(f"{{{w}}}" in item["labels"] for w in wildcards), where
        used.add(caption)
    assert used == set((REPO / "workflow/report").glob("*.rst")), "a caption file no report item uses"


def test_captions_render_with_every_config():
    """Each caption renders to HTML with the demo config, and its template with every workflow config in config/."""
    for configfile in workflow_configs():
        config = load_workflow_config(configfile)
        for item in report_items():
            caption = item["rule_file"].parent / item["caption"]
            wildcards = {w: "vox1_o" for w in re.findall(r"\{\{(\w+)\}\}", item["pattern"])}
            text = render_caption(caption, config, wildcards, html=configfile.name == "config.yaml")
            assert len(text) > 150 and "{{" not in text, (configfile.name, caption.name)
            assert all(v in text for v in wildcards.values()), (configfile.name, caption.name)
    config = load_workflow_config(REPO / "config/config.yaml")
    config["cleaning"].update(majority=0.75, min_silhouette=0.45)  # the caption states the configured thresholds
    html = render_caption(REPO / "workflow/report/cleaning.rst", config, {})
    assert "75 %" in html and "0.45" in html and "60 %" not in html


def assert_report_has_every_caption(html: str, config: dict) -> None:
    """A built report (``snakemake --report x.html``) files every report item of the run under its category and
    subcategory, with its rendered caption (called by tests/test_workflow.py on its finished run)."""
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html).group(1))
    captions = [json.loads(f'"{c}"') for c in re.findall(r'"caption": "((?:[^"\\]|\\.)*)"', html)]
    for item in report_items():
        if item["category"] == "Cleaning" and not config["cleaning"]["enabled"]:
            continue
        assert item["subcategory"] in categories.get(item["category"], {}), (item["category"], categories)
        caption = item["rule_file"].parent / item["caption"]
        wildcards = {w: "demo" for w in re.findall(r"\{\{(\w+)\}\}", item["pattern"])}
        first_words = re.sub(r"<[^>]+>", "", render_caption(caption, config, wildcards)).split()[:8]
        assert any(re.sub(r"<[^>]+>", "", c).split()[:8] == first_words for c in captions), (caption.name, first_words)


# ---------------------------------------------------------------- software environments (--sdm conda)

def pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s#]+)\s*(#.*)?", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_rule_envs_exist_with_post_deploy_scripts_and_requirements_pins():
    requirements = pins((REPO / "requirements.txt").read_text().splitlines())
    envs = {m for text in rule_files().values() for m in re.findall(r'conda:\s*"([^"]+)"', text)}
    assert len(envs) == 3
    for env in envs:
        path = (RULES / env).resolve()
        assert path.parent == REPO / "envs" and path.is_file(), env
        script = path.with_name(path.stem + ".post-deploy.sh").read_text()
        assert 'pip install --no-deps -e "${VOXFLOW_SOURCE' in script, path
        spec = yaml.safe_load(path.read_text())
        assert spec["channels"][0] == "conda-forge"
        pip_part = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        env_pins = pins(f"- {p}" for p in pip_part)
        assert len(env_pins) == len(pip_part), f"{path.name}: an unpinned pip package"
        wrong = {k: v for k, v in env_pins.items() if requirements.get(k) != v}
        assert not wrong, f"{path.name}: pins differ from requirements.txt: {wrong}"
    full = pins(f"- {p}" for p in next(d["pip"] for d in yaml.safe_load((REPO / "envs/voxflow.yaml").read_text())
                                          ["dependencies"] if isinstance(d, dict)))
    missing = set(requirements) - DEVELOPMENT_ONLY - set(full)
    assert not missing, f"envs/voxflow.yaml lacks run-time requirements {sorted(missing)} (or list them as " \
                        "DEVELOPMENT_ONLY here)"


# ---------------------------------------------------------------- voxflow as a module of another workflow

OUTER_SNAKEFILE = """module voxflow:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from voxflow
"""


def outer_snakemake(workdir: Path, *args: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--printshellcmds", *args],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake {' '.join(args)} in the outer workflow failed:\n{out[-6000:]}"
    return out


def job_stats(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1].split("Reasons:")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.workflow
def test_voxflow_as_a_module(tmp_path):
    """An outer workflow of two statements runs voxflow's rules: a real run of the demo corpus and a manifest with
    the outer config, then a dry run of the whole DAG with none (the module falls back to the demo config)."""
    (tmp_path / "Snakefile").write_text(OUTER_SNAKEFILE.format(snakefile=REPO / "workflow/Snakefile"))
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    demo = dict(n_dev_speakers=3, n_test_speakers=2, n_heldout_speakers=2, sessions_per_speaker=2,
                utts_per_session=2, n_mislabeled=1, n_conversations=1)
    cfg["demo"].update(demo)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    out = outer_snakemake(tmp_path, "data/manifests/demo_test.parquet", "--configfile", "config.yaml")
    assert f"{REPO}/scripts/make_demo_corpus.py" in out and f"{REPO}/scripts/manifest.py" in out
    manifest = pd.read_parquet(tmp_path / "data/manifests/demo_test.parquet")
    assert manifest.spk_id.nunique() == demo["n_test_speakers"]
    assert len(manifest) == demo["n_test_speakers"] * demo["sessions_per_speaker"] * demo["utts_per_session"]
    assert (tmp_path / "logs/demo_corpus.log").is_file() and (tmp_path / "logs/manifest/demo_test.log").is_file()

    (tmp_path / "config.yaml").unlink()
    out = outer_snakemake(tmp_path, "-n")
    jobs = job_stats(out)
    assert {"all", "demo_corpus", "manifest", "shards", "train_seed_model", "clean_speakers", "train_stage", "export",
            "embed", "fit_backend", "score", "calibrate", "diarize", "der", "det_plot", "diarization_plot",
            "training_curves", "cleaning_report", "summary"} <= set(jobs)
    demo_config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert jobs["manifest"] == len(demo_config["corpora"])  # the demo config's corpora, the run's are stale
    assert f"{REPO}/scripts/train.py" in out and "data/demo" in out
