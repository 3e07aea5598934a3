"""Several training processes (DDP over gloo on CPU, launched by torchrun): the same weights as one process with
the same global batch (a frozen-backbone epoch included), ranks with unequal batch counts, the world size check,
and the workflow rule's launch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from test_engine import checkpoint_tensors, one_thread_env, write_corpus  # pytest puts tests/ on sys.path
from test_workflow import snakemake, tiny_config
from voxflow.errors import VoxflowError
from voxflow.train.ddp import expected_world_size
from voxflow.train.engine import run_stage
from voxflow.train.stage_config import resolve_stage

REPO = Path(__file__).resolve().parents[1]

# scripts/train.py with one more model: batch norm makes a model depend on how a batch is split over processes,
# so the comparison with one process uses a network without it (mean + std pooling of a frame layer).
DRIVER = '''
import runpy, sys, torch
from torch import nn
from voxflow.models.base import EmbeddingModel
from voxflow.models.registry import register


class MeanStd(EmbeddingModel):
    def __init__(self, feat_dim, embed_dim=16, hidden=32):
        super().__init__(feat_dim, embed_dim)
        self.frame = nn.Linear(feat_dim, hidden)
        self.out = nn.Linear(2 * hidden, embed_dim)

    def forward(self, feats):
        h = torch.relu(self.frame(feats))
        return self.out(torch.cat([h.mean(1), h.std(1)], dim=-1))


register("test_meanstd")(MeanStd)
script = sys.argv.pop(1)
sys.argv[0] = script
runpy.run_path(script, run_name="__main__")
'''


def experiment(batch_size: int, nproc: int) -> dict:
    return {"device": "cpu", "seed": 0, "nproc": nproc, "log_every_steps": 1,
            "model": {"name": "test_meanstd", "embed_dim": 16, "hidden": 32},
            "data": {"chunk_s": 1.0, "batch_size": batch_size, "shuffle_buffer": 1,
                     "features": {"kind": "fbank", "num_mel_bins": 24}},
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
            "scheduler": {"name": "linear_warmup", "warmup_steps": 2},
            "clip_grad_norm": 5.0,
            "warmup": {"epochs": 3, "freeze_backbone_epochs": 1,
                       "head": {"name": "aamsoftmax", "scale": 16.0, "margin": 0.2,
                                "schedule": {"start_epoch": 0, "end_epoch": 2}}}}


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    # 23 utterances: with 4 per batch, rank 0 reads 12 (3 batches) and rank 1 reads 11 (2 batches); the ranks
    # agree to stop after 2 steps, which cover the same 16 samples as one process's 2 batches of 8.
    utts = write_corpus(tmp_path / "wav", "spk", speakers=4, sessions=2, utts=3).iloc[:23]
    utts.to_parquet(tmp_path / "utts.parquet")
    (tmp_path / "driver.py").write_text(DRIVER)

    def command(exp: dict, out: str, procs: int) -> list[str]:
        launch = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
                                     if procs > 1 else [])
        return launch + [str(tmp_path / "driver.py"), str(REPO / "scripts/train.py"), "--config", json.dumps(exp),
                         "--stages", "warmup", "--utterances", str(tmp_path / "utts.parquet"),
                         "--out-dir", str(tmp_path / out)]

    runs = {name: subprocess.Popen(command(experiment(batch, procs), name, procs), env=one_thread_env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for name, batch, procs in (("ddp", 4, 2), ("single", 8, 1))}
    output = {name: p.communicate(timeout=300)[0] for name, p in runs.items()}
    for name, p in runs.items():
        assert p.returncode == 0, output[name][-4000:]
    assert output["ddp"].count("command: ") == 1  # only rank 0 reports (and writes)
    assert "torch.distributed.run --standalone --nproc_per_node=2" in output["ddp"]

    cols = ["epoch", "step", "lr", "margin", "samples"]
    steps = {name: pd.read_parquet(tmp_path / name / "train_steps.parquet") for name in runs}
    assert steps["ddp"].step.tolist() == list(range(1, 7))  # 2 steps per epoch, not 3
    pd.testing.assert_frame_equal(steps["ddp"][cols], steps["single"][cols])
    assert (steps["ddp"].samples == 8).all()  # samples summed over both processes
    assert steps["ddp"].loss.to_numpy() == pytest.approx(steps["single"].loss.to_numpy(), rel=1e-5)
    assert steps["ddp"].accuracy.tolist() == steps["single"].accuracy.tolist()
    ddp, single = checkpoint_tensors(tmp_path / "ddp/final.pt"), checkpoint_tensors(tmp_path / "single/final.pt")
    init = checkpoint_tensors(tmp_path / "single/init.pt")
    assert ddp.keys() == single.keys()
    for key in single:
        assert torch.allclose(ddp[key], single[key], rtol=1e-4, atol=1e-6), key
    moved = max((single[k] - init[k]).abs().max().item() for k in single)
    assert moved > 1e-2  # training changed the weights far more than the tolerance
    # epoch 1 has the backbone frozen (freeze_backbone_epochs: 1): under DDP too only the head moved then
    epoch1 = checkpoint_tensors(tmp_path / "ddp/epoch_1.pt")
    assert all(torch.equal(epoch1[k], init[k]) for k in init if k.startswith("model."))
    assert not torch.equal(epoch1["head.weight"], init["head.weight"])
    assert all(not torch.equal(ddp[k], epoch1[k]) for k in ddp if k.startswith("model."))


def test_world_size_must_match_the_config(tmp_path):
    utts = write_corpus(tmp_path, "spk", speakers=2, sessions=1, utts=2)
    cfg = resolve_stage({**experiment(4, 2), "model": {"name": "xvector"}}, "warmup")
    with pytest.raises(VoxflowError, match="asks for 2 training process.*torchrun --standalone --nproc_per_node=2"):
        run_stage(cfg, utts, utts, {"spk00": 0, "spk01": 1}, tmp_path / "out")
    assert expected_world_size({"device": "cuda", "gpus": 4}) == 4
    assert expected_world_size({"device": "cuda"}) == 1
    assert expected_world_size({"device": "cpu", "nproc": 3}) == 3
    with pytest.raises(VoxflowError, match="gpus: 2 GPUs asked for with device: cpu"):
        expected_world_size({"device": "cpu", "gpus": 2})
    with pytest.raises(VoxflowError, match="device: 'cuda:1' names one GPU but gpus: 2"):
        expected_world_size({"device": "cuda:1", "gpus": 2})


@pytest.mark.workflow
def test_rule_trains_with_torchrun_when_the_experiment_asks_for_processes(tmp_path):
    cfg = tiny_config()
    cfg["cleaning"]["enabled"] = False
    exp = cfg["experiments"]["xvector_aam"]
    exp.update(nproc=2, checkpoint_every_steps=2, log_every_steps=1)
    exp["warmup"]["epochs"] = 2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    gpu_cfg = json.loads(json.dumps(cfg))
    gpu_cfg["experiments"]["xvector_aam"].update(device="cuda", gpus=2)
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu/config.yaml").write_text(yaml.safe_dump(gpu_cfg, sort_keys=False))
    dry = snakemake(tmp_path / "gpu", "-n", "-p", "exp/xvector_aam/warmup/final.pt").stdout
    assert "torchrun --standalone --nproc_per_node=2" in dry and "gpu=2" in dry.replace(" ", "")

    snakemake(tmp_path, "exp/xvector_aam/warmup/final.pt")
    log = (tmp_path / "logs/train/xvector_aam_warmup.log").read_text()
    assert "torch.distributed.run --standalone --nproc_per_node=2" in log and log.count("command: ") == 1
    stage = tmp_path / "exp/xvector_aam/warmup"
    epochs = pd.read_parquet(stage / "train_log.parquet")
    steps = pd.read_parquet(stage / "train_steps.parquet")
    assert epochs.epoch.tolist() == [1, 2] and epochs.val_eer.between(0, 1).all()
    assert steps.step.tolist() == list(range(1, len(steps) + 1)) and (steps.samples == 2 * 16).all()
    segments = pd.read_parquet(tmp_path / "data/validation/segments.parquet")
    assert segments.spk_id.nunique() == cfg["demo"]["n_heldout_speakers"]
    assert checkpoint_tensors(stage / "final.pt") and not list(stage.glob("step_*.pt"))
