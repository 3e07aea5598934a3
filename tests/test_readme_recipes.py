"""The README cannot rot: every command of its quick recipes runs (in a temporary directory laid out like a
checkout, `snakemake` as a dry run), every `voxflow` command shown in README.md and docs/*.md names existing
sub-commands and flags, every repository path they mention exists, every relative link reaches an existing file
and heading, and docs/configuration.md names every top-level key of config/schema.yaml.

A quick recipe is a fenced block right after `<!-- recipe: quick -->` (sh: run with bash, python: run with
python) or `<!-- recipe: quick file=PATH -->` (written to PATH). The quick recipes import Resemblyzer's packaged
encoder and synthesise a minute of audio instead of training: 51 s on the shared 2-core machine (2026-12-03),
most of it torch start-up (about a dozen processes) and the Resemblyzer embeddings of one 37 s conversation,
diarized once from the shell and once from Python.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from voxflow.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
QUICK = re.compile(r"<!-- recipe: quick(?: file=(\S+))? -->\n```(\w*)\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# Made by the recipes or by a workflow run, never linked from the checkout into the temporary directory.
OUTPUT_DIRS = {"data", "exp", "results", "logs", "models", "benchmarks_out"}


def quick_recipes(text: str) -> list[tuple[str, str, str]]:
    """(language, file to write or "", body) of every quick recipe, in README order."""
    return [(lang, path or "", body) for path, lang, body in QUICK.findall(text)]


def as_dry_run(script: str) -> str:
    """Every `snakemake` command of a shell block as a dry run (training is not run here)."""
    def dry(m: re.Match) -> str:
        return m.group(0) if re.search(r"(^|\s)(-n|--dry-run)(\s|$)", m.group(2)) else f"{m.group(1)}snakemake -n{m.group(2)}"
    return re.sub(r"^(\s*)snakemake(.*)$", dry, script, flags=re.M)


def checkout_in(tmp: Path) -> Path:
    """A directory laid out like the repository root (its entries linked), where recipe outputs stay."""
    for entry in REPO.iterdir():
        if entry.name.startswith(".") or entry.name in OUTPUT_DIRS:
            continue
        (tmp / entry.name).symlink_to(entry)
    return tmp


@pytest.fixture(scope="module")
def recipe_runs(tmp_path_factory):
    """Runs the README's quick recipes in order, in one directory; one result per recipe."""
    work = checkout_in(tmp_path_factory.mktemp("readme"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OMP_NUM_THREADS="1",  # one torch thread per process: no CPU lost to spinning threads
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))
    results = []
    for lang, path, body in quick_recipes(README.read_text()):
        if path:
            (work / path).write_text(body)
            results.append((lang, path, body, None))
            continue
        if lang == "sh":
            cmd = ["bash", "-c", "set -euo pipefail\n" + as_dry_run(body)]
        elif lang == "python":
            cmd = [sys.executable, "-c", body]
        else:
            raise AssertionError(f"README: a quick recipe must be sh or python, not {lang!r}:\n{body}")
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        results.append((lang, path, body, proc))
    return work, results


def test_the_readme_marks_a_quick_recipe_in_each_runnable_section():
    text = README.read_text()
    sections = dict(re.findall(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    for title in ("Verify, embed and diarize with a model", "Your own corpus in five steps", "Diarization",
                  "When a stage fails: troubleshooting"):
        assert quick_recipes(sections[title]), f"README section {title!r} lost its quick recipe"


def test_every_quick_recipe_runs(recipe_runs):
    work, results = recipe_runs
    assert len(results) >= 6
    for lang, path, body, proc in results:
        if proc is None:
            continue
        assert proc.returncode == 0, (f"README recipe failed (exit {proc.returncode}):\n{body}\n"
                                      f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")


def test_the_recipes_make_what_the_readme_says(recipe_runs):
    import pandas as pd

    work, results = recipe_runs
    # first recipe: an imported model, scores, embeddings of the 8 test files, an RTTM with the 2 speakers asked for
    assert {"model.ts", "model.onnx", "model.pt", "meta.json"} <= {p.name for p in (work / "models/resemblyzer").iterdir()}
    verify = [proc.stdout for _, _, body, proc in results if proc is not None and "voxflow verify" in body][0]
    scores = [float(s) for s in re.findall(r"cosine (-?[\d.]+)", verify)]
    assert len(scores) == 2 and scores[0] > scores[1], verify  # same speaker above different speakers
    emb = pd.read_parquet(work / "embeddings.parquet")
    assert len(emb) == 8 and len(emb.embedding.iloc[0]) == 256
    # five steps: the manifest of 4 speakers x 2 sessions x 2 utterances; the dry run planned training
    assert len(pd.read_parquet(work / "mine.parquet")) == 16
    plan = [proc.stdout for _, _, body, proc in results if proc is not None and "my.yaml" in body][0]
    assert "train_stage" in plan and "diarize" in plan and "This was a dry-run" in plan
    # diarization: 2 speakers asked for, 2 found; DER 0.165 measured (confusion 0.026): a bound far from chance
    speakers = {line.split()[7] for line in (work / "conv001.rttm").read_text().splitlines()}
    der = json.loads((work / "der.json").read_text())
    assert len(speakers) == 2 and der["jer_speakers"] == 2 and der["der"] < 0.35 and der["confusion"] < 0.15, der
    # summarize: before any run, every expected result is marked missing
    summary = pd.read_csv(work / "results/summary.csv")
    assert set(summary.status) == {"missing"} and set(summary.task) == {"verification", "diarization"}


# ------------------------------------------------------------------ commands, paths and links of every page


def _command_lines(text: str) -> list[str]:
    """Lines of sh and bare fenced blocks, continuation lines joined, comments dropped."""
    lines = []
    for lang, body in FENCE.findall(text):
        if lang not in ("", "sh", "bash"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _options(parser: argparse.ArgumentParser, words: list[str]) -> tuple[list[str], set[str]]:
    """Follow sub-commands named by ``words``; return the sub-command path and the options it accepts."""
    path = []
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
        path.append(word)
    return path, {o for a in parser._actions for o in a.option_strings}


def test_every_voxflow_command_shown_names_existing_subcommands_and_flags():
    parser = build_parser()
    checked = 0
    for page in PAGES:
        for line in _command_lines(page.read_text()):
            if not line.startswith("voxflow ") or "|" in line.split()[1]:
                continue  # not a command, or a synopsis of several sub-commands
            words = shlex.split(line.replace("[", " ").replace("]", " ").replace("...", " "), comments=True)[1:]
            path, accepted = _options(parser, [w for w in words if not w.startswith("-")][:2])
            assert path, f"{page.name}: `{line}`: no voxflow sub-command {words[0]!r}"
            flags = {w.split("=", 1)[0] for w in words if w.startswith("--")}
            unknown = sorted(f for f in flags if f.split("|")[0] not in accepted)
            assert not unknown, f"{page.name}: `{line}`: voxflow {' '.join(path)} has no option {unknown}"
            checked += 1
    assert checked >= 15


REPO_PATH = re.compile(r"(?<![\w./~$<{-])((?:config|scripts|benchmarks|tests|profiles|envs|workflow|docs|voxflow|"
                       r"\.ci)/[\w./*-]*|Snakefile|Makefile|requirements\.txt|pyproject\.toml)")


def _written_by_hand(page: Path) -> str:
    """The page without the part docs/schema_reference.py generates (the schema's own words)."""
    return re.sub(r"<!-- GENERATED .*?<!-- END GENERATED -->", "", page.read_text(), flags=re.S)


def test_every_repository_path_mentioned_exists():
    for page in PAGES:
        for path in set(REPO_PATH.findall(_written_by_hand(page))):
            path = path.rstrip(".,:")
            if "<" in path or "{" in path:
                continue
            found = list(REPO.glob(path)) if "*" in path else [REPO / path] if (REPO / path).exists() else []
            assert found, f"{page.relative_to(REPO)} mentions {path}, which does not exist"


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page (headings inside fenced blocks are not headings)."""
    text = FENCE.sub("", page.read_text())
    anchors, seen = set(), {}
    for title in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_every_relative_link_reaches_a_file_and_heading():
    checked = 0
    for page in PAGES:
        text = FENCE.sub("", page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked here (no network)
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            assert dest.exists(), f"{page.relative_to(REPO)}: link to {target}: no such file"
            if anchor:
                assert dest.suffix == ".md", f"{page.relative_to(REPO)}: link {target}: anchor into a non-Markdown file"
                assert anchor in _anchors(dest), (f"{page.relative_to(REPO)}: link {target}: no heading "
                                                  f"#{anchor} in {dest.name}")
            checked += 1
    assert checked >= 50


def test_configuration_page_names_every_top_level_schema_key_and_block():
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())
    page = (REPO / "docs/configuration.md").read_text()
    missing = [k for k in schema["properties"] if f"### `{k}`" not in page]
    missing += [f"$defs.{k}" for k in schema.get("$defs", {}) if f"#### block {k}\n" not in page]
    assert not missing, (f"docs/configuration.md lacks {missing}: regenerate it with "
                         f"`python docs/schema_reference.py --write`")
