"""Models, pooling layers, registry and export (voxflow.models)."""

import math

import numpy as np
import pytest
import torch

from voxflow.errors import VoxflowError
from voxflow.models import build, build_pooling, names, pooling_names
from voxflow.models.export import export_onnx, save_torchscript
from voxflow.models.pooling import ASTP, TAP, TSTP, GhostVLAD, NetVLAD



pytestmark = pytest.mark.usefixtures("one_thread")

ALL_MODELS = ["ecapa_tdnn", "ge2e_lstm", "lstm_avg", "lstm_netvlad", "resnet221", "resnet293", "resnet34", "xvector"]

# Real architectures at reduced widths: fast enough for shape, gradient and export checks.
TINY = {
    "xvector": dict(channels=32, stats_channels=48, embed_dim=24),
    "lstm_netvlad": dict(hidden=16, frame_dim=16, clusters=4, embed_dim=24),
    "ge2e_lstm": dict(hidden=16, embed_dim=16),
    "lstm_avg": dict(hidden=16, frame_dim=16, embed_dim=24),
    "resnet34": dict(base_channels=4, embed_dim=16),
    "resnet221": dict(base_channels=2, embed_dim=16),
    "resnet293": dict(base_channels=2, embed_dim=16),
    "ecapa_tdnn": dict(channels=32, mfa_channels=48, embed_dim=16),
}
FEAT = 20


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny(name: str) -> torch.nn.Module:
    return build(name, FEAT, **TINY[name])


# --- registry ---------------------------------------------------------------------------------


def test_names_lists_every_model():
    assert names() == ALL_MODELS


def test_unknown_model_names_it_and_lists_valid():
    with pytest.raises(VoxflowError, match="'tdnn9'.*ecapa_tdnn.*xvector"):
        build("tdnn9", 30)


def test_unknown_kwarg_names_it_and_lists_valid():
    with pytest.raises(VoxflowError, match="'width'.*channels.*stats_channels"):
        build("xvector", 30, width=3)


def test_unknown_pooling_names_it():
    with pytest.raises(VoxflowError, match="'maxpool'.*TAP, TSTP, ASTP, NetVLAD, GhostVLAD"):
        build("resnet34", 80, pooling="maxpool")
    with pytest.raises(VoxflowError, match="'k'"):
        build_pooling("NetVLAD", 8, k=3)


def test_embed_dim_argument_overrides_default():
    assert build("xvector", 30, 128, channels=32, stats_channels=48).embed_dim == 128
    model = build("ecapa_tdnn", 80, None, channels=32, mfa_channels=48)
    assert model.embed_dim == 192 and isinstance(model.embed_dim, int)


# --- parameter counts at the papers' sizes -----------------------------------------------------


def test_xvector_matches_margin_matters_table1():
    model = build("xvector", 30)
    # Table 1 "input x output" of each affine layer; frame1's 150 = 30 MFCC x 5 frames.
    table1 = [(150, 512), (1536, 512), (1536, 512), (512, 512), (512, 1500), (3000, 512), (512, 512)]
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear))]
    assert [(w[0].numel(), w.shape[0]) for w in weights] == table1
    affine = sum(i * o + o for i, o in table1)
    batchnorm = sum(2 * o for _, o in table1)
    assert count(model) == affine + batchnorm == 4_491_668
    # Kaseva & Kurimo quote 4.2 M for this x-vector: the network up to the segment6 embedding.
    below_segment7 = count(model) - count(model.segment7) - count(model.segment7_norm)
    assert below_segment7 == pytest.approx(4.2e6, rel=0.01)
    assert model.embed_dim == 512 and model.neck_dim == 512 and model.min_frames == 15


@pytest.mark.parametrize(
    "name, kwargs, feat_dim, reference",
    [
        # Kaseva & Kurimo: 6.7 M for K=14 (derivation in voxflow/models/lstm.py)
        ("lstm_netvlad", {}, 30, 6.7e6),
        ("lstm_avg", {}, 30, 6.7e6),
        # Wespeaker model cards: ResNet34-TSTP-emb256 6.63 M, ResNet221 23.79 M, ResNet293 28.62 M
        ("resnet34", {}, 80, 6.63e6),
        ("resnet221", {}, 80, 23.79e6),
        ("resnet293", {}, 80, 28.62e6),
        # Wespeaker ECAPA_TDNN_GLOB_c512/c1024-ASTP-emb192 (ECAPA-TDNN paper: 6.2 M / 14.7 M)
        ("ecapa_tdnn", {}, 80, 6.19e6),
        ("ecapa_tdnn", {"channels": 1024}, 80, 14.65e6),
    ],
)
def test_parameter_count_matches_reference(name, kwargs, feat_dim, reference):
    assert count(build(name, feat_dim, **kwargs)) == pytest.approx(reference, rel=0.01)


def test_lstm_exact_counts_follow_docstring_derivation():
    assert count(build("lstm_netvlad", 30)) == 6_662_978
    assert count(build("lstm_netvlad", 30, clusters=8)) == 5_581_628
    assert count(build("lstm_netvlad", 30, clusters=30)) == 9_546_578
    assert count(build("lstm_avg", 30)) == 6_659_144
    model = build("lstm_netvlad", 30)
    assert count(model.cascade) == 3_743_744 and model.cascade.output_dim == 1536
    assert model.pool.output_dim == 14 * 256 and model.embed_dim == 700


def test_resnet_and_ecapa_exact_counts():
    assert count(build("resnet34", 80)) == 6_634_336
    assert count(build("ecapa_tdnn", 80)) == 6_191_104
    assert count(build("ecapa_tdnn", 80, channels=1024)) == 14_657_472


# --- behaviour ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_shapes_for_variable_lengths(name):
    model = tiny(name).eval()
    torch.manual_seed(0)
    for frames in (15, 64):
        with torch.no_grad():
            emb = model(torch.randn(3, frames, FEAT))
        assert emb.shape == (3, model.embed_dim) and emb.dtype == torch.float32
        assert torch.isfinite(emb).all()
        assert model.neck(emb).shape == (3, model.neck_dim)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_gradients_reach_every_parameter(name):
    model = tiny(name).train()
    model.neck(model(torch.randn(4, 30, FEAT))).pow(2).sum().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_paper_size_models_run():
    x = torch.randn(2, 40, 30)
    assert build("xvector", 30).eval()(x).shape == (2, 512)
    emb = build("lstm_netvlad", 30).eval()(x)
    assert emb.shape == (2, 700)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)  # L2-normalised
    assert build("ecapa_tdnn", 80).eval()(torch.randn(2, 40, 80)).shape == (2, 192)


def test_xvector_embedding_is_segment6_affine_and_neck_is_segment7():
    model = build("xvector", FEAT, **TINY["xvector"]).eval()
    x = torch.randn(2, 50, FEAT)
    with torch.no_grad():
        stats = model.pool(model.frames(x.transpose(1, 2)))
        emb = model(x)
        assert torch.allclose(emb, model.segment6(stats), atol=1e-6)
        assert (emb < 0).any()  # before ReLU
        seg6 = model.segment6_norm(torch.relu(emb))
        expected = model.segment7_norm(torch.relu(model.segment7(seg6)))
        assert torch.allclose(model.neck(emb), expected, atol=1e-6)
    assert model.neck_dim == 32


def test_resnet_downsamples_frequency_and_time_by_eight():
    model = build("resnet34", 80, base_channels=4)
    assert model.pool.in_dim == 4 * 8 * 10  # 32 channels x 80 / 8 bins
    feats = torch.randn(1, 64, 80)
    maps = model.stages(model.stem(feats.transpose(1, 2).unsqueeze(1)))
    assert maps.shape == (1, 32, 10, 8)


def test_models_accept_any_pooling():
    for pooling in pooling_names():
        model = build("xvector", FEAT, channels=16, stats_channels=24, pooling=pooling).eval()
        assert model(torch.randn(2, 20, FEAT)).shape == (2, 512)


# --- pooling layers ----------------------------------------------------------------------------


def test_tap_and_tstp_known_values():
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    assert TAP(1)(x).tolist() == [[2.5]]
    out = TSTP(1)(x)
    assert out[0, 0].item() == pytest.approx(2.5)
    assert out[0, 1].item() == pytest.approx(math.sqrt(1.25))
    assert TAP(7).out_dim(7) == 7 and TSTP(7).out_dim(7) == 14


def test_tstp_is_finite_and_differentiable_for_constant_input():
    x = torch.ones(2, 3, 5, requires_grad=True)
    TSTP(3)(x).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("global_context", [True, False])
def test_astp_with_flat_attention_equals_statistics_pooling(global_context):
    pool = ASTP(6, bottleneck=4, global_context=global_context)
    with torch.no_grad():
        pool.attention_out.weight.zero_()
        pool.attention_out.bias.zero_()
    x = torch.randn(2, 6, 11)
    assert torch.allclose(pool(x), TSTP(6)(x), atol=1e-5)
    assert pool.out_dim(6) == 12
    expected = (3 * 6 if global_context else 6) * 4 + 4 + 4 * 6 + 6
    assert count(pool) == expected


def test_netvlad_uniform_assignment_known_value():
    pool = NetVLAD(4, clusters=3, final_l2=False)
    with torch.no_grad():
        pool.assignment.weight.zero_()
        pool.assignment.bias.zero_()
    x = torch.randn(2, 4, 9)
    out = pool(x).view(2, 3, 4)
    # uniform soft-assignment: V_k = (1/K) sum_t (v_t - c_k), then intra-normalised
    expected = torch.nn.functional.normalize(x.mean(dim=2).unsqueeze(1) - pool.centroids.unsqueeze(0), dim=-1)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2, 3), atol=1e-5)  # intra-normalisation


def test_netvlad_final_l2_and_sizes():
    pool = NetVLAD(8, clusters=5)
    out = pool(torch.randn(3, 8, 13))
    assert out.shape == (3, 40) and pool.out_dim(8) == 40
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert count(pool) == 8 * 5 + 5 + 5 * 8


def test_ghostvlad_drops_ghost_clusters():
    ghost = GhostVLAD(8, clusters=5, ghost_clusters=2, final_l2=False)
    assert ghost.out_dim(8) == 40 and ghost.assignment.out_features == 7
    assert count(ghost) == 8 * 7 + 7 + 5 * 8
    x = torch.randn(2, 8, 10)
    v = x.transpose(1, 2)
    # reference: softmax over all 7 clusters, keep the 5 real ones, residual sums, intra-norm
    assign = torch.softmax(v @ ghost.assignment.weight.T + ghost.assignment.bias, dim=-1)[..., :5]
    residuals = v.unsqueeze(2) - ghost.centroids.view(1, 1, 5, 8)  # (B, T, K, D)
    vlad = (assign.unsqueeze(-1) * residuals).sum(dim=1)
    expected = torch.nn.functional.normalize(vlad, dim=-1).reshape(2, 40)
    assert torch.allclose(ghost(x), expected, atol=1e-5)
    # the same parameters without ghosts (softmax over the 5 real clusters) give another result
    plain = NetVLAD(8, clusters=5, final_l2=False)
    with torch.no_grad():
        plain.assignment.weight.copy_(ghost.assignment.weight[:5])
        plain.assignment.bias.copy_(ghost.assignment.bias[:5])
        plain.centroids.copy_(ghost.centroids)
        ghost.assignment.bias[5:] = 3.0  # ghosts take most of the mass
    assert not torch.allclose(plain(x), ghost(x), atol=1e-3)


def test_pooling_names_are_case_insensitive():
    assert isinstance(build_pooling("tstp", 4), TSTP)
    assert isinstance(build_pooling("ghostvlad", 4, clusters=2), GhostVLAD)


# --- export --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_torchscript_matches_eager_at_two_lengths(name, tmp_path):
    model = tiny(name).eval()
    scripted = save_torchscript(model, tmp_path / "m.pt")
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    with torch.no_grad(), torch.jit.optimized_execution(False):  # skip the JIT's re-optimisation
        for frames in (17, 90):
            x = torch.randn(2, frames, FEAT)
            assert torch.allclose(loaded(x), model(x), atol=1e-5)
        emb = torch.randn(2, model.embed_dim)
        assert torch.allclose(scripted.neck(emb), model.neck(emb), atol=1e-5)


def _onnx_max_error(model, path, frames_list):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch, frames in frames_list:
        x = torch.randn(batch, frames, model.feat_dim)
        (out,) = session.run(None, {"feats": x.numpy()})
        with torch.no_grad():
            ref = model(x).numpy()
        assert out.shape == ref.shape
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst


def test_onnx_dynamo_export_matches_pytorch(tmp_path):
    """Recipe: torch.onnx.export(model, (feats,), path, dynamo=True,
    dynamic_shapes={"feats": {0: Dim("batch"), 1: Dim("frames", min=...)}}) with onnxscript."""
    model = tiny("xvector").eval()
    export_onnx(model, tmp_path / "x.onnx", example_frames=60)
    assert _onnx_max_error(model, tmp_path / "x.onnx", [(1, 15), (3, 77), (2, 400)]) < 1e-4


@pytest.mark.parametrize("name", ["lstm_netvlad", "lstm_avg", "ecapa_tdnn", "resnet34"])
def test_onnx_legacy_export_matches_pytorch(name, tmp_path):
    """LSTMs need the TorchScript-based exporter (dynamo=False): torch.export unrolls them."""
    model = tiny(name).eval()
    export_onnx(model, tmp_path / "m.onnx", example_frames=50, dynamo=False)
    assert _onnx_max_error(model, tmp_path / "m.onnx", [(1, 23), (3, 131)]) < 1e-4
