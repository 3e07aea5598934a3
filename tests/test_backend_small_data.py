"""Back-ends on small or degenerate training data: floors, caps and clear errors instead of scipy tracebacks,
and bit-for-bit today's results on well-conditioned data."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from voxflow.backend.calibration import LogisticCalibration, calibrate_scores
from voxflow.backend.lda import LDA
from voxflow.backend.plda import PLDA
from voxflow.backend.recipe import fit_backend, score_backend
from voxflow.data.manifests import write_embeddings
from voxflow.errors import VoxflowError
from voxflow.metrics.verification import eer

REPO = Path(__file__).resolve().parents[1]


def all_pairs(ids, spk):
    i, j = np.triu_indices(len(ids), 1)
    ids = np.asarray(ids, dtype=object)
    return pd.DataFrame({"enroll_id": ids[i], "test_id": ids[j], "label": (spk[i] == spk[j]).astype(np.int64)})


def scores_of(cfg, x, spk, xt, st, where=""):
    arrays = fit_backend(cfg, x, spk, where=where)
    ids = [f"t{k}" for k in range(len(xt))]
    trials = all_pairs(ids, st)
    out = score_backend(arrays, trials, ids, xt, "b")
    return arrays, out.score.to_numpy(), out.label.to_numpy()


def warnings_of(caplog):
    return " | ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


# ---------------------------------------------------------------- well-conditioned: today's numbers


def well_conditioned():
    rng = np.random.default_rng(20240612)
    dim, n_spk, per = 24, 30, 8
    a = rng.standard_normal((dim, dim))
    spk_means = rng.standard_normal((n_spk, dim)) @ a / np.sqrt(dim) * 2
    spk = np.repeat(np.arange(n_spk), per)
    x = (spk_means[spk] + rng.standard_normal((len(spk), dim)) + 0.5).astype(np.float32)
    ids = [f"u{i}" for i in range(len(x))]
    pairs = np.array([[0, 1], [0, 9], [17, 18], [40, 200], [100, 101], [239, 3]])
    trials = pd.DataFrame({"enroll_id": [ids[i] for i in pairs[:, 0]], "test_id": [ids[j] for j in pairs[:, 1]],
                           "label": (spk[pairs[:, 0]] == spk[pairs[:, 1]]).astype(np.int64)})
    return x, [f"s{k}" for k in spk], ids, trials


# computed with the back-ends before the small-data floors were added (commit a673f2a)
REFERENCE = {
    "plda16": [13.598969787326677, -53.641118395080184, -0.032711269282426514, -28.621868595846497,
               9.329730576678202, -33.17785741109091],
    "plda": [14.000416698781834, -63.1852349590759, -0.608481780340508, -28.337215594547583, 9.199605721018393,
             -38.1752729204389],
    "plda16_asnorm": [2.686463184627254, -3.492420760902932, 1.6451477008569098, -1.0766600438052751,
                      2.330244643569052, -1.7051786344884006],
    "cosine_snorm": [2.629312488374464, -0.7455969962567397, 1.9280554830469878, 0.40238121966271945,
                     2.672651621341415, -0.34346245509244006],
    "calibration": [1.6392346127641437, -1.4290517679437862],
    "lda5": [[-10.627319555360152, 8.83352077272305, 2.4269932462958885, 4.215448768087486, 1.2157320997591916],
             [0.20509764123789215, -0.9215734628677821, 0.5292410598287138, -2.3722339968723007, 2.484586487115733]],
    "plda_bare": [15.291658904970632, 0.11253834008592634, -25.403172130169146],
}


def test_well_conditioned_data_gives_todays_results(caplog):
    x, spk, ids, trials = well_conditioned()
    configs = {"plda16": {"type": "plda", "lda_dim": 16}, "plda": {"type": "plda", "lda_dim": None},
               "plda16_asnorm": {"type": "plda", "lda_dim": 16, "norm": "asnorm", "top_n": 10},
               "cosine_snorm": {"type": "cosine", "norm": "snorm"}}
    with caplog.at_level(logging.WARNING):
        for name, cfg in configs.items():
            got = score_backend(fit_backend(cfg, x, spk), trials, ids, x, "b").score.to_numpy()
            np.testing.assert_allclose(got, REFERENCE[name], rtol=1e-12, atol=0, err_msg=name)
        np.testing.assert_allclose(LDA(5).fit(x, spk).transform(x[[0, 100]]), REFERENCE["lda5"], rtol=1e-12)
        llr = PLDA(n_iter=5).fit(x.astype(np.float64), spk).score(x[[0, 17, 40]], x[[1, 18, 200]])
        np.testing.assert_allclose(llr, REFERENCE["plda_bare"], rtol=1e-12)
        rng = np.random.default_rng(5)
        s = np.r_[rng.normal(2, 1, 50), rng.normal(0, 1, 200)]
        cal = LogisticCalibration(0.01).fit(s, np.r_[np.ones(50, bool), np.zeros(200, bool)])
        np.testing.assert_allclose(cal.weights, REFERENCE["calibration"], rtol=1e-12)
    assert warnings_of(caplog) == ""  # nothing floored, capped or smoothed


# ---------------------------------------------------------------- the user's small corpus


class LowRankModel:
    """Two-covariance model in 512-d with known structure: speakers in a 40-d subspace, sessions in a 20-d one,
    isotropic noise, a common offset."""

    def __init__(self, rng, dim=512, speaker_scale=0.2):
        self.rng = rng
        self.speakers = rng.standard_normal((40, dim)) * speaker_scale
        self.sessions = rng.standard_normal((20, dim)) * 0.7
        self.mu = rng.standard_normal(dim) * 2

    def sample(self, counts):
        spk = np.repeat(np.arange(len(counts)), counts)
        y = self.rng.standard_normal((len(counts), len(self.speakers))) @ self.speakers
        ses = self.rng.standard_normal((len(spk), len(self.sessions))) @ self.sessions
        x = self.mu + y[spk] + ses + self.rng.standard_normal((len(spk), len(self.mu)))
        return x.astype(np.float32), spk


@pytest.fixture(scope="module")
def small_corpus():
    rng = np.random.default_rng(0)
    model = LowRankModel(rng)
    x, spk = model.sample(rng.integers(3, 9, 20))  # 20 speakers x 3-8 utterances: N ~ 110 < 512
    xt, st = model.sample(np.full(30, 4))  # held-out speakers
    return x, spk, xt, st


def test_small_full_rank_corpus_plda_fits_and_separates_held_out_speakers(small_corpus, caplog):
    x, spk, xt, st = small_corpus
    with caplog.at_level(logging.WARNING):
        arrays, plda, labels = scores_of({"type": "plda", "lda_dim": 128}, x, spk, xt, st)
    log = warnings_of(caplog)
    n_within = len(x) - 20
    assert int(arrays["plda/lda_dim"]) == 19 and "LDA dimension capped at 19 (20 training speakers" in log
    assert f"{512 - n_within} of 512 eigenvalues below 1e-06" in log and f"restricted to the {n_within}-d" in log
    assert np.isfinite(plda).all() and np.abs(plda).max() < 100
    _, cosine, _ = scores_of({"type": "cosine", "mean_subtraction": True}, x, spk, xt, st)
    plda_eer, cos_eer = eer(plda, labels)[0], eer(cosine, labels)[0]
    assert plda_eer < cos_eer + 0.03 and plda_eer < 0.35  # chance is 0.5


def test_plda_without_lda_on_rank_deficient_data_floors_eigenvalues(small_corpus, caplog):
    x, spk, xt, st = small_corpus
    with caplog.at_level(logging.WARNING):
        _, scores, labels = scores_of({"type": "plda", "lda_dim": None}, x, spk, xt, st)
    assert np.isfinite(scores).all() and eer(scores, labels)[0] < 0.35
    assert "PLDA: raised up to" in warnings_of(caplog) and "to 1e-06 x the largest" in warnings_of(caplog)


@pytest.mark.parametrize("kind", ["constant_dims", "identical_up_to_noise"])
@pytest.mark.parametrize("lda_dim", [128, None])
def test_collapsed_network_embeddings_score_finite(kind, lda_dim, caplog):
    rng = np.random.default_rng(1)
    counts = rng.integers(3, 9, 20)
    spk = np.repeat(np.arange(20), counts)
    n = 2 * len(spk)  # training and test halves
    if kind == "constant_dims":  # 224 of 256 dimensions constant (dead units), the rest informative
        x = np.full((n, 256), 0.25, np.float32)
        x[:, :32] = rng.standard_normal((40, 32))[np.r_[spk, spk + 20]] + rng.standard_normal((n, 32))
    else:  # every embedding the same up to noise 1e-4 (an untrained or collapsed network)
        x = (1 + 1e-4 * rng.standard_normal((n, 256))).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        _, scores, labels = scores_of({"type": "plda", "lda_dim": lda_dim}, x[: len(spk)], spk, x[len(spk):], spk)
    assert np.isfinite(scores).all()
    assert "restricted" in warnings_of(caplog) if lda_dim else "PLDA: raised" in warnings_of(caplog)
    if kind == "constant_dims":
        assert eer(scores, labels)[0] < 0.2


def test_singleton_speakers_cap_lda_at_within_rank(caplog):
    # 36 speakers with one utterance, 4 with two: the within-speaker covariance has rank 4
    rng = np.random.default_rng(2)
    spk = np.r_[np.arange(40), np.arange(4)]
    x = (rng.standard_normal((40, 64))[spk] + 0.3 * rng.standard_normal((len(spk), 64))).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        arrays, scores, _ = scores_of({"type": "plda", "lda_dim": 128}, x, spk, x, spk)
    assert int(arrays["plda/lda_dim"]) == 4 and np.isfinite(scores).all()
    log = warnings_of(caplog)
    assert "capped at 39 (40 training speakers" in log and "LDA dimension capped at 4 (was 39)" in log
    assert "44 utterances of 40 speakers (36 with a single utterance), 64-d embeddings of rank 43" in log


def test_dimension_above_utterances_restricts_lda_to_within_rank(caplog):
    rng = np.random.default_rng(3)
    spk = np.repeat(np.arange(10), 3)
    x = rng.standard_normal((30, 64)).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        arrays, scores, _ = scores_of({"type": "plda", "lda_dim": 5}, x, spk, x, spk)
    assert int(arrays["plda/lda_dim"]) == 5 and np.isfinite(scores).all()
    assert "restricted to the 20-d subspace" in warnings_of(caplog)  # N - K = 20 < 64


# ---------------------------------------------------------------- hopeless data: one clear error


@pytest.mark.parametrize("case, expected", [
    ("one_utterance_each", ["every speaker has a single utterance", "20 utterances of 20 speakers (20 with a "
                            "single utterance), 16-d embeddings of rank 16", "use type: cosine"]),
    ("one_speaker", ["needs at least 2 speakers", "8 utterances of 1 speakers", "use type: cosine"]),
    ("identical", ["identical embeddings for every utterance", "rank 0", "check the model"]),
    ("identical_within", ["each speaker's embeddings are identical", "40 utterances of 20 speakers"]),
])
def test_hopeless_training_data_names_corpus_counts_and_remedy(case, expected):
    rng = np.random.default_rng(4)
    spk = {"one_utterance_each": np.arange(20), "one_speaker": np.zeros(8, int)}.get(case, np.repeat(np.arange(20), 2))
    x = rng.standard_normal((len(spk), 16))
    if case == "identical":
        x[:] = x[0]
    elif case == "identical_within":
        x = rng.standard_normal((20, 16))[spk]
    where = "corpus 'tiny' (exp/x/embeddings/tiny.parquet)"
    for lda_dim in (4, None):
        with pytest.raises(VoxflowError) as exc:
            fit_backend({"type": "plda", "lda_dim": lda_dim}, x, spk, where=where)
        message = str(exc.value)
        assert message.startswith(where + ": ") and all(e in message for e in expected), message
    with pytest.raises(VoxflowError, match="PLDA"):
        PLDA().fit(x, spk)


def test_cohort_smaller_than_top_n_and_too_small(caplog):
    rng = np.random.default_rng(5)
    spk = np.repeat(np.arange(6), 3)
    x = (rng.standard_normal((6, 8))[spk] + 0.5 * rng.standard_normal((18, 8))).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        _, asnorm, _ = scores_of({"type": "cosine", "norm": "asnorm", "top_n": 300}, x, spk, x, spk)
    assert "has 6 embeddings, fewer than top_n=300: AS-Norm uses all 6" in warnings_of(caplog)
    _, snorm, _ = scores_of({"type": "cosine", "norm": "snorm"}, x, spk, x, spk)
    np.testing.assert_array_equal(asnorm, snorm)
    with pytest.raises(VoxflowError) as exc:
        fit_backend({"type": "cosine", "norm": "asnorm"}, x[:3], spk[:3], where="corpus 'one'")
    assert "corpus 'one': asnorm cohort" in str(exc.value) and "needs at least 2 embeddings, got 1" in str(exc.value)
    assert "norm: none" in str(exc.value)
    with pytest.raises(VoxflowError, match="identical"):
        fit_backend({"type": "cosine", "norm": "snorm"}, np.ones((4, 8)), [0, 0, 1, 1])


def test_zero_norm_embeddings_score_finite_with_cosine_and_asnorm():
    rng = np.random.default_rng(6)
    spk = np.repeat(np.arange(5), 4)
    x = rng.standard_normal((20, 8)).astype(np.float32)
    test = x.copy()
    test[[0, 7]] = 0.0
    for cfg in ({"type": "cosine"}, {"type": "cosine", "norm": "asnorm", "top_n": 3}, {"type": "plda", "lda_dim": 4}):
        _, scores, _ = scores_of(cfg, x, spk, test, spk)
        assert np.isfinite(scores).all(), cfg
    _, scores, _ = scores_of({"type": "cosine"}, x, spk, test, spk)
    assert scores[0] == 0.0  # trial (t0, t1): a zero embedding scores 0


# ---------------------------------------------------------------- calibration


def cal_table(scores, labels):
    n = len(scores)
    return pd.DataFrame({"enroll_id": [f"e{k}" for k in range(n)], "test_id": [f"t{k}" for k in range(n)],
                         "score": np.asarray(scores, float), "label": np.asarray(labels, int), "backend": "b"})


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0, 0]])
def test_calibration_with_one_class_only_is_a_clear_error(labels):
    table = cal_table(np.arange(len(labels)), labels)
    with pytest.raises(VoxflowError) as exc:
        calibrate_scores(table, table, where="exp/x/scores/cal/plda.parquet")
    message = str(exc.value)
    assert message.startswith("exp/x/scores/cal/plda.parquet: calibration trials")
    assert f"got {sum(labels)} target and {len(labels) - sum(labels)} nontarget" in message and "2 speakers" in message


@pytest.mark.parametrize("p_target", [0.5, 0.01])
def test_calibration_on_separable_and_few_trials_stays_finite_and_bounded(p_target, caplog):
    rng = np.random.default_rng(7)
    for s, y in (([1.0, 0.0], [1, 0]), ([0.3, 0.1, 0.2], [1, 0, 1]),
                 (np.r_[rng.uniform(1, 2, 10), rng.uniform(-2, 0.5, 40)], np.r_[np.ones(10), np.zeros(40)])):
        with caplog.at_level(logging.WARNING):
            cal = LogisticCalibration(p_target).fit(s, y)
        llr = cal.transform(s)
        assert np.isfinite(cal.weights).all() and np.abs(llr).max() < 10
        assert (llr[np.asarray(y) == 1].min() > llr[np.asarray(y) == 0].max()) and "separate all" in caplog.text
    # one trial each side: LLR +- log 2 (Platt: 2/3 of the weight keeps its label), whatever the prior
    np.testing.assert_allclose(LogisticCalibration(p_target).fit([1.0, 0.0], [1, 0]).transform([1.0, 0.0]),
                               [np.log(2), -np.log(2)], atol=1e-6)


def test_calibration_of_constant_scores_is_finite_and_warned(caplog):
    with caplog.at_level(logging.WARNING):
        cal = LogisticCalibration(0.01).fit(np.full(20, 0.7), np.r_[np.ones(5), np.zeros(15)])
    assert np.isfinite(cal.weights).all() and cal.weights[0] == 0
    np.testing.assert_allclose(cal.transform([0.7, -3.0]), 0.0, atol=1e-9)
    assert "constant (0.7 on all 20 trials)" in caplog.text


# ---------------------------------------------------------------- the DAG's script


def run_fit(path, cfg, out):
    return subprocess.run([sys.executable, str(REPO / "scripts/backend.py"), "fit", "--embeddings", str(path),
                           "--config", cfg, "--out", str(out)], capture_output=True, text=True)


def test_backend_script_on_rank_deficient_and_hopeless_corpora(tmp_path):
    rng = np.random.default_rng(8)
    spk = np.repeat(np.arange(12), rng.integers(2, 6, 12))
    x = np.zeros((len(spk), 256), np.float32)  # 256-d, rank < 48, most dimensions constant
    x[:, :48] = rng.standard_normal((12, 48))[spk] + rng.standard_normal((len(spk), 48))
    ids = [f"s{s}/u{k}" for k, s in enumerate(spk)]
    write_embeddings(ids, x, "m", tmp_path / "small.parquet", spk_id=[f"s{s}" for s in spk])
    proc = run_fit(tmp_path / "small.parquet", '{"type":"plda","lda_dim":128}', tmp_path / "m.npz")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.npz").is_file() and "LDA dimension capped at 11" in proc.stderr
    write_embeddings(ids[:12], x[:12], "m", tmp_path / "singles.parquet", spk_id=[f"s{k}" for k in range(12)])
    proc = run_fit(tmp_path / "singles.parquet", '{"type":"plda","lda_dim":128}', tmp_path / "bad.npz")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: corpus 'singles' ({tmp_path / 'singles.parquet'}): " in proc.stderr
    assert "every speaker has a single utterance" in proc.stderr and "use type: cosine" in proc.stderr
    assert not (tmp_path / "bad.npz").exists()
