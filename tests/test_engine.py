"""The training engine: schedules and margins at known steps, optimisers, clipping, validation pairs and EER,
best-epoch selection and averaging, and exact resumption of a training process killed with SIGKILL."""

from __future__ import annotations

import json
import math
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from voxflow.errors import VoxflowError
from voxflow.losses import build_head
from voxflow.train.average import select_epochs
from voxflow.train.checkpoint import load_checkpoint, save_checkpoint
from voxflow.train.ddp import DistContext
from voxflow.train.engine import run_stage
from voxflow.train.network import build_network, make_optimizer
from voxflow.train.schedules import learning_rate, margin_scheduler, steps_schedule
from voxflow.train.stage_config import resolve_stage
from voxflow.train.trainer import Trainer
from voxflow.train.validation import ValidationSet, build_validation_set

REPO = Path(__file__).resolve().parents[1]
SR = 16000


# -- helpers shared with test_ddp.py --------------------------------------------------------------------------------
def write_corpus(root: Path, prefix: str, speakers: int, sessions: int, utts: int, seed: int = 0,
                 dur=(2.2, 3.0)) -> pd.DataFrame:
    """Tiny VoxCeleb-like corpus: each speaker a voice of its own pitch (harmonics + noise); an utterances table."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(speakers):
        f0 = 90.0 + 23.0 * s + (400.0 if prefix.startswith("val") else 0.0)
        for se in range(sessions):
            for u in range(utts):
                n = int(rng.uniform(*dur) * SR)
                t = np.arange(n) / SR
                wav = sum(0.25 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) for k in (1, 2, 3))
                wav = wav + 0.03 * (se + 1) * rng.standard_normal(n)
                spk, utt = f"{prefix}{s:02d}", f"{prefix}{s:02d}/s{se}/{u:03d}"
                path = root / f"{utt}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wav.astype(np.float32), SR, subtype="PCM_16")
                rows.append(dict(utt_id=utt, spk_id=spk, session_id=f"s{se}", path=str(path), sample_rate=SR,
                                 num_samples=n, duration_s=n / SR))
    return pd.DataFrame(rows)


def tiny_experiment(**over) -> dict:
    """An experiment config (as in config.yaml) small enough for a CPU test."""
    cfg = {"device": "cpu", "seed": 0,
           "model": {"name": "xvector", "channels": 16, "stats_channels": 32, "embed_dim": 16},
           "data": {"chunk_s": 1.0, "batch_size": 4, "shuffle_buffer": 8,
                    "features": {"kind": "fbank", "num_mel_bins": 24}},
           "optimizer": {"name": "adam", "lr": 0.01},
           "scheduler": {"name": "warmup_exp", "warmup_epochs": 0.5, "final_lr": 0.001},
           "warmup": {"epochs": 2, "head": {"name": "aamsoftmax", "scale": 16.0, "margin": 0.2,
                                            "schedule": {"start_epoch": 0, "end_epoch": 1, "mode": "linear"}}}}
    cfg.update(over)
    return cfg


def one_thread_env() -> dict:
    """Subprocess environment: one torch thread (reproducible CPU numerics, no contention on 2 cores)."""
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def checkpoint_tensors(path: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    return {f"{part}.{k}": v for part in ("model", "head") for k, v in state[part].items()}


# -- schedules and optimisers ---------------------------------------------------------------------------------------
def test_lr_schedules_at_known_steps():
    wexp = {"name": "warmup_exp", "warmup_steps": 4, "final_lr": 1e-3}
    assert learning_rate(0, 24, 0.1, wexp) == pytest.approx(0.025)  # warm-up: (step + 1) / warmup_steps
    assert learning_rate(3, 24, 0.1, wexp) == pytest.approx(0.1)
    assert learning_rate(13, 24, 0.1, wexp) == pytest.approx(0.0112883789)  # 0.1 * 0.01 ** (9 / 19)
    assert learning_rate(23, 24, 0.1, wexp) == pytest.approx(1e-3)
    lin = {"name": "linear_warmup", "warmup_steps": 10}
    assert [learning_rate(s, 100, 1e-3, lin) for s in (0, 4, 9, 500)] == pytest.approx([1e-4, 5e-4, 1e-3, 1e-3])
    step = {"name": "step", "gamma": 0.5, "step_size": 10}
    assert [learning_rate(s, 100, 0.1, step) for s in (9, 10, 35)] == pytest.approx([0.1, 0.05, 0.0125])
    cos = {"name": "cosine", "warmup_steps": 5, "final_lr": 0.1}
    assert [learning_rate(s, 25, 1.0, cos) for s in (0, 4, 14, 24)] == pytest.approx([0.2, 1.0, 0.5871607, 0.1])
    assert learning_rate(7, 10, 0.3, {"name": "constant"}) == 0.3
    assert steps_schedule({"name": "warmup_exp", "warmup_epochs": 0.5}, 30) == {"name": "warmup_exp",
                                                                                   "warmup_steps": 15}


def test_margin_schedule_at_known_epochs():
    lin = margin_scheduler({"name": "aamsoftmax", "margin": 0.2, "schedule": {"start_epoch": 1, "end_epoch": 3}})
    assert [lin.value(e) for e in (0, 1, 1.5, 2, 3, 9)] == pytest.approx([0, 0, 0.05, 0.1, 0.2, 0.2])
    log_ramp = margin_scheduler({"name": "aamsoftmax", "margin": 0.2,
                                 "schedule": {"start_epoch": 1, "end_epoch": 3, "mode": "log"}})
    assert log_ramp.value(2) == pytest.approx(0.2 * (1 - 1e-3 ** 0.5) / (1 - 1e-3))  # 0.19387
    assert margin_scheduler({"name": "aamsoftmax", "margin": 0.2}) is None
    with pytest.raises(VoxflowError, match="no head.margin"):
        margin_scheduler({"name": "aamsoftmax", "schedule": {"end_epoch": 2}})


def test_optimizers_from_config():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer(params, {"name": "sgd", "lr": 0.1, "momentum": 0.7, "nesterov": True, "weight_decay": 1e-5})
    group = sgd.param_groups[0]
    assert isinstance(sgd, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.1, 0.7, True, 1e-5)
    adam = make_optimizer(params, {"name": "adam", "lr": 0.002, "weight_decay": 1e-4})
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["weight_decay"] == 1e-4
    with pytest.raises(VoxflowError, match="optimizer.nesterov"):
        make_optimizer(params, {"name": "sgd", "momentum": 0.0, "nesterov": True})
    with pytest.raises(VoxflowError, match="unknown optimizer 'rmsprop'"):
        make_optimizer(params, {"name": "rmsprop"})


@pytest.mark.parametrize("clip", [None, 0.05])
def test_gradient_clipping_bounds_the_update(clip, one_thread):
    torch.manual_seed(0)
    data_cfg = {"features": {"kind": "fbank", "num_mel_bins": 24}}
    model = build_network({"name": "xvector", "channels": 16, "stats_channels": 32, "embed_dim": 16}, data_cfg)
    head = build_head("softmax", 16, 5)
    params = list(model.parameters()) + list(head.parameters())
    opt = make_optimizer(params, {"name": "sgd", "lr": 1.0, "momentum": 0.0})
    trainer = Trainer(model, head, opt, DistContext(), clip_grad_norm=clip)
    before = torch.cat([p.detach().flatten().clone() for p in params])
    trainer.step(torch.randn(6, 50, 24), torch.tensor([0, 1, 2, 3, 4, 0]), lr=1.0)
    update = (torch.cat([p.detach().flatten() for p in params]) - before).norm().item()
    if clip is None:
        assert update > 0.5  # the raw gradient norm of a fresh network is far above the clip
    else:
        assert update == pytest.approx(clip, rel=1e-3)  # SGD lr 1: the update is the clipped gradient
    loss_sum, correct, n = trainer.take("test")
    assert n == 6 and 0 <= correct <= 6 and loss_sum / n > 0


# -- validation pairs -----------------------------------------------------------------------------------------------
def test_validation_pairs_are_balanced_cross_session_and_fixed(tmp_path, caplog):
    utts = write_corpus(tmp_path, "val", speakers=3, sessions=3, utts=2, seed=1)
    segs, pairs = build_validation_set(utts, pairs=12, segment_s=2.0, segments_per_session=1, seed=0)
    assert len(pairs) == 12 and pairs.label.sum() == 6
    assert segs.groupby(["spk_id", "session_id"]).size().max() == 1  # one segment per session
    seg = segs.set_index("segment_id")
    a, b = seg.loc[pairs.enroll_id], seg.loc[pairs.test_id]
    same = a.spk_id.to_numpy() == b.spk_id.to_numpy()
    assert (same == pairs.label.astype(bool).to_numpy()).all()
    assert (a.session_id.to_numpy()[same] != b.session_id.to_numpy()[same]).all()  # targets across sessions
    assert not pairs.duplicated(["enroll_id", "test_id"]).any() and (pairs.enroll_id != pairs.test_id).all()
    dur = utts.set_index("utt_id").duration_s
    assert np.allclose(segs.end_s - segs.start_s, 2.0)
    assert (segs.start_s >= 0).all() and (segs.end_s.to_numpy() <= dur.loc[segs.utt_id].to_numpy()).all()
    again = build_validation_set(utts, pairs=12, segment_s=2.0, seed=0)
    assert again[1].equals(pairs) and again[0].equals(segs)
    assert not build_validation_set(utts, pairs=12, segment_s=2.0, seed=5)[0].equals(segs)

    # 3 speakers x 3 sessions have 9 target pairs: asking for 30 pairs gives 9 + 9, with a warning.
    _, fewer = build_validation_set(utts, pairs=30, segment_s=2.0, seed=0)
    assert len(fewer) == 18 and fewer.label.sum() == 9 and "only 9 target pairs" in caplog.text
    with pytest.raises(VoxflowError, match="held-out.parquet: fewer than 2 speakers"):
        build_validation_set(utts[utts.spk_id == "val00"], 10, where="held-out.parquet")
    with pytest.raises(VoxflowError, match="no target pair"):
        build_validation_set(utts[utts.session_id == "s0"], 10)


def test_validation_eer_is_the_eer_of_cosine_scores(tmp_path, one_thread):
    utts = write_corpus(tmp_path, "val", speakers=3, sessions=2, utts=2, seed=2)
    segs, pairs = build_validation_set(utts, pairs=10, segment_s=2.0, segments_per_session=2, seed=0)
    valset = ValidationSet(segs, pairs)
    data_cfg = {"features": {"kind": "fbank", "num_mel_bins": 24}}
    torch.manual_seed(0)
    model = build_network({"name": "xvector", "channels": 16, "stats_channels": 32, "embed_dim": 16}, data_cfg)
    model.train()
    scores = valset.scores(model, data_cfg)
    assert model.training  # restored after evaluation
    feats = valset.features(data_cfg)
    assert len(feats) == len(segs) and all(f.shape == (198, 24) for f in feats)  # 2 s at 25 / 10 ms
    with torch.no_grad():
        emb = torch.nn.functional.normalize(model.eval()(torch.stack(feats)).double(), dim=1)
    idx = {s: i for i, s in enumerate(segs.segment_id)}
    manual = [float(emb[idx[e]] @ emb[idx[t]]) for e, t in zip(pairs.enroll_id, pairs.test_id)]
    assert np.allclose(scores, manual, atol=1e-5)
    from voxflow.metrics.verification import eer

    assert valset.eer(model, data_cfg) == pytest.approx(eer(manual, pairs.label)[0], abs=1e-9)


# -- a real stage run: per-step LR and margin, validation, best epoch -----------------------------------------------
@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage")
    train = write_corpus(root, "spk", speakers=4, sessions=2, utts=4, seed=0)  # 32 utterances
    held_out = write_corpus(root, "val", speakers=3, sessions=2, utts=2, seed=1)
    valset = ValidationSet(*build_validation_set(held_out, 16, segments_per_session=2))
    exp = tiny_experiment(log_every_steps=1)
    cfg = resolve_stage(exp, "warmup")
    cfg["select"] = "best"
    spk2id = {s: i for i, s in enumerate(sorted(train.spk_id.unique()))}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        final = run_stage(cfg, train, train, spk2id, root / "out", validation=valset)
    finally:
        torch.set_num_threads(before)
    return root / "out", final


def test_engine_logs_lr_and_margin_of_every_step(stage_run):
    out, _ = stage_run
    steps = pd.read_parquet(out / "train_steps.parquet")
    # 32 utterances, batch 4: 8 steps per epoch, 16 in all; warm-up 0.5 epoch = 4 steps; decay to 1e-3.
    assert steps.step.tolist() == list(range(1, 17)) and steps.epoch.tolist() == [1] * 8 + [2] * 8
    lr = steps.set_index("step").lr
    expected = [0.0025, 0.005, 0.01, 0.01, 0.00811131, 0.001]
    assert [lr[s] for s in (1, 2, 4, 5, 6, 16)] == pytest.approx(expected, rel=1e-6)
    # margin ramp over epoch 0 -> 1, set before each step from (epoch + batches done / 8)
    margin = steps.set_index("step").margin
    assert [margin[s] for s in (1, 2, 5, 8, 9, 16)] == pytest.approx([0.0, 0.025, 0.1, 0.175, 0.2, 0.2])
    assert steps.loss.gt(0).all() and steps.accuracy.between(0, 1).all() and (steps.samples == 4).all()


def test_engine_validates_every_epoch_and_keeps_the_best(stage_run):
    out, final = stage_run
    log = pd.read_parquet(out / "train_log.parquet")
    assert log.epoch.tolist() == [1, 2] and log.step.tolist() == [8, 16] and (log.samples == 32).all()
    assert log.val_eer.between(0, 1).all()
    best = int(log.epoch[log.val_eer == log.val_eer.min()].max())
    state = load_checkpoint(final)
    assert state["selected_epoch"] == best
    chosen = checkpoint_tensors(out / f"epoch_{best}.pt")
    for key, value in checkpoint_tensors(final).items():
        assert torch.equal(value, chosen[key]), key
    assert (out / "init.pt").is_file() and not list(out.glob("step_*.pt"))
    if _has_tensorboard():
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def test_best_epoch_needs_a_validation_set(tmp_path):
    utts = write_corpus(tmp_path, "spk", speakers=2, sessions=1, utts=2)
    cfg = {**resolve_stage(tiny_experiment(), "warmup"), "select": "best"}
    with pytest.raises(VoxflowError, match="warmup.select: best .* validation.corpus"):
        run_stage(cfg, utts, utts, {"spk00": 0, "spk01": 1}, tmp_path / "out")


# -- best / last N epochs for the final model -----------------------------------------------------------------------
def test_select_epochs():
    log = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_eer": [0.3, 0.1, 0.2, 0.1]})
    assert select_epochs(log, "best", 1) == [4]  # equal EERs: the later epoch
    assert select_epochs(log, "best", 2) == [2, 4]
    assert select_epochs(log, "best", 3) == [2, 3, 4]
    assert select_epochs(log, "last", 2) == [3, 4]
    assert select_epochs(log, "best", 10) == [1, 2, 3, 4]
    with pytest.raises(VoxflowError, match="x/train_log.parquet: select: best needs .* val_eer"):
        select_epochs(log[["epoch"]], "best", 1, where="x/train_log.parquet")


def test_average_script_averages_the_best_epochs(tmp_path, monkeypatch):
    for epoch in (1, 2, 3, 4):
        save_checkpoint({"model": {"w": torch.full((2,), float(epoch))}, "head": {"weight": torch.zeros(1, 1)},
                         "model_cfg": "{}", "data_cfg": "{}", "head_cfg": "{}", "num_classes": 1},
                        tmp_path / f"epoch_{epoch}.pt")
    pd.DataFrame({"epoch": [1, 2, 3, 4], "val_eer": [0.3, 0.1, 0.2, 0.15]}).to_parquet(tmp_path / "train_log.parquet")

    def average(*args: str) -> None:  # the rule's script, run in this process
        monkeypatch.setattr(sys, "argv", ["average.py", "--stage-dir", str(tmp_path), *args])
        runpy.run_path(str(REPO / "scripts/average.py"), run_name="__main__")

    average("--average", "2", "--select", "best", "--out", str(tmp_path / "best.pt"))
    assert torch.equal(load_checkpoint(tmp_path / "best.pt")["model"]["w"], torch.full((2,), 3.0))  # epochs 2, 4
    average("--average", "1", "--select", "best", "--out", str(tmp_path / "best1.pt"))
    assert torch.equal(load_checkpoint(tmp_path / "best1.pt")["model"]["w"], torch.full((2,), 2.0))
    average("--last", "3", "--out", str(tmp_path / "last.pt"))  # the rule's former command line
    assert torch.equal(load_checkpoint(tmp_path / "last.pt")["model"]["w"], torch.full((2,), 3.0))  # epochs 2-4


def _mean_of(paths: list[Path], part: str) -> dict[str, torch.Tensor]:
    states = [load_checkpoint(p)[part] for p in paths]
    return {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
            for k, v in states[-1].items()}


def test_stage_average_makes_final_pt_the_mean_of_the_chosen_epochs(tmp_path, one_thread):
    train = write_corpus(tmp_path / "wav", "spk", speakers=4, sessions=2, utts=4, seed=0)
    valset = ValidationSet(*build_validation_set(write_corpus(tmp_path / "wav", "val", 3, 2, 2, seed=1), 16,
                                                 segments_per_session=2))
    spk2id = {s: i for i, s in enumerate(sorted(train.spk_id.unique()))}
    exp = tiny_experiment(tensorboard=False)
    exp["warmup"] = {**exp["warmup"], "epochs": 3, "average": 2}  # select: last (the default)
    out = tmp_path / "warmup"
    final = run_stage(resolve_stage(exp, "warmup"), train, train, spk2id, out, validation=valset)
    epochs = [out / f"epoch_{e}.pt" for e in (1, 2, 3)]
    state = load_checkpoint(final)
    assert state["averaged_epochs"] == [2, 3]
    for part in ("model", "head"):
        expected = _mean_of(epochs[1:], part)
        assert set(state[part]) == set(expected)
        for key, value in state[part].items():
            assert torch.allclose(value, expected[key], atol=1e-6), (part, key)
    assert not torch.allclose(state["model"]["segment6.weight"], load_checkpoint(epochs[2])["model"]["segment6.weight"])

    # select and average choose final.pt only: a rerun with other values trains nothing and rewrites final.pt.
    stamps = [p.stat().st_mtime_ns for p in epochs]
    exp["warmup"].update(select="best", average=2)
    final = run_stage(resolve_stage(exp, "warmup"), train, train, spk2id, out, validation=valset)
    assert [p.stat().st_mtime_ns for p in epochs] == stamps
    log = pd.read_parquet(out / "train_log.parquet")
    best = sorted(select_epochs(log, "best", 2))
    state = load_checkpoint(final)
    assert state["averaged_epochs"] == best
    expected = _mean_of([out / f"epoch_{e}.pt" for e in best], "model")
    assert all(torch.allclose(v, expected[k], atol=1e-6) for k, v in state["model"].items())

    # the next stage starts from that average (network and class weights)
    exp["margin"] = {"epochs": 0, "head": {"name": "amsoftmax", "scale": 16.0, "margin": 0.2}}
    nxt = load_checkpoint(run_stage(resolve_stage(exp, "margin"), train, train, spk2id, tmp_path / "margin",
                                    init_checkpoint=final))
    assert all(torch.equal(v, state["model"][k]) for k, v in nxt["model"].items())
    assert torch.equal(nxt["head"]["weight"], state["head"]["weight"])
    with pytest.raises(VoxflowError, match="warmup.average: invalid value 0"):
        run_stage({**resolve_stage(exp, "warmup"), "average": 0}, train, train, spk2id, out)


# -- SIGKILL mid-epoch, rerun, same weights -------------------------------------------------------------------------
def _train_cmd(exp: dict, utts: Path, out: Path) -> list[str]:
    return [sys.executable, str(REPO / "scripts/train.py"), "--config", json.dumps(exp), "--stages", "warmup",
            "--utterances", str(utts), "--out-dir", str(out)]


def _step_of(path: Path) -> int:
    return int(path.stem.split("_")[1])


def test_sigkill_mid_epoch_then_rerun_equals_an_uninterrupted_run(tmp_path):
    utts = write_corpus(tmp_path / "wav", "spk", speakers=6, sessions=2, utts=6, seed=3)  # 72 utterances
    utts_path = tmp_path / "utts.parquet"
    utts.to_parquet(utts_path)
    exp = tiny_experiment(checkpoint_every_steps=3, log_every_steps=2)  # 18 steps per epoch, 2 epochs
    exp["data"]["chunk_s"] = 2.0
    env = one_thread_env()
    reference = subprocess.Popen(_train_cmd(exp, utts_path, tmp_path / "reference"), env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = tmp_path / "killed"
    victim = subprocess.Popen(_train_cmd(exp, utts_path, killed), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None:
        if any(_step_of(p) >= 6 for p in killed.glob("step_*.pt")):  # after a step checkpoint of epoch 1
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the training run ended before it could be killed"
    assert not (killed / "final.pt").exists()
    assert reference.wait(timeout=300) == 0, reference.stdout.read()[-3000:]

    # a copy whose newest step checkpoint is truncated, as by a kill in the middle of a (non-atomic) write
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for p in killed.iterdir():
        if p.is_file():
            (corrupt / p.name).write_bytes(p.read_bytes())
    newest = max(corrupt.glob("step_*.pt"), key=_step_of)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])

    runs = {d: subprocess.Popen(_train_cmd(exp, utts_path, d), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for d in (killed, corrupt)}
    logs = {d: p.communicate(timeout=300)[0] for d, p in runs.items()}
    for d, p in runs.items():
        assert p.returncode == 0, logs[d][-3000:]
    resumed = [line for line in logs[killed].splitlines() if "resuming from" in line]
    assert resumed and "step_" in resumed[0], logs[killed][-3000:]
    batch = int(resumed[0].split("after batch ")[1].split()[0])
    assert 0 < batch < 18  # mid-epoch: the consumed batches were skipped
    assert f"{newest}: corrupt or truncated checkpoint" in logs[corrupt]
    assert "falling back" in logs[corrupt] and f"resuming from {newest}" not in logs[corrupt]

    ref = checkpoint_tensors(tmp_path / "reference/final.pt")
    ref_log = pd.read_parquet(tmp_path / "reference/train_log.parquet")
    ref_steps = pd.read_parquet(tmp_path / "reference/train_steps.parquet")
    cols = ["epoch", "step", "loss", "accuracy", "lr", "margin", "samples"]
    for d in (killed, corrupt):
        got = checkpoint_tensors(d / "final.pt")
        assert got.keys() == ref.keys()
        for key, value in ref.items():
            assert torch.equal(got[key], value), f"{d.name}: {key} differs from the uninterrupted run"
        pd.testing.assert_frame_equal(pd.read_parquet(d / "train_log.parquet")[cols], ref_log[cols])
        pd.testing.assert_frame_equal(pd.read_parquet(d / "train_steps.parquet")[cols], ref_steps[cols])
    assert len(ref_steps) == 18 and ref_log.step.tolist() == [18, 36]
    assert not math.isnan(ref_log.loss.iloc[-1])


# -- frozen backbone for the first epochs of a stage ----------------------------------------------------------------
def test_frozen_backbone_epochs_train_the_head_only_then_everything(tmp_path, one_thread):
    train = write_corpus(tmp_path / "wav", "spk", speakers=4, sessions=2, utts=2, seed=0)  # 16 utterances
    spk2id = {s: i for i, s in enumerate(sorted(train.spk_id.unique()))}
    exp = tiny_experiment(tensorboard=False, clip_grad_norm=1.0, optimizer={"name": "adam", "lr": 0.01,
                                                                             "weight_decay": 0.001})
    exp["warmup"] = {**exp["warmup"], "epochs": 3, "freeze_backbone_epochs": 2}
    cfg = resolve_stage(exp, "warmup")
    out = tmp_path / "warmup"
    run_stage(cfg, train, train, spk2id, out)
    states = [load_checkpoint(out / name) for name in ("init.pt", "epoch_1.pt", "epoch_2.pt", "epoch_3.pt")]
    # the network, buffers (batch-norm statistics) included, is the initial one until the frozen epochs end ...
    for state in states[1:3]:
        assert all(torch.equal(v, states[0]["model"][k]) for k, v in state["model"].items())
    # ... after which every weight tensor moves; the head moves in every epoch
    moved = [k for k, v in states[3]["model"].items() if not torch.equal(v, states[2]["model"][k])]
    weights = [k for k, v in states[3]["model"].items() if v.is_floating_point() and "running" not in k]
    assert set(weights) <= set(moved)
    for before, after in zip(states, states[1:]):
        assert not torch.allclose(before["head"]["weight"], after["head"]["weight"])
    # the optimiser kept no moments of the network while it was frozen: epoch 2's state covers the head only
    opt = states[2]["optimizer"]["state"]
    assert len(opt) == len(states[2]["head"]) and len(states[3]["optimizer"]["state"]) > len(opt)

    # resumed after the last frozen epoch (epoch 3 and final.pt deleted), the run ends where the first did
    final = checkpoint_tensors(out / "final.pt")
    (out / "epoch_3.pt").unlink()
    (out / "final.pt").unlink()
    run_stage(cfg, train, train, spk2id, out)
    resumed = checkpoint_tensors(out / "final.pt")
    assert all(torch.equal(resumed[k], v) for k, v in final.items())
    with pytest.raises(VoxflowError, match="warmup.freeze_backbone_epochs: invalid value -1"):
        run_stage(resolve_stage({**exp, "warmup": {**exp["warmup"], "freeze_backbone_epochs": -1}}, "warmup"),
                  train, train, spk2id, tmp_path / "bad")
