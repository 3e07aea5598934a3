"""A model that starts from an import (config `init:`): an experiment scored as is, one fine-tuned, the cleaning
seed model used as is (and, planned, trained further); reruns; contradictory or bad init sections."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from test_workflow import REPO, planned_jobs, run_workflow, snakemake, tiny_config, write_config

pytest.importorskip("resemblyzer")
pytestmark = pytest.mark.workflow


def pretrained_config() -> dict:
    cfg = tiny_config()
    cfg["demo"].update(n_dev_speakers=6, n_test_speakers=3, n_heldout_speakers=2, n_mislabeled=0)
    cfg["cleaning"]["enabled"] = True  # its seed model: Resemblyzer's encoder as is
    cfg["cleaning"]["seed_model"] = {"init": {"from": "resemblyzer"}}
    cfg["calibration"]["enabled"] = False
    cfg["validation"]["corpus"] = ""
    cfg["diarization_sets"] = {}
    cfg["backends"] = {"cosine": {"type": "cosine"}}
    cfg["backend_training"]["corpus"] = "demo_test"  # plain cosine fits nothing: spare embedding demo_dev
    cfg["embedding"].update(window_s=None, hop_s=None)  # each model's own SEA settings
    ft = {"epochs": 1, "head": {"name": "aamsoftmax", "scale": 32.0, "margin": 0.2}}
    cfg["experiments"] = {
        "rz": {"init": {"from": "resemblyzer"}},
        "rz_ft": {"init": {"from": "resemblyzer"}, "data": {"batch_size": 16, "chunk_s": 1.6},
                  "optimizer": {"lr": 0.0001}, "finetune": ft, "log_every_steps": 1},
    }
    return cfg


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    return run_workflow(tmp_path_factory.mktemp("wf_pretrained"), pretrained_config())


def test_imported_model_scored_as_is(pretrained_run):
    from voxflow.embed.extract import Embedder, embed_utterances
    from voxflow.train.export import load_torchscript

    workdir, cfg = pretrained_run
    assert not (workdir / "exp/rz/avg_model.pt").exists()
    metrics = json.loads((workdir / "exp/rz/scores/demo/cosine.json").read_text())
    assert 0 <= metrics["eer"] <= 1 and metrics["n_target"] > 0
    emb = pd.read_parquet(workdir / "exp/rz/embeddings/demo_test.parquet")
    utts = pd.read_parquet(workdir / "data/manifests/demo_test.parquet").iloc[:1]
    utts = utts.assign(path=[str(workdir / p) for p in utts.path])
    model, meta = load_torchscript(workdir / "exp/rz/imported/model.ts")
    assert meta["sea"]["window_s"] == 1.6
    e = cfg["embedding"]
    _, want = embed_utterances(Embedder(model, meta), utts, e["window_s"], e["hop_s"], mode=e["mode"])
    got = np.asarray(emb.set_index("utt_id").loc[utts.utt_id.iloc[0], "embedding"])
    np.testing.assert_allclose(got, want[0], atol=1e-5)
    _, exported = load_torchscript(workdir / "exp/rz/model.ts")
    assert exported["sea"] == meta["sea"] and exported["init"].startswith("resemblyzer:")


def test_import_fine_tuned(pretrained_run):
    workdir, _ = pretrained_run
    imported = torch.load(workdir / "exp/rz_ft/imported/model.pt", weights_only=True)["model"]
    trained = torch.load(workdir / "exp/rz_ft/finetune/final.pt", weights_only=True)
    assert json.loads(trained["model_cfg"])["name"] == "ge2e_lstm"
    assert any(not torch.equal(imported[k], trained["model"][k]) for k in imported)
    assert len(pd.read_parquet(workdir / "exp/rz_ft/finetune/train_log.parquet")) == 1
    assert (workdir / "logs/train/rz_ft_finetune.log").stat().st_size > 0
    assert (workdir / "exp/rz_ft/scores/demo/cosine.json").is_file()


def test_cleaning_seed_model_is_the_import_as_is(pretrained_run):
    from voxflow.embed.extract import Embedder, embed_segments
    from voxflow.train.export import load_torchscript

    workdir, cfg = pretrained_run
    assert not (workdir / "data/cleaning/seed_model/final.pt").exists()  # no stage: nothing trained
    stored = pd.read_parquet(workdir / "data/cleaning/segment_embeddings.parquet")
    utts = pd.read_parquet(workdir / "data/train/utterances.parquet").iloc[:1]
    utts = utts.assign(path=[str(workdir / p) for p in utts.path])
    model, meta = load_torchscript(workdir / "data/cleaning/seed_model/imported/model.ts")
    assert meta["model_cfg"]["name"] == "ge2e_lstm" and meta["source"].startswith("resemblyzer:")
    segments, want = embed_segments(Embedder(model, meta), utts, cfg["cleaning"]["window_s"], cfg["cleaning"]["hop_s"])
    got = stored.set_index("segment_id").loc[segments.segment_id, "embedding"]
    np.testing.assert_allclose(np.stack(got.to_numpy()), want, atol=1e-5)
    assert json.loads((workdir / "data/cleaning/summary.json").read_text())["segments"] == len(stored)
    assert "--exclusions data/cleaning/exclusions.parquet" in (workdir / "logs/train/rz_ft_finetune.log").read_text()


def test_seed_init_change_reruns_cleaning_and_after_only(pretrained_run):
    """A new seed init (and a stage: trained further from the import) reruns the seed model's import, its training
    from the import, the cleaning and the training that reads its exclusions; not the corpus or the experiments'
    imports."""
    workdir, cfg = pretrained_run
    changed = json.loads(json.dumps(cfg))
    changed["cleaning"]["seed_model"] = {
        "init": {"from": "voxflow", "path": str(workdir / "exp/rz/imported")},  # Resemblyzer, by another route
        "data": {"batch_size": 16, "chunk_s": 1.6}, "optimizer": {"lr": 0.0001},
        "finetune": {"epochs": 1, "head": {"name": "aamsoftmax", "scale": 32.0, "margin": 0.2}}}
    write_config(workdir, changed)
    try:
        out = snakemake(workdir, "-n", "-p").stdout
        jobs = planned_jobs(workdir)
    finally:
        write_config(workdir, cfg)
    assert jobs["import_seed_model"] == 1 and jobs["train_seed_model"] == 1
    assert {"embed_segments", "clean_speakers", "train_stage"} <= set(jobs) and jobs["train_stage"] == 1
    assert not {"demo_corpus", "manifest", "shards", "import_model"} & set(jobs)
    assert "--from voxflow" in out and "--init data/cleaning/seed_model/imported/model.pt" in out


def test_init_change_reruns_the_import_and_after(pretrained_run, tmp_path):
    workdir, cfg = pretrained_run
    assert planned_jobs(workdir) == {}
    from voxflow.pretrained.resemblyzer import packaged_weights

    changed = json.loads(json.dumps(cfg))
    changed["experiments"]["rz_ft"]["init"]["path"] = str(packaged_weights())
    write_config(workdir, changed)
    try:
        jobs = planned_jobs(workdir)
    finally:
        write_config(workdir, cfg)
    assert jobs["import_model"] == 1 and jobs["train_stage"] == 1 and jobs["export"] == 1
    assert {"average", "embed", "score", "summary"} <= set(jobs)
    assert not {"demo_corpus", "manifest", "shards"} & set(jobs)


@pytest.mark.parametrize("section, key, value, message", [
    ("rz", "model", {"name": "xvector"}, "experiments.rz.model: with init"),
    ("rz", "untrained_baseline", True, "experiments.rz.untrained_baseline"),
    ("rz", "init", {"from": "wespeaker"}, "experiments.rz.init.path: init from wespeaker needs the model's path"),
    ("rz", "init", {"from": "voxflow", "path": "/no/such/model"}, "experiments.rz.init.path: /no/such/model does "
     "not exist"),
    ("seed", "model", {"name": "xvector"}, "cleaning.seed_model.model: with init"),
    ("seed", "init", {"from": "voxflow", "path": "/no/such/model"}, "cleaning.seed_model.init.path: /no/such/model"),
])
def test_init_contradictions_and_bad_init_are_named(tmp_path, section, key, value, message):
    """Checked when the config is read (a dry run); an unknown init.from is the schema's (test below)."""
    cfg = pretrained_config()
    (cfg["experiments"]["rz"] if section == "rz" else cfg["cleaning"]["seed_model"])[key] = value
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_schema_takes_the_new_keys_and_refuses_bad_values():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(REPO / "config/schema.yaml")
    cfg = pretrained_config()
    cfg["experiments"]["rz_ft"]["finetune"]["freeze_backbone_epochs"] = 2
    validate(cfg, schema)
    assert cfg["cleaning"]["seed_model"]["init"] == {"from": "resemblyzer", "path": ""}  # the default path filled in
    bad = [("finetune", "freeze_backbone_epochs", -1, "-1 is less than the minimum of 0"),
           ("finetune", "freeze_backbone_epochs", 1.5, "1.5 is not of type 'integer'"),
           ("init", "checkpoint", "x.pt", "Additional properties are not allowed ('checkpoint' was unexpected)"),
           ("init", "from", "kaldi", "'kaldi' is not one of ['wespeaker', 'speechbrain', 'resemblyzer', 'voxflow']")]
    for section, key, value, message in bad:
        cfg = pretrained_config()
        target = cfg["experiments"]["rz_ft"] if section == "finetune" else cfg["cleaning"]["seed_model"]
        target[section][key] = value
        with pytest.raises(WorkflowError, match=re.escape(message)):
            validate(cfg, schema)
    cfg = pretrained_config()
    cfg["cleaning"]["seed_model"]["init"] = {"path": "x.pt"}
    with pytest.raises(WorkflowError, match="'from' is a required property"):
        validate(cfg, schema)
