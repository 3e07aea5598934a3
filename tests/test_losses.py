"""Classification heads and the margin scheduler (voxflow.losses)."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from voxflow.errors import VoxflowError
from voxflow.losses import MarginScheduler, build_head, head_names

S = 32.0
REPO = Path(__file__).resolve().parents[1]


def identity_head(name, **kwargs):
    """A head over 3-d inputs with 3 classes whose weight rows are the unit axes."""
    head = build_head(name, 3, 3, **kwargs)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3))
    return head


def at_angle(theta: float) -> torch.Tensor:
    """A (1, 3) embedding at angle theta from class 0, in the plane of classes 0 and 1."""
    return torch.tensor([[math.cos(theta), math.sin(theta), 0.0]])


# --- factory -----------------------------------------------------------------------------------


def test_head_names():
    assert head_names() == ["softmax", "asoftmax", "amsoftmax", "aamsoftmax"]


def test_unknown_head_and_kwarg_are_named():
    with pytest.raises(VoxflowError, match="'arcface'.*softmax, asoftmax, amsoftmax, aamsoftmax"):
        build_head("arcface", 4, 2)
    with pytest.raises(VoxflowError, match="'s', 'm'.*scale, margin"):
        build_head("amsoftmax", 4, 2, s=30, m=0.2)
    with pytest.raises(VoxflowError, match="margin=1.5"):
        build_head("asoftmax", 4, 2, margin=1.5)


@pytest.mark.parametrize("name", ["softmax", "asoftmax", "amsoftmax", "aamsoftmax"])
def test_weight_shape_and_logit_shape(name):
    head = build_head(name, 16, 7)
    assert head.weight.shape == (7, 16)
    emb = torch.randn(5, 16)
    labels = torch.randint(0, 7, (5,))
    assert head(emb, labels).shape == (5, 7) and head(emb).shape == (5, 7)


# --- logits: known values ----------------------------------------------------------------------


def test_softmax_is_affine():
    head = build_head("softmax", 4, 3)
    emb = torch.randn(2, 4)
    expected = emb @ head.weight.T + head.bias
    assert torch.allclose(head(emb, torch.tensor([0, 1])), expected)
    assert torch.allclose(head(emb), expected)
    assert not hasattr(head, "margin")


def test_amsoftmax_known_values():
    head = identity_head("amsoftmax", scale=S, margin=0.2)
    emb = 5.0 * at_angle(0.5)  # the input norm does not matter: it is normalised
    cos0, cos1 = math.cos(0.5), math.sin(0.5)
    logits = head(emb, torch.tensor([0]))
    assert logits[0].tolist() == pytest.approx([S * (cos0 - 0.2), S * cos1, 0.0], abs=1e-4)
    assert head(emb)[0].tolist() == pytest.approx([S * cos0, S * cos1, 0.0], abs=1e-4)


def test_aamsoftmax_known_values():
    head = identity_head("aamsoftmax", scale=S, margin=0.3)
    logits = head(at_angle(0.5), torch.tensor([0]))
    assert logits[0].tolist() == pytest.approx([S * math.cos(0.8), S * math.sin(0.5), 0.0], abs=1e-4)
    # beyond theta + m = pi the target continues as cos(theta) - (1 - cos m)
    far = head(at_angle(3.0), torch.tensor([0]))[0, 0].item()
    assert far == pytest.approx(S * (math.cos(3.0) - (1 - math.cos(0.3))), abs=1e-4)
    # and is continuous at theta = pi - m
    edge = math.pi - 0.3
    below = head(at_angle(edge - 1e-3), torch.tensor([0]))[0, 0].item()
    above = head(at_angle(edge + 1e-3), torch.tensor([0]))[0, 0].item()
    assert below == pytest.approx(-S, abs=0.05) and above == pytest.approx(-S, abs=0.05)


def test_aamsoftmax_easy_margin_only_where_cosine_positive():
    head = identity_head("aamsoftmax", scale=S, margin=0.3, easy_margin=True)
    assert head(at_angle(0.5), torch.tensor([0]))[0, 0].item() == pytest.approx(S * math.cos(0.8), abs=1e-4)
    assert head(at_angle(2.0), torch.tensor([0]))[0, 0].item() == pytest.approx(S * math.cos(2.0), abs=1e-4)


@pytest.mark.parametrize(
    "m, theta, psi",
    [
        (2, 0.0, 1.0),
        (2, math.pi / 4, 0.0),
        (2, math.pi / 2, -1.0),  # continuous across the piece boundary
        (2, 3 * math.pi / 4, -2.0),
        (2, math.pi, -3.0),
        (4, math.pi, -7.0),  # 1 - 2m at theta = pi
        (1, 1.0, math.cos(1.0)),  # m = 1 is the plain cosine
    ],
)
def test_asoftmax_psi_known_values(m, theta, psi):
    head = build_head("asoftmax", 3, 3, margin=m)
    assert head.psi(torch.tensor(theta)).item() == pytest.approx(psi, abs=1e-5)


def test_asoftmax_psi_is_monotonically_decreasing_and_below_cosine():
    head = build_head("asoftmax", 3, 3, margin=3)
    theta = torch.linspace(0, math.pi, 721)
    psi = head.psi(theta)
    assert (psi[1:] <= psi[:-1] + 1e-6).all()
    assert (psi <= torch.cos(theta) + 1e-6).all()


def test_asoftmax_target_logit_with_lambda():
    head = identity_head("asoftmax", margin=2, anneal=False)
    head.lam = 0.0
    emb = 3.0 * at_angle(0.5)
    logits = head(emb, torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(3.0 * math.cos(1.0), abs=1e-4)  # ||x|| psi = ||x|| cos(2 theta)
    assert logits[0, 1].item() == pytest.approx(3.0 * math.sin(0.5), abs=1e-4)
    head.lam = 1.0
    blended = (math.cos(0.5) + math.cos(1.0)) / 2
    assert head(emb, torch.tensor([0]))[0, 0].item() == pytest.approx(3.0 * blended, abs=1e-4)
    assert head(emb)[0, 0].item() == pytest.approx(3.0 * math.cos(0.5), abs=1e-4)


def test_asoftmax_lambda_annealing_schedule():
    head = build_head("asoftmax", 4, 3).train()
    emb, labels = torch.randn(2, 4), torch.tensor([0, 1])
    head(emb, labels)
    assert head.lam == pytest.approx(1000.0)
    head(emb, labels)
    assert head.lam == pytest.approx(1000.0 / 1.12)
    head.iteration = 10_000
    head(emb, labels)
    assert head.lam == 5.0  # lambda_min
    head.eval()
    head.lam = 42.0
    head(emb, labels)
    assert head.lam == 42.0  # no annealing outside training
    resumed = build_head("asoftmax", 4, 3)
    resumed.load_state_dict(head.state_dict())  # the schedule survives a checkpoint
    assert (resumed.iteration, resumed.lam) == (10_001, 42.0)


def _config_with_head(head: dict) -> dict:
    import yaml

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["experiments"]["xvector_aam"]["margin"]["head"] = head
    return cfg


def test_asoftmax_lambda_keys_from_the_config_reach_the_head():
    from snakemake.utils import validate

    from voxflow.train.network import build_classifier

    head_cfg = {"name": "asoftmax", "margin": 4, "lambda_base": 100.0, "lambda_min": 2.0, "gamma": 0.5,
                "power": 2.0}
    validate(_config_with_head(dict(head_cfg)), str(REPO / "config/schema.yaml"))
    head = build_classifier(head_cfg, 4, 3).train()
    assert (head.margin, head.lambda_base, head.lambda_min, head.gamma, head.power) == (4, 100.0, 2.0, 0.5, 2.0)
    emb, labels = torch.randn(2, 4), torch.tensor([0, 1])
    lams = []
    for _ in range(4):
        head(emb, labels)
        lams.append(head.lam)
    assert lams == pytest.approx([100.0, 100.0 / 1.5**2, 100.0 / 2.0**2, 100.0 / 2.5**2])
    head.iteration = 1000
    head(emb, labels)
    assert head.lam == 2.0  # lambda_min
    held = build_classifier({"name": "asoftmax", "lambda_base": 7.0, "anneal": False}, 4, 3).train()
    held(emb, labels)
    held(emb, labels)
    assert held.lam == 7.0


@pytest.mark.parametrize("key, value", [("lambda_base", 100.0), ("gamma", 0.1), ("anneal", False)])
def test_asoftmax_keys_with_another_head_are_named(key, value):
    from snakemake.utils import validate
    from snakemake_interface_common.exceptions import WorkflowError

    from voxflow.train.network import build_classifier

    head_cfg = {"name": "amsoftmax", "scale": 30.0, "margin": 0.2, key: value}
    with pytest.raises(WorkflowError, match=rf"(?s){key} is an asoftmax key.*\['margin'\]\['head'\]\['{key}'\]"):
        validate(_config_with_head(dict(head_cfg)), str(REPO / "config/schema.yaml"))
    with pytest.raises(VoxflowError, match=rf"margin.head: {key}: A-softmax's lambda annealing.*'amsoftmax'"):
        build_classifier(head_cfg, 4, 3, where="margin.head")


# --- margin attribute, numerics, init ------------------------------------------------------------


@pytest.mark.parametrize("name", ["amsoftmax", "aamsoftmax"])
def test_zero_margin_gives_scaled_cosine(name):
    head = build_head(name, 8, 5)
    head.margin = 0.0
    emb, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(head(emb, labels), head(emb), atol=1e-4)
    head.margin = 0.25
    assert isinstance(head.margin, float)
    margin_loss = F.cross_entropy(head(emb, labels), labels)
    assert margin_loss > F.cross_entropy(head(emb), labels)  # a margin makes the task harder


@pytest.mark.parametrize("name", ["asoftmax", "amsoftmax", "aamsoftmax"])
def test_gradients_finite_at_cosine_plus_minus_one(name):
    head = build_head(name, 6, 4)
    with torch.no_grad():
        head.weight.copy_(torch.eye(6)[:4])  # unit axes: the cosines below are exactly +-1
    # rows on (cos = +1) and opposite to (cos = -1) their class weight, and a zero vector
    emb = torch.tensor([[2.0, 0, 0, 0, 0, 0], [0, -1.0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0], [0.0] * 6])
    emb.requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 3])
    assert head.cosine(emb).gather(1, labels.view(-1, 1)).flatten().tolist() == [1.0, -1.0, 1.0, 0.0]
    for margin in (0.0, 0.2, 0.5, 2.0, 4.0):
        head.margin = margin
        loss = F.cross_entropy(head(emb, labels), labels)
        emb.grad, head.weight.grad = None, None
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


def test_init_from_copies_softmax_weights():
    warmup = build_head("softmax", 8, 5)
    fine = build_head("amsoftmax", 8, 5, scale=30.0, margin=0.15)
    fine.init_from(warmup)
    assert torch.equal(fine.weight, warmup.weight)
    assert fine.weight.data_ptr() != warmup.weight.data_ptr()  # a copy, not shared
    with pytest.raises(VoxflowError, match=r"\(5, 8\)"):
        build_head("aamsoftmax", 8, 6).init_from(warmup)


def test_am_softmax_trains_a_separable_toy_problem():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(4, 8), dim=1)
    labels = torch.arange(4).repeat(16)
    emb = centres[labels] + 0.1 * torch.randn(64, 8)
    head = build_head("amsoftmax", 8, 4, scale=16.0, margin=0.2)
    optimiser = torch.optim.SGD(head.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        loss = F.cross_entropy(head(emb, labels), labels)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5 * first
    assert (head(emb).argmax(1) == labels).float().mean() == 1.0


# --- margin scheduler ------------------------------------------------------------------------------


def test_linear_schedule_values():
    sched = MarginScheduler(0.2, start_epoch=2, end_epoch=6)
    assert [sched.value(e) for e in (0, 1.99, 2, 4, 5, 6, 40)] == pytest.approx([0, 0, 0, 0.1, 0.15, 0.2, 0.2])


def test_log_schedule_is_fast_first_and_hits_the_ends():
    sched = MarginScheduler(0.2, start_epoch=2, end_epoch=6, mode="log")
    assert sched.value(2) == 0.0 and sched.value(6) == pytest.approx(0.2)
    assert sched.value(4) == pytest.approx(0.2 * (1 - 10**-1.5) / (1 - 1e-3))  # 0.969 of the way
    grid = [2 + 0.04 * i for i in range(101)]
    values = [sched.value(e) for e in grid]
    assert all(b >= a for a, b in zip(values, values[1:]))
    linear = MarginScheduler(0.2, 2, 6)
    assert all(sched.value(e) >= linear.value(e) for e in grid)


def test_initial_margin_and_apply():
    sched = MarginScheduler(4.0, start_epoch=0, end_epoch=10, initial_margin=1.0)
    head = build_head("asoftmax", 4, 3)
    assert sched.apply(head, 5) == pytest.approx(2.5) and head.margin == pytest.approx(2.5)
    assert sched.value(-1) == 1.0
    with pytest.raises(VoxflowError, match="SoftmaxHead"):
        sched.apply(build_head("softmax", 4, 3), 1)


def test_scheduler_rejects_bad_arguments():
    with pytest.raises(VoxflowError, match="mode='cosine'"):
        MarginScheduler(0.2, 0, 1, mode="cosine")
    with pytest.raises(VoxflowError, match="end_epoch=1"):
        MarginScheduler(0.2, 3, 1)
    step = MarginScheduler(0.2, 3, 3)
    assert step.value(2.9) == 0.0 and step.value(3) == 0.2
