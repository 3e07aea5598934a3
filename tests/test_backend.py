import numpy as np
import pandas as pd
import pytest

from voxflow.backend import pairs
from voxflow.backend.cosine import score_trials
from voxflow.data.manifests import read_table, write_table
from voxflow.errors import VoxflowError


def make_embeddings(rng, n=60, dim=16):
    ids = [f"spk{i % 7}/utt{i:03d}" for i in range(n)]
    return ids, rng.normal(size=(n, dim)).astype(np.float32)


def make_trials(rng, ids, n):
    a = rng.integers(0, len(ids), n)
    b = rng.integers(0, len(ids), n)
    ids = np.asarray(ids, dtype=object)
    return pd.DataFrame({"enroll_id": ids[a], "test_id": ids[b], "label": rng.integers(0, 2, n)}), a, b


def naive_cosine(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(x @ y / np.sqrt((x @ x) * (y @ y)))


# ---------------------------------------------------------------- cosine


@pytest.mark.parametrize("with_mean", [False, True])
def test_cosine_matches_per_trial_loop(with_mean):
    rng = np.random.default_rng(0)
    ids, emb = make_embeddings(rng)
    trials, a, b = make_trials(rng, ids, 500)
    mean = emb.mean(axis=0) + 0.3 if with_mean else None
    out = score_trials(trials, ids, emb, mean=mean, backend_name="cos")
    centred = emb - (mean if with_mean else 0)
    expected = [naive_cosine(centred[i], centred[j]) for i, j in zip(a, b)]
    np.testing.assert_allclose(out["score"].to_numpy(), expected, atol=1e-6, rtol=0)
    assert list(out.columns) == ["enroll_id", "test_id", "score", "label", "backend"]
    assert out["label"].tolist() == trials["label"].tolist()
    assert (out["backend"] == "cos").all()
    assert out["enroll_id"].tolist() == trials["enroll_id"].tolist()


def test_cosine_chunked_and_threaded_path(monkeypatch):
    monkeypatch.setattr(pairs, "CHUNK", 7)  # many chunks, several per worker thread
    rng = np.random.default_rng(1)
    ids, emb = make_embeddings(rng, n=30, dim=5)
    trials, a, b = make_trials(rng, ids, 101)
    out = score_trials(trials, ids, emb)
    expected = [naive_cosine(emb[i], emb[j]) for i, j in zip(a, b)]
    np.testing.assert_allclose(out["score"].to_numpy(), expected, atol=1e-6, rtol=0)


def test_cosine_known_values_and_scores_table(tmp_path):
    ids = ["a", "b", "c"]
    emb = np.array([[1, 0], [1, 1], [0, -2]], np.float32)
    trials = pd.DataFrame({"enroll_id": ["a", "a", "b", "c"], "test_id": ["b", "c", "b", "a"]})
    out = score_trials(trials, ids, emb)
    np.testing.assert_allclose(out["score"], [np.sqrt(0.5), 0.0, 1.0, 0.0], atol=1e-7)
    assert out["label"].tolist() == [-1] * 4  # no labels given
    write_table(out, tmp_path / "scores.parquet", "scores")
    assert read_table(tmp_path / "scores.parquet", "scores")["score"].tolist() == out["score"].tolist()


def test_cosine_missing_and_duplicate_ids():
    ids = ["a", "b"]
    emb = np.eye(2, dtype=np.float32)
    trials = pd.DataFrame({"enroll_id": ["a", "x", "x", "y"], "test_id": ["b", "a", "b", "a"]})
    with pytest.raises(VoxflowError) as exc:
        score_trials(trials, ids, emb)
    assert "2 enroll id(s)" in str(exc.value) and "'x'" in str(exc.value) and "3 trials" in str(exc.value)
    with pytest.raises(VoxflowError, match="'zz'"):
        score_trials(pd.DataFrame({"enroll_id": ["a"], "test_id": ["zz"]}), ids, emb)
    with pytest.raises(VoxflowError, match="not unique"):
        score_trials(trials, ["a", "a"], emb)
    with pytest.raises(VoxflowError, match="embedding rows"):
        score_trials(trials, ["a", "b", "c"], emb)


# ---------------------------------------------------------------- PLDA

from scipy.stats import multivariate_normal, spearmanr  # noqa: E402

from voxflow.backend.calibration import LogisticCalibration  # noqa: E402
from voxflow.backend.cosine import cosine_space  # noqa: E402
from voxflow.backend.lda import LDA, class_sums, length_normalize  # noqa: E402
from voxflow.backend.norm import as_norm, cohort_stats, score_trials_normalized, speaker_means  # noqa: E402
from voxflow.backend.plda import PLDA, PLDABackend  # noqa: E402
from voxflow.metrics.verification import cllr, eer  # noqa: E402


class TwoCovModel:
    """A known two-covariance model to sample from: anisotropic within-speaker noise, offset mean."""

    def __init__(self, rng, dim=10):
        a = rng.normal(size=(dim, dim))
        self.between = a @ a.T / dim * 2
        c = rng.normal(size=(dim, dim)) * np.r_[np.full(3, 3.0), np.full(dim - 3, 0.3)][:, None]
        self.within = c @ c.T / dim + 0.05 * np.eye(dim)
        self.mu = rng.normal(size=dim)
        self.rng = rng

    def sample(self, n_spk, per_spk):
        y = self.rng.multivariate_normal(self.mu, self.between, size=n_spk)
        noise = self.rng.multivariate_normal(np.zeros(len(self.mu)), self.within, size=n_spk * per_spk)
        return np.repeat(y, per_spk, axis=0) + noise, np.repeat(np.arange(n_spk), per_spk)

    def brute_llr(self, x1, x2):
        t = self.between + self.within
        joint = np.block([[t, self.between], [self.between, t]])
        return (multivariate_normal(np.r_[self.mu, self.mu], joint).logpdf(np.r_[x1, x2])
                - multivariate_normal(self.mu, t).logpdf(x1) - multivariate_normal(self.mu, t).logpdf(x2))


def random_pairs(rng, labels, n):
    i, j = rng.integers(0, len(labels), n), rng.integers(0, len(labels), n)
    return i, j, labels[i] == labels[j]


def test_plda_closed_form_llr_equals_gaussian_likelihood_ratio():
    rng = np.random.default_rng(0)
    model = TwoCovModel(rng, dim=6)
    plda = PLDA.from_params(model.mu, model.between, model.within)
    x, _ = model.sample(5, 2)
    for a, b in [(0, 1), (0, 5), (3, 3), (7, 2)]:
        assert plda.score(x[a], x[b]) == pytest.approx(model.brute_llr(x[a], x[b]), abs=1e-9)
    mat = plda.score_matrix(x[:4], x[4:])
    assert mat[1, 2] == pytest.approx(model.brute_llr(x[1], x[6]), abs=1e-5)  # float32 space
    np.testing.assert_allclose(plda.score(x[:3], x[3:6]), [model.brute_llr(x[k], x[k + 3]) for k in range(3)])


def test_plda_log_likelihood_matches_stacked_gaussian_and_em_increases_it():
    rng = np.random.default_rng(1)
    model = TwoCovModel(rng, dim=4)
    x, spk = model.sample(3, 3)
    plda = PLDA.from_params(model.mu, model.between, model.within)
    brute = 0.0
    for s in range(3):  # one speaker's 3 embeddings are jointly Gaussian: I (x) W + 11^T (x) B
        cov = np.kron(np.eye(3), model.within) + np.kron(np.ones((3, 3)), model.between)
        brute += multivariate_normal(np.tile(model.mu, 3), cov).logpdf(x[spk == s].reshape(-1))
    assert plda.log_likelihood(x, spk) == pytest.approx(brute, rel=1e-10)

    x, spk = model.sample(200, 5)
    fitted = PLDA(n_iter=0).fit(x, spk)
    counts = np.bincount(spk)
    history = [fitted.log_likelihood(x, spk)]
    for _ in range(8):
        fitted._em_step(counts, class_sums(x, spk, len(counts)), x.T @ x, len(x))
        history.append(fitted.log_likelihood(x, spk))
    assert np.all(np.diff(history) > -1e-6)
    assert history[-1] > history[0]


def test_plda_trained_on_model_samples_ranks_like_true_llr_and_beats_cosine():
    rng = np.random.default_rng(2)
    model = TwoCovModel(rng)
    x, spk = model.sample(800, 8)
    plda = PLDA(n_iter=20).fit(x, spk)
    assert np.linalg.norm(plda.within - model.within) < 0.05 * np.linalg.norm(model.within)
    assert np.linalg.norm(plda.between - model.between) < 0.15 * np.linalg.norm(model.between)  # 800 speakers
    xt, st = model.sample(300, 4)
    i, j, same = random_pairs(rng, st, 20_000)
    llr = plda.score(xt[i], xt[j])
    true = PLDA.from_params(model.mu, model.between, model.within).score(xt[i], xt[j])
    assert spearmanr(llr, true).statistic > 0.99
    ids = [str(k) for k in range(len(xt))]
    trials = pd.DataFrame({"enroll_id": [ids[k] for k in i], "test_id": [ids[k] for k in j], "label": same})
    cos = score_trials(trials, ids, xt)["score"].to_numpy()
    assert eer(llr, same)[0] < eer(cos, same)[0] - 0.05


def test_lda_separates_classes_and_whitens_within():
    rng = np.random.default_rng(3)
    model = TwoCovModel(rng, dim=8)
    x, spk = model.sample(100, 20)
    lda = LDA(3).fit(x, spk)
    y = lda.transform(x)
    means = class_sums(y, spk, 100) / 20
    within = np.cov((y - means[spk]).T, bias=True)
    np.testing.assert_allclose(within, np.eye(3), atol=1e-8)
    # the first direction has the largest between/within ratio
    between_var = means.var(axis=0)
    assert between_var[0] >= between_var[1] >= between_var[2]
    with pytest.raises(VoxflowError, match="LDA to 9 dims"):
        LDA(9).fit(x, spk)


def test_length_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(length_normalize(x), [[3 / 5 * np.sqrt(2), 4 / 5 * np.sqrt(2)], [0, 0]])


def test_plda_backend_pipeline_scores_and_roundtrips(tmp_path):
    rng = np.random.default_rng(4)
    model = TwoCovModel(rng, dim=12)
    x, spk = model.sample(60, 6)
    backend = PLDABackend(lda_dim=8).fit(x, spk)
    ids = [f"u{k}" for k in range(len(x))]
    i, j, same = random_pairs(rng, spk, 300)
    trials = pd.DataFrame({"enroll_id": [ids[k] for k in i], "test_id": [ids[k] for k in j], "label": same})
    out = backend.score_trials(trials, ids, x)
    np.testing.assert_allclose(out["score"], backend.score(x[i], x[j]), atol=1e-4)
    assert backend.score(x[0], x[1]) == pytest.approx(float(backend.score(x[:1], x[1:2])[0]))
    # the same pipeline by hand
    y = length_normalize(LDA(8).fit(x - x.mean(0), spk).transform(x - x.mean(0)))
    manual = PLDA().fit(y, spk)
    np.testing.assert_allclose(backend.score(x[i], x[j]), manual.score(y[i], y[j]), rtol=1e-6, atol=1e-6)
    backend.save(tmp_path / "plda.npz")
    again = PLDABackend.load(tmp_path / "plda.npz")
    np.testing.assert_allclose(again.score(x[i], x[j]), backend.score(x[i], x[j]), rtol=1e-12)
    backend.plda.save(tmp_path / "bare.model")
    np.testing.assert_allclose(PLDA.load(tmp_path / "bare.model").within, backend.plda.within)
    with pytest.raises(VoxflowError, match="'kind'"):
        PLDA.load(tmp_path / "plda.npz")
    with pytest.raises(VoxflowError, match="not fitted"):
        PLDA().score(x[:2], x[:2])


# ---------------------------------------------------------------- AS-Norm / S-Norm


def test_as_norm_equals_formula_on_small_example():
    ids = ["e", "t"]
    emb = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    angles = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    cohort = np.c_[np.cos(angles), np.sin(angles)].astype(np.float32)
    trials = pd.DataFrame({"enroll_id": ["e"], "test_id": ["t"], "label": [1]})
    s = 0.6  # cos(e, t)
    ce = np.cos(angles)  # e against the cohort
    ct = 0.6 * np.cos(angles) + 0.8 * np.sin(angles)
    for top_n in (2, 3, None):
        k = 5 if top_n is None else top_n
        te, tt = np.sort(ce)[-k:], np.sort(ct)[-k:]
        expected = 0.5 * ((s - te.mean()) / te.std() + (s - tt.mean()) / tt.std())
        out = score_trials_normalized(trials, ids, cosine_space(emb), cosine_space(cohort), top_n=top_n)
        assert out["score"].iloc[0] == pytest.approx(expected, rel=1e-5)  # float32 cohort scores
    assert as_norm(1.0, 0.0, 2.0, 1.0, 0.5) == pytest.approx(0.25)


def test_cohort_stats_match_per_embedding_loop(monkeypatch):
    from voxflow.backend import norm

    monkeypatch.setattr(norm, "ROW_CHUNK", 3)
    rng = np.random.default_rng(5)
    model = TwoCovModel(rng, dim=6)
    x, spk = model.sample(20, 3)
    plda = PLDA().fit(x, spk)
    cohort = x[:25]
    mean, std = cohort_stats(plda.space(x), plda.space(cohort), top_n=7, rows=np.array([4, 0, 9, 30, 31]))
    for r, row in enumerate([4, 0, 9, 30, 31]):
        top = np.sort(plda.score(np.repeat(x[row:row + 1], 25, 0), cohort))[-7:]
        assert mean[r] == pytest.approx(top.mean(), abs=1e-4)
        assert std[r] == pytest.approx(top.std(), abs=1e-4)


def test_used_rows_equals_unique_with_inverse():
    from voxflow.backend.norm import used_rows

    rng = np.random.default_rng(9)
    a, b = rng.integers(0, 50, 200), rng.integers(10, 40, 150)
    used, (ia, ib) = used_rows(60, a, b)
    expected, inverse = np.unique(np.r_[a, b], return_inverse=True)
    np.testing.assert_array_equal(used, expected)
    np.testing.assert_array_equal(np.r_[ia, ib], inverse)


def test_as_norm_trials_match_naive_and_snorm_is_full_cohort():
    rng = np.random.default_rng(6)
    ids, emb = make_embeddings(rng, n=40, dim=8)
    cohort = rng.normal(size=(30, 8)).astype(np.float32)
    trials, a, b = make_trials(rng, ids, 200)
    out = score_trials_normalized(trials, ids, cosine_space(emb), cosine_space(cohort), top_n=10)
    snorm = score_trials_normalized(trials, ids, cosine_space(emb), cosine_space(cohort), top_n=None)

    def stats(v, k):
        c = np.sort([naive_cosine(v, w) for w in cohort])[-k:]
        return c.mean(), c.std()

    for r in range(0, 200, 37):
        e, t = emb[a[r]], emb[b[r]]
        s = naive_cosine(e, t)
        for k, table in ((10, out), (30, snorm)):
            (me, se), (mt, st) = stats(e, k), stats(t, k)
            assert table["score"].iloc[r] == pytest.approx(0.5 * ((s - me) / se + (s - mt) / st), abs=1e-5)
    with pytest.raises(VoxflowError, match="top_n"):
        score_trials_normalized(trials, ids, cosine_space(emb), cosine_space(cohort), top_n=1)


def test_speaker_means():
    speakers, means = speaker_means(np.array([[1.0, 2], [3, 4], [10, 10]]), ["b", "b", "a"])
    assert speakers == ["b", "a"]
    np.testing.assert_allclose(means, [[2, 3], [10, 10]])
    x = np.random.default_rng(5).normal(size=(50, 6)).astype(np.float32)
    spk = np.arange(50) % 7
    np.testing.assert_allclose(speaker_means(x, spk, chunk=4)[1], speaker_means(x, spk)[1], rtol=1e-6)  # blocks
    np.testing.assert_allclose(speaker_means(x, spk)[1][0], x[spk == 0].mean(axis=0), rtol=1e-6)


# ---------------------------------------------------------------- calibration


def test_calibration_recovers_known_affine_llr():
    # targets N(2, 1.5^2), nontargets N(-1, 1.5^2): the true LLR is a*s + b
    rng = np.random.default_rng(7)
    n = 200_000
    labels = np.r_[np.ones(n, bool), np.zeros(n // 4, bool)]
    s = np.r_[rng.normal(2, 1.5, n), rng.normal(-1, 1.5, n // 4)]
    a, b = 3 / 1.5**2, (1 - 4) / (2 * 1.5**2)
    cal = LogisticCalibration().fit(s, labels)
    assert cal.weights == pytest.approx([a, b], abs=0.02)


def test_calibration_with_quality_recovers_logistic_model_and_lowers_cllr(tmp_path):
    rng = np.random.default_rng(8)
    n = 60_000
    s = rng.normal(size=n) * 2
    q = rng.uniform(0, 2, n)
    true_w = np.array([1.5, -0.7, 0.4])  # llr = 1.5 s - 0.7 q + 0.4 at the training prior
    labels = rng.random(n) < 1 / (1 + np.exp(-(s * true_w[0] + q * true_w[1] + true_w[2])))
    p = labels.mean()
    cal = LogisticCalibration(p_target=p).fit(s, labels, quality=q)
    fitted = cal.weights + np.r_[0, 0, np.log(p / (1 - p))]  # back to posterior log-odds
    assert fitted == pytest.approx(true_w, abs=0.06)
    # held-out: badly scaled, shifted scores get a much lower Cllr after calibration
    train, test = slice(0, n // 2), slice(n // 2, n)
    raw = 5 * s + 3
    cal = LogisticCalibration().fit(raw[train], labels[train], quality=q[train])
    before = cllr(raw[test], labels[test])
    after = cllr(cal.transform(raw[test], quality=q[test]), labels[test])
    without_quality = cllr(LogisticCalibration().fit(raw[train], labels[train]).transform(raw[test]), labels[test])
    assert after < without_quality < before
    cal.save(tmp_path / "cal.npz")
    np.testing.assert_array_equal(LogisticCalibration.load(tmp_path / "cal.npz").weights, cal.weights)
    with pytest.raises(VoxflowError, match="quality"):
        cal.transform(raw[test])


def test_backend_fit_in_blocks_equals_one_block():
    """The back-end statistics accumulated over blocks of rows (bounded memory at VoxCeleb2 size) give the model a
    single block gives: speakers are split across blocks of 7 rows here. Differences are summation-order rounding
    (measured below 1e-12 relative); bound 1e-9."""
    rng = np.random.default_rng(7)
    x, spk = TwoCovModel(rng, dim=12).sample(40, 5)
    x = x.astype(np.float32)
    i, j, _ = random_pairs(rng, spk, 200)
    for lda_dim in (8, None):
        whole = PLDABackend(lda_dim=lda_dim).fit(x, spk)
        blocks = PLDABackend(lda_dim=lda_dim).fit(x, spk, chunk=7)
        np.testing.assert_allclose(blocks.mean, whole.mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(blocks.score(x[i], x[j]), whole.score(x[i], x[j]), rtol=1e-9, atol=1e-9)
    # PLDA alone: blocks, and the float64 matrix handed over whole
    y = length_normalize(x.astype(np.float64) - x.astype(np.float64).mean(0))
    direct, blocked = PLDA().fit(y, spk), PLDA().fit(y, spk, chunk=7)
    for name in ("mu", "between", "within"):
        np.testing.assert_allclose(getattr(blocked, name), getattr(direct, name), rtol=1e-9, atol=1e-12)
    lda_whole, lda_blocks = LDA(6).fit(x, spk), LDA(6).fit(x, spk, chunk=7)
    np.testing.assert_allclose(np.abs(lda_blocks.transform(x)), np.abs(lda_whole.transform(x)), rtol=1e-7, atol=1e-9)
    with pytest.raises(VoxflowError, match=r"non-finite values \(row 12\)"):
        bad = x.copy()
        bad[12, 3] = np.nan
        PLDABackend(lda_dim=8).fit(bad, spk, chunk=5)
