"""LR schedules, stage configs, checkpoints (atomic, weights-only, fallback) and averaging."""

import math

import pytest
import torch

from voxflow.errors import VoxflowError
from voxflow.train.average import average_checkpoints
from voxflow.train.checkpoint import latest_good_checkpoint, load_checkpoint, save_checkpoint
from voxflow.train.schedules import learning_rate
from voxflow.train.stage_config import deep_merge, resolve_stage


def test_warmup_exp_schedule_known_values():
    cfg = {"name": "warmup_exp", "warmup_steps": 10, "final_lr": 1e-4}
    assert learning_rate(0, 110, 0.1, cfg) == pytest.approx(0.01)  # 1/10 of the way up
    assert learning_rate(9, 110, 0.1, cfg) == pytest.approx(0.1)
    assert learning_rate(109, 110, 0.1, cfg) == pytest.approx(1e-4)
    mid = learning_rate(59, 110, 0.1, cfg)  # half-way through the decay: geometric mean
    assert mid == pytest.approx(math.sqrt(0.1 * 1e-4), rel=0.05)


def test_linear_warmup_step_and_cosine():
    assert learning_rate(4, 100, 1e-4, {"name": "linear_warmup", "warmup_steps": 10}) == pytest.approx(5e-5)
    assert learning_rate(50, 100, 1e-4, {"name": "linear_warmup", "warmup_steps": 10}) == pytest.approx(1e-4)
    assert learning_rate(25, 100, 1.0, {"name": "step", "step_size": 10, "gamma": 0.5}) == pytest.approx(0.25)
    cos = {"name": "cosine", "final_lr": 0.0}
    assert learning_rate(0, 101, 1.0, cos) == pytest.approx(1.0)
    assert learning_rate(50, 101, 1.0, cos) == pytest.approx(0.5)
    assert learning_rate(100, 101, 1.0, cos) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(VoxflowError, match="unknown schedule 'nope'"):
        learning_rate(0, 10, 1.0, {"name": "nope"})


def test_resolve_stage_overrides_only_what_the_stage_names():
    exp = {"device": "cpu", "model": {"name": "xvector"}, "data": {"chunk_s": 2.0, "batch_size": 64,
                                                                  "features": {"kind": "mfcc"}},
           "optimizer": {"name": "adam", "lr": 1e-3},
           "finetune": {"epochs": 1, "head": {"name": "aamsoftmax"}, "data": {"chunk_s": 6.0},
                        "optimizer": {"lr": 1e-5}}}
    stage = resolve_stage(exp, "finetune")
    assert stage["data"] == {"chunk_s": 6.0, "batch_size": 64, "features": {"kind": "mfcc"}}
    assert stage["optimizer"] == {"name": "adam", "lr": 1e-5}
    assert exp["data"]["chunk_s"] == 2.0  # the experiment is not modified
    assert deep_merge({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(VoxflowError, match="no 'margin' section"):
        resolve_stage(exp, "margin")


def test_corrupt_checkpoint_is_named_and_training_falls_back(tmp_path):
    save_checkpoint({"model": {"w": torch.ones(3)}}, tmp_path / "epoch_1.pt")
    save_checkpoint({"model": {"w": torch.full((3,), 2.0)}}, tmp_path / "epoch_2.pt")
    data = (tmp_path / "epoch_2.pt").read_bytes()
    (tmp_path / "epoch_2.pt").write_bytes(data[: len(data) // 2])  # truncated, as by a kill mid-write
    with pytest.raises(VoxflowError, match="epoch_2.pt: corrupt or truncated checkpoint"):
        load_checkpoint(tmp_path / "epoch_2.pt")
    epoch, state = latest_good_checkpoint(tmp_path)
    assert epoch == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


class Evil:
    """Any class: unpickling it could run code, so weights-only loading must refuse it."""


def test_checkpoints_refuse_arbitrary_pickles(tmp_path):
    torch.save({"obj": Evil()}, tmp_path / "epoch_1.pt")
    with pytest.raises(VoxflowError, match="epoch_1.pt"):
        load_checkpoint(tmp_path / "epoch_1.pt")


def test_average_checkpoints(tmp_path):
    for i, v in enumerate([1.0, 2.0, 6.0]):
        save_checkpoint({"model": {"w": torch.full((2,), v), "n": torch.tensor(i)}, "head": {},
                         "model_cfg": "{}", "data_cfg": "{}", "head_cfg": "{}", "num_classes": 2},
                        tmp_path / f"epoch_{i + 1}.pt")
    avg = average_checkpoints([tmp_path / "epoch_2.pt", tmp_path / "epoch_3.pt"])
    assert torch.allclose(avg["model"]["w"], torch.full((2,), 4.0))
    assert avg["model"]["n"].item() == 2  # integer buffers come from the last
    for i, v in enumerate([1.0, 3.0]):  # with head=True the class weights are averaged too (Wespeaker's avg_model)
        save_checkpoint({"model": {"w": torch.full((2,), v)}, "head": {"weight": torch.full((2, 2), 2 * v)},
                         "model_cfg": "{}", "data_cfg": "{}", "head_cfg": "{}", "num_classes": 2, "stage_cfg": "{}"},
                        tmp_path / f"h_{i}.pt")
    paths = [tmp_path / "h_0.pt", tmp_path / "h_1.pt"]
    assert torch.equal(average_checkpoints(paths)["head"]["weight"], torch.full((2, 2), 6.0))  # from the last
    both = average_checkpoints(paths, head=True)
    assert torch.equal(both["head"]["weight"], torch.full((2, 2), 4.0)) and both["stage_cfg"] == "{}"
    assert torch.equal(both["model"]["w"], torch.full((2,), 2.0))
    save_checkpoint({"model": {"other": torch.ones(1)}}, tmp_path / "bad.pt")
    with pytest.raises(VoxflowError, match="do not match"):
        average_checkpoints([tmp_path / "bad.pt", tmp_path / "epoch_3.pt"])
