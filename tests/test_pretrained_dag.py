"""An experiment that starts from an imported model (config `init:`): scored as is, and fine-tuned; reruns."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from test_workflow import planned_jobs, run_workflow, snakemake, tiny_config, write_config

pytest.importorskip("resemblyzer")
pytestmark = pytest.mark.workflow


def pretrained_config() -> dict:
    cfg = tiny_config()
    cfg["demo"].update(n_dev_speakers=6, n_test_speakers=3, n_heldout_speakers=2, n_mislabeled=0)
    cfg["cleaning"]["enabled"] = False
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


@pytest.mark.parametrize("key, value, message", [
    ("model", {"name": "xvector"}, "experiments.rz.model"),
    ("untrained_baseline", True, "experiments.rz.untrained_baseline"),
    ("init", {"from": "wespeaker"}, "experiments.rz.init.path"),
])
def test_init_contradictions_are_named(tmp_path, key, value, message):
    cfg = pretrained_config()
    cfg["experiments"]["rz"][key] = value
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr
