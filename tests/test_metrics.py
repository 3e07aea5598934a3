import json

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_curve

from voxflow.errors import VoxflowError
from voxflow.metrics.det import det_points, plot_det
from voxflow.metrics.verification import actual_dcf, cllr, det_curve, eer, min_dcf, summarize


def brute_points(scores, labels):
    """FA/miss rates by direct counting at each distinct score and at +inf (accept when score >= t)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    thresholds = np.r_[np.unique(scores), np.inf]
    p_fa = np.array([(scores[~labels] >= t).mean() for t in thresholds])
    p_miss = np.array([(scores[labels] < t).mean() for t in thresholds])
    return thresholds, p_fa, p_miss


def brute_eer(scores, labels):
    thresholds, p_fa, p_miss = brute_points(scores, labels)
    for k in range(len(thresholds)):
        if p_miss[k] == p_fa[k]:
            return p_miss[k]
        if p_miss[k] > p_fa[k]:  # crossing in (k-1, k): solve on the straight segment
            x0, x1, y0, y1 = p_fa[k - 1], p_fa[k], p_miss[k - 1], p_miss[k]
            a = (x0 - y0) / ((y1 - y0) - (x1 - x0))
            return y0 + a * (y1 - y0)
    raise AssertionError("no crossing")


def random_system(rng, n, p_tgt=0.3, decimals=None):
    labels = rng.random(n) < p_tgt
    labels[:2] = [True, False]
    scores = rng.normal(size=n) + 1.5 * labels
    if decimals is not None:
        scores = np.round(scores, decimals)  # many ties, also across classes
    return scores, labels


@pytest.mark.parametrize("decimals", [None, 1])
def test_det_curve_matches_counting(decimals):
    rng = np.random.default_rng(0)
    scores, labels = random_system(rng, 500, decimals=decimals)
    p_fa, p_miss, thr = det_curve(scores, labels.astype(int))
    ref_thr, ref_fa, ref_miss = brute_points(scores, labels)
    np.testing.assert_array_equal(thr, ref_thr)
    np.testing.assert_allclose(p_fa, ref_fa, rtol=0, atol=1e-15)
    np.testing.assert_allclose(p_miss, ref_miss, rtol=0, atol=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_brute_force_and_sklearn_points(seed):
    rng = np.random.default_rng(seed)
    scores, labels = random_system(rng, 300 + 100 * seed, decimals=None if seed % 2 else 1)
    e, _ = eer(scores, labels)
    assert e == pytest.approx(brute_eer(scores, labels), abs=1e-12)
    # sklearn's ROC points (same operating points) interpolated the same way
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    k = np.flatnonzero(fnr <= fpr)[0]  # roc_curve runs from reject-all to accept-all
    a = (fnr[k - 1] - fpr[k - 1]) / ((fpr[k] - fpr[k - 1]) - (fnr[k] - fnr[k - 1]))
    assert e == pytest.approx(fpr[k - 1] + a * (fpr[k] - fpr[k - 1]), abs=1e-12)


def test_eer_known_answers():
    # exact crossing at an operating point: threshold 0.6 gives miss = fa = 1/3
    assert eer([0.9, 0.6, 0.4, 0.7, 0.3, 0.1], [1, 1, 1, 0, 0, 0]) == pytest.approx((1 / 3, 0.6))
    # crossing inside a segment: fa 2/3 -> 1/3 at miss 1/2, halfway between thresholds 2.5 and 3
    assert eer([2, 3, 1, 2.5, 4], [1, 1, 0, 0, 0]) == pytest.approx((0.5, 2.75))
    # perfect separation
    assert eer([3, 4, 1, 2], [1, 1, 0, 0])[0] == 0.0
    # completely inverted scores
    assert eer([1, 2, 3, 4], [1, 1, 0, 0])[0] == pytest.approx(1.0)


def test_eer_ties_are_one_step_independent_of_order():
    # targets [1, 1], nontargets [1, 0]: points (fa, miss) = (1, 0), (1/2, 0), (0, 1) -> EER 1/3
    for scores, labels in [([1, 1, 1, 0], [1, 1, 0, 0]), ([1, 0, 1, 1], [0, 0, 1, 1]), ([0, 1, 1, 1], [0, 0, 1, 1])]:
        e, t = eer(scores, labels)
        assert e == pytest.approx(1 / 3)
        assert t == 1.0


def brute_min_dcf(scores, labels, p, c_miss=1.0, c_fa=1.0):
    _, p_fa, p_miss = brute_points(scores, labels)
    cost = c_miss * p * p_miss + c_fa * (1 - p) * p_fa
    return cost.min() / min(c_miss * p, c_fa * (1 - p))


@pytest.mark.parametrize("p_target, c_miss, c_fa", [(0.01, 1, 1), (0.001, 1, 1), (0.05, 10, 1), (0.5, 1, 1)])
@pytest.mark.parametrize("decimals", [None, 1])
def test_min_dcf_matches_brute_force_and_is_reached(p_target, c_miss, c_fa, decimals):
    rng = np.random.default_rng(3)
    scores, labels = random_system(rng, 800, decimals=decimals)
    value, threshold = min_dcf(scores, labels, p_target, c_miss, c_fa)
    assert value == pytest.approx(brute_min_dcf(scores, labels, p_target, c_miss, c_fa), abs=1e-12)
    assert actual_dcf(scores, labels, threshold, p_target, c_miss, c_fa) == pytest.approx(value, abs=1e-12)
    assert 0.0 <= value <= 1.0


def test_min_dcf_reject_all_threshold_lies_above_every_score():
    # one target scored below every nontarget: the cheapest choice at p=0.001 is rejecting all
    scores = [0.0, 1.0, 2.0]
    value, threshold = min_dcf(scores, [1, 0, 0], 0.001)
    assert value == pytest.approx(1.0)
    assert threshold > 2.0
    assert actual_dcf(scores, [1, 0, 0], threshold, 0.001) == pytest.approx(1.0)


def test_actual_dcf_hand_computed():
    # threshold 0.5: targets [0.9, 0.4] -> miss 1/2; nontargets [0.6, 0.1, 0.2, 0.3] -> fa 1/4
    scores = [0.9, 0.4, 0.6, 0.1, 0.2, 0.3]
    labels = [1, 1, 0, 0, 0, 0]
    expected = (0.1 * 0.5 + 0.9 * 0.25) / 0.1
    assert actual_dcf(scores, labels, 0.5, 0.1) == pytest.approx(expected)
    # score == threshold is accepted
    assert actual_dcf(scores, labels, 0.4, 0.1) == pytest.approx((0.9 * 0.25) / 0.1)


def test_cllr_known_values():
    assert cllr([0.0, 0.0, 0.0], [1, 0, 0]) == pytest.approx(1.0)
    assert cllr([np.log(3), -np.log(3)], [1, 0]) == pytest.approx(np.log2(4 / 3))
    assert cllr([50.0, -50.0], [1, 0]) < 1e-20
    # wrong-sign confident scores cost much more than 1 bit
    assert cllr([-5.0, 5.0], [1, 0]) == pytest.approx(np.log2(1 + np.exp(5)))


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([1.0, 2.0], [1, 1], "both target and nontarget"),
        ([1.0, 2.0], [0, 0], "both target and nontarget"),
        ([1.0, 2.0, 3.0], [1, 0], "differ in length"),
        ([1.0, np.nan], [1, 0], "finite"),
        ([1.0, np.inf], [1, 0], "finite"),
        ([1.0, 2.0], [1, 2], "0/1"),
        ([[1.0, 2.0]], [[1, 0]], "1-D"),
    ],
)
def test_validation_errors(scores, labels, match):
    for fn in (eer, det_curve, summarize, cllr, lambda s, lab: min_dcf(s, lab, 0.01)):
        with pytest.raises(VoxflowError, match=match):
            fn(scores, labels)


def test_bad_costs_rejected():
    with pytest.raises(VoxflowError, match="p_target"):
        min_dcf([1, 0], [1, 0], 1.5)
    with pytest.raises(VoxflowError, match="positive"):
        actual_dcf([1, 0], [1, 0], 0.5, 0.01, c_miss=0)


def test_summarize_is_json_serialisable_and_consistent():
    rng = np.random.default_rng(7)
    scores, labels = random_system(rng, 2000)
    out = summarize(scores, labels)
    assert set(out) == {"eer", "eer_threshold", "min_dcf_0.01", "min_dcf_0.001", "n_target", "n_nontarget"}
    assert json.loads(json.dumps(out)) == out
    assert (out["eer"], out["eer_threshold"]) == eer(scores, labels)
    assert out["min_dcf_0.01"] == min_dcf(scores, labels, 0.01)[0]
    assert out["min_dcf_0.001"] == min_dcf(scores, labels, 0.001)[0]
    assert out["n_target"] == int(labels.sum()) and out["n_nontarget"] == int((~labels).sum())
    assert isinstance(out["n_target"], int) and isinstance(out["eer"], float)


def test_gaussian_eer_matches_theory():
    # targets N(2, 1) vs nontargets N(0, 1): EER = Phi(-1) = 0.1587
    rng = np.random.default_rng(11)
    n = 400_000
    labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    scores = np.r_[rng.normal(2, 1, n), rng.normal(0, 1, n)]
    e, t = eer(scores, labels)
    assert e == pytest.approx(norm.cdf(-1.0), abs=2e-3)
    assert t == pytest.approx(1.0, abs=0.02)


def test_det_points_are_probit_rates(tmp_path):
    rng = np.random.default_rng(5)
    scores, labels = random_system(rng, 3000)
    x, y, e = det_points(scores, labels)
    p_fa, p_miss, _ = det_curve(scores, labels)
    inside = (x > -4) & (x < 0.9) & (y > -4) & (y < 0.9)  # away from the clipping beyond the axes
    # every plotted interior point is an operating point of the system
    a, b = norm.cdf(x[inside]), norm.cdf(y[inside])
    dist = np.abs(a[:, None] - p_fa[None, :]) + np.abs(b[:, None] - p_miss[None, :])
    assert inside.sum() > 100 and dist.min(axis=1).max() < 1e-9
    assert e == eer(scores, labels)[0]


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<svg")])
def test_plot_det_writes_file(tmp_path, suffix, magic):
    rng = np.random.default_rng(2)
    systems = {"a": random_system(rng, 2000), "b": random_system(rng, 1000, decimals=1)}
    path = tmp_path / "plots" / f"det{suffix}"
    plot_det(systems, path, title="test")
    data = path.read_bytes()
    assert magic in data[:400]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_plot_det_rejects_bad_suffix_and_bad_system(tmp_path):
    rng = np.random.default_rng(2)
    with pytest.raises(VoxflowError, match="png or .svg"):
        plot_det({"a": random_system(rng, 100)}, tmp_path / "det.jpg")
    with pytest.raises(VoxflowError, match="'bad'"):
        plot_det({"bad": ([1.0, 2.0], [1, 1])}, tmp_path / "det.png")
    assert list(tmp_path.iterdir()) == []


def test_large_input_is_fast():
    import time

    rng = np.random.default_rng(0)
    scores, labels = random_system(rng, 2_000_000, p_tgt=0.01)
    t0 = time.perf_counter()
    summarize(scores, labels)
    assert time.perf_counter() - t0 < 5.0  # O(N log N): ~0.3 s here; generous for a loaded machine
