"""Config-driven back-ends: fit, save, load and score agree with the library pieces they combine."""

import numpy as np
import pandas as pd
import pytest

from voxflow.backend.cosine import cosine_space, score_trials
from voxflow.backend.norm import score_trials_normalized, speaker_means
from voxflow.backend.plda import PLDABackend
from voxflow.backend.recipe import fit_backend, load_backend, save_backend, score_backend
from voxflow.errors import VoxflowError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 20)) * 2
    spk = np.repeat(np.arange(12), 15)
    x = (centres[spk] + rng.standard_normal((len(spk), 20))).astype(np.float32)
    ids = [f"u{i}" for i in range(len(x))]
    pairs = rng.integers(0, len(x), (400, 2))
    trials = pd.DataFrame({"enroll_id": [ids[i] for i in pairs[:, 0]], "test_id": [ids[j] for j in pairs[:, 1]],
                           "label": (spk[pairs[:, 0]] == spk[pairs[:, 1]]).astype(np.int64)})
    return x, [f"s{k}" for k in spk], ids, trials


def roundtrip(cfg, x, spk, tmp_path):
    save_backend(fit_backend(cfg, x, spk), tmp_path / "b.npz")
    return load_backend(tmp_path / "b.npz")


def test_cosine_with_mean(data, tmp_path):
    x, spk, ids, trials = data
    arrays = roundtrip({"type": "cosine", "mean_subtraction": True}, x, spk, tmp_path)
    got = score_backend(arrays, trials, ids, x, "c")
    ref = score_trials(trials, ids, x, mean=x.mean(0), backend_name="c")
    assert np.allclose(got.score, ref.score, atol=1e-5) and (got.backend == "c").all()


def test_plda_caps_lda_at_speakers_minus_one(data, tmp_path):
    x, spk, ids, trials = data
    arrays = roundtrip({"type": "plda", "lda_dim": 128}, x, spk, tmp_path)
    assert int(arrays["plda/lda_dim"]) == 11
    ref = PLDABackend(lda_dim=11).fit(x, spk).score_trials(trials, ids, x)
    assert np.allclose(score_backend(arrays, trials, ids, x, "plda").score, ref.score, rtol=1e-4, atol=1e-4)


def test_asnorm_uses_training_speaker_means(data, tmp_path):
    x, spk, ids, trials = data
    arrays = roundtrip({"type": "cosine", "norm": "asnorm", "top_n": 5}, x, spk, tmp_path)
    _, cohort = speaker_means(x, spk)
    ref = score_trials_normalized(trials, ids, cosine_space(x), cosine_space(cohort), 5, "a")
    assert np.allclose(score_backend(arrays, trials, ids, x, "a").score, ref.score, atol=1e-5)


def test_bad_backend_config_is_named():
    with pytest.raises(VoxflowError, match="type 'lda' unknown"):
        fit_backend({"type": "lda"}, np.zeros((4, 2)), ["a", "a", "b", "b"])
