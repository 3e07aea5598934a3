"""Calibration trial lists, calibrated metrics, the calibrate script on real files, and the summary layout."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from voxflow.backend.calibration import calibrate_scores, trial_quality
from voxflow.backend.calibration_trials import sample_calibration_trials
from voxflow.data.manifests import read_table, write_embeddings, write_table
from voxflow.errors import VoxflowError
from voxflow.metrics.verification import actual_dcf, bayes_threshold, cllr, summarize, summarize_llr
from voxflow.report.summary import summary_markdown, verification_rows

REPO = Path(__file__).resolve().parents[1]


def manifest(n_spk, sessions, utts, rng=None, prefix="s"):
    rows = [(f"{prefix}{s:03d}/v{v}/u{u}", f"{prefix}{s:03d}", f"{prefix}{s:03d}/v{v}")
            for s in range(n_spk) for v in range(sessions) for u in range(utts)]
    df = pd.DataFrame(rows, columns=["utt_id", "spk_id", "session_id"])
    rng = rng or np.random.default_rng(0)
    return df.assign(duration_s=np.exp(rng.uniform(0, np.log(10), len(df))))


def check_pairs(trials, utts, cross_session=True):
    spk = utts.set_index("utt_id").spk_id
    ses = utts.set_index("utt_id").session_id
    e, t = trials.enroll_id, trials.test_id
    same = spk[e].to_numpy() == spk[t].to_numpy()
    assert (same == (trials.label == 1)).all()
    assert (e != t).all()
    if cross_session:
        tgt = trials.label == 1
        assert (ses[e[tgt]].to_numpy() != ses[t[tgt]].to_numpy()).all()
    keys = [tuple(sorted(p)) for p in zip(e, t)]
    assert len(set(keys)) == len(keys)  # distinct unordered pairs


# ---------------------------------------------------------------- trial-list sampler


def test_sampler_counts_sessions_distinct_and_seeded():
    utts = manifest(30, 3, 4)
    trials = sample_calibration_trials(utts, 200, 300, seed=5)
    assert (trials.label == 1).sum() == 200 and (trials.label == 0).sum() == 300
    check_pairs(trials, utts)
    again = sample_calibration_trials(utts.sample(frac=1, random_state=1), 200, 300, seed=5)
    pd.testing.assert_frame_equal(trials, again)  # the manifest's row order does not matter
    other = sample_calibration_trials(utts, 200, 300, seed=6)
    assert not trials.equals(other)
    assert list(trials.columns) == ["enroll_id", "test_id", "label"]


def test_sampler_is_uniform_over_possible_target_pairs():
    # speaker a: 2 sessions x 20 utts (400 cross-session pairs); speaker b: 2 x 5 (25 pairs); many others
    utts = pd.concat([manifest(1, 2, 20, prefix="a"), manifest(1, 2, 5, prefix="b"),
                      manifest(200, 1, 1, prefix="c")])
    trials = sample_calibration_trials(utts, 100, 2000, seed=0)  # 425 possible: sampled, not enumerated
    check_pairs(trials, utts)
    from_a = trials[trials.label == 1].enroll_id.str.startswith("a").mean()
    assert from_a == pytest.approx(400 / 425, abs=0.06)
    assert trials[trials.label == 0].pipe(len) == 2000


def test_sampler_uses_all_pairs_when_too_few(caplog):
    utts = manifest(4, 2, 2)  # per speaker 2 x 2 = 4 cross-session pairs
    trials = sample_calibration_trials(utts, 50, 10, seed=0)
    assert (trials.label == 1).sum() == 16
    assert "only 16 distinct target pairs" in caplog.text
    check_pairs(trials, utts)


def test_sampler_without_sessions_pairs_different_utterances(caplog):
    utts = manifest(5, 1, 4)  # one session each
    trials = sample_calibration_trials(utts, 30, 30, seed=0)
    assert (trials.label == 1).sum() == 30  # 5 x 6 = 30 possible
    check_pairs(trials, utts, cross_session=False)
    assert "no speaker has two sessions" in caplog.text


@pytest.mark.parametrize("utts, match", [
    (manifest(1, 3, 3), "1 speaker"),
    (manifest(5, 1, 1), "one utterance"),
    (manifest(3, 2, 2).drop(columns=["spk_id"]), "spk_id"),
    (pd.concat([manifest(3, 2, 2), manifest(3, 2, 2).head(1)]), "duplicated"),
])
def test_sampler_errors(utts, match):
    with pytest.raises(VoxflowError, match=match):
        sample_calibration_trials(utts, 10, 10, where="m.parquet")


def test_calibration_trials_script_on_a_manifest(tmp_path):
    utts = manifest(10, 2, 3).assign(path="x.wav", sample_rate=16000, num_samples=16000)
    write_table(utts, tmp_path / "m.parquet", "utterances")
    proc = subprocess.run([sys.executable, str(REPO / "scripts/calibration_trials.py"), "--utterances",
                           str(tmp_path / "m.parquet"), "--targets", "40", "--nontargets", "60", "--seed", "3",
                           "--out", str(tmp_path / "t.parquet")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    trials = read_table(tmp_path / "t.parquet", "trials")
    assert len(trials) == 100 and trials.label.sum() == 40
    check_pairs(trials, utts)


# ---------------------------------------------------------------- metrics of LLRs


def test_bayes_threshold_and_summarize_llr():
    assert bayes_threshold(0.01) == pytest.approx(np.log(99))
    assert bayes_threshold(0.5) == 0.0
    rng = np.random.default_rng(0)
    labels = rng.random(5000) < 0.3
    llr = np.where(labels, rng.normal(2, 2, 5000), rng.normal(-2, 2, 5000))
    m = summarize_llr(llr, labels, p_target=0.05)
    assert m["cllr"] == pytest.approx(cllr(llr, labels))
    assert m["act_dcf"] == pytest.approx(actual_dcf(llr, labels, np.log(19), 0.05))
    assert m["act_dcf_0.01"] >= m["min_dcf_0.01"] - 1e-12 and m["act_dcf_0.001"] >= m["min_dcf_0.001"] - 1e-12
    assert m["p_target"] == 0.05 and m["eer"] == summarize(llr, labels)["eer"]
    json.dumps(m)


# ---------------------------------------------------------------- the calibrate script on real files


def quality_data(tmp_path, name, rng, n_utts=300, n_trials=4000):
    """A corpus whose target scores separate more the longer the shorter utterance of the trial is."""
    utts = manifest(n_utts // 3, 3, 1, rng, prefix=name)
    utts = utts.assign(path="x.wav", sample_rate=16000, num_samples=16000)
    write_table(utts, tmp_path / f"{name}_utts.parquet", "utterances")
    emb = rng.normal(size=(len(utts), 8)) * rng.uniform(0.5, 3, (len(utts), 1))
    write_embeddings(utts.utt_id, emb, "m", tmp_path / f"{name}_emb.parquet")
    a, b = rng.integers(0, len(utts), (2, n_trials))
    labels = (rng.random(n_trials) < 0.3).astype(int)
    short = np.log(np.minimum(utts.duration_s.to_numpy()[a], utts.duration_s.to_numpy()[b]))
    score = 4 * (labels * (0.5 + 2.5 * short) + rng.normal(size=n_trials)) + 3  # badly scaled and shifted
    ids = utts.utt_id.to_numpy()
    scores = pd.DataFrame({"enroll_id": ids[a], "test_id": ids[b], "score": score, "label": labels,
                           "backend": "cosine"})
    write_table(scores, tmp_path / f"{name}_scores.parquet", "scores")
    return scores


def run_calibrate(tmp_path, tag, *quality):
    args = [sys.executable, str(REPO / "scripts/calibrate.py"), "--cal-scores", str(tmp_path / "cal_scores.parquet"),
            "--scores", str(tmp_path / "ev_scores.parquet"), "--p-target", "0.05",
            "--out-scores", str(tmp_path / f"{tag}.parquet"), "--out-metrics", str(tmp_path / f"{tag}.json")]
    if quality:
        args += ["--quality", *quality]
        for prefix, name in (("--cal-", "cal"), ("--", "ev")):
            args += [f"{prefix}utterances", str(tmp_path / f"{name}_utts.parquet"),
                     f"{prefix}embeddings", str(tmp_path / f"{name}_emb.parquet")]
    return subprocess.run(args, capture_output=True, text=True)


def test_calibrate_script_lowers_cllr_and_qmf_lowers_it_more(tmp_path):
    rng = np.random.default_rng(3)
    quality_data(tmp_path, "cal", rng)
    ev = quality_data(tmp_path, "ev", rng)
    for tag, quality in (("lr", ()), ("qmf", ("duration", "norm"))):
        proc = run_calibrate(tmp_path, tag, *quality)
        assert proc.returncode == 0, proc.stderr
    lr, qmf = (json.loads((tmp_path / f"{t}.json").read_text()) for t in ("lr", "qmf"))
    raw = summarize(ev.score, ev.label)
    raw_cllr = cllr(ev.score, ev.label)
    assert lr["cllr"] < 0.6 * raw_cllr
    assert qmf["cllr"] < lr["cllr"] - 0.03
    # an affine map is monotonic: EER and minDCF unchanged; with quality measures the ranking improves
    for key in ("eer", "min_dcf_0.01", "min_dcf_0.001"):
        assert lr[key] == pytest.approx(raw[key], abs=1e-12)
    assert qmf["eer"] < raw["eer"]
    assert lr["calibration"]["quality"] == [] and list(lr["calibration"]["weights"]) == ["score", "offset"]
    assert qmf["calibration"]["quality"] == ["duration", "norm"]
    assert list(qmf["calibration"]["weights"]) == ["score", "duration_min", "duration_max", "norm_min", "norm_max",
                                                   "offset"]
    w = qmf["calibration"]["weights"]
    assert w["score"] > 0 and w["duration_min"] != 0
    assert lr["calibration"]["weights"]["score"] > 0 and lr["p_target"] == 0.05 and qmf["calibration"]["constant"] == []
    out = read_table(tmp_path / "qmf.parquet", "scores")
    assert list(out.columns) == ["enroll_id", "test_id", "score", "label", "backend", "raw_score"]
    np.testing.assert_array_equal(out.raw_score, ev.score)
    assert out.enroll_id.tolist() == ev.enroll_id.tolist()


def test_calibrate_script_names_bad_input(tmp_path):
    rng = np.random.default_rng(4)
    quality_data(tmp_path, "cal", rng)
    quality_data(tmp_path, "ev", rng)
    ev = read_table(tmp_path / "ev_scores.parquet", "scores")
    ev.loc[3, "test_id"] = "nobody/u0"
    write_table(ev, tmp_path / "ev_scores.parquet", "scores")
    proc = run_calibrate(tmp_path, "q", "duration")
    assert proc.returncode == 1
    assert "ev_scores.parquet" in proc.stderr and "'nobody/u0'" in proc.stderr and "duration" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_calibrate_scores_needs_labels_and_values():
    cal = pd.DataFrame({"enroll_id": ["a", "b"], "test_id": ["b", "c"], "score": [1.0, 0.0], "label": [-1, 0],
                        "backend": "x"})
    with pytest.raises(VoxflowError, match="0/1 labels"):
        calibrate_scores(cal, cal, where="f.parquet")
    with pytest.raises(VoxflowError, match="needs its per-utterance values"):
        trial_quality(cal, ["norm"])
    with pytest.raises(VoxflowError, match="unknown"):
        trial_quality(cal, ["snr"])


def test_constant_quality_measure_is_left_out():
    # norms of L2-normalised embeddings: 1 up to float32 rounding; separable training scores
    rng = np.random.default_rng(5)
    labels = rng.random(3000) < 0.2
    s = np.where(labels, rng.normal(8, 1, 3000), rng.normal(-8, 1, 3000))
    noise = 1 + rng.normal(0, 3e-8, (3000, 2))
    from voxflow.backend.calibration import LogisticCalibration

    cal = LogisticCalibration(0.01).fit(s, labels, quality=noise)
    assert cal.constant_quality == [0, 1] and cal.weights[1] == 0 and cal.weights[2] == 0
    plain = LogisticCalibration(0.01).fit(s, labels)
    np.testing.assert_allclose(cal.transform(s, 1 + rng.normal(0, 1e-4, (3000, 2))), plain.transform(s), rtol=1e-6)


# ---------------------------------------------------------------- summary layout


def test_summary_rows_and_papers_layout(tmp_path):
    def metrics(system, kind, trials, backend, **extra):
        p = tmp_path / system / kind / trials / f"{backend}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"eer": 0.1, "min_dcf_0.01": 0.5, "min_dcf_0.001": 0.6, "n_target": 10,
                                 "n_nontarget": 90, **extra}))
        return str(p)

    cal = {"cllr": 0.4, "act_dcf": 0.55, "p_target": 0.01}
    paths = [metrics("sys", "scores", "o", "cosine"), metrics("sys", "scores", "e", "cosine"),
             metrics("sys", "calibrated", "o", "cosine", **cal, calibration={"quality": []}),
             metrics("sys", "calibrated", "e", "cosine", **cal, calibration={"quality": ["duration"]})]
    rows = verification_rows(paths)
    assert rows.calibration.tolist() == ["none", "none", "LR", "QMF (duration)"]
    assert rows["act_dcf_0.01"].isna().tolist() == [True, True, False, False]
    text = summary_markdown(rows, pd.DataFrame())
    header = next(line for line in text.splitlines() if line.startswith("| system"))
    assert header.split(" | ")[:4] == ["| system", "backend", "calibration", "o eer_%"]
    assert "o cllr" in header and "e act_dcf_0.01" in header
    assert header.index("o act_dcf_0.01") < header.index("e eer_%")  # columns grouped by trial set
    body = [line for line in text.splitlines() if line.startswith("| sys |")]
    assert len(body) == 3 and body[0].startswith("| sys | cosine | none") and "| - |" in body[0]


# ---------------------------------------------------------------- the rules (dry runs)


@pytest.mark.workflow
def test_calibration_rules_follow_the_config(tmp_path):
    from test_workflow import snakemake, tiny_config, write_config  # pytest puts tests/ on sys.path

    cfg = tiny_config()
    cfg["calibration"].update(corpus="demo_test", quality=[], p_target=0.05)
    write_config(tmp_path, cfg)
    out = snakemake(tmp_path, "-n", "-p", "exp/xvector_aam/calibrated/demo/plda.json").stdout
    assert "calibration_trials.py --utterances data/manifests/demo_test.parquet --targets 1000" in out
    assert "--trials data/calibration/trials.parquet --embeddings exp/xvector_aam/embeddings/demo_test.parquet" in out
    command = next(line for line in out.splitlines() if "calibrate.py" in line)
    assert "--p-target 0.05" in command and "--quality" not in command and "--cal-utterances" not in command
    cfg["calibration"]["quality"] = ["duration"]
    write_config(tmp_path, cfg)
    out = snakemake(tmp_path, "-n", "-p", "exp/xvector_aam/calibrated/demo/plda.json").stdout
    command = next(line for line in out.splitlines() if "calibrate.py" in line)
    assert "--quality duration --cal-utterances data/manifests/demo_test.parquet" in command
    assert "--embeddings" not in command
    cfg["calibration"] = {"enabled": True, "corpus": "nope"}
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "calibration.corpus 'nope' is not defined" in proc.stdout + proc.stderr
    cfg["calibration"] = {"enabled": True}
    cfg["trial_sets"]["calibration"] = cfg["trial_sets"]["demo"]
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "trial_sets.calibration: the name is reserved" in proc.stdout + proc.stderr
