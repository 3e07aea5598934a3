import csv
import dataclasses
import hashlib
import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi

from voxflow.demo.acoustics import make_rir
from voxflow.demo.corpus import make_demo_corpus, make_trials
from voxflow.demo.speech import render_speech
from voxflow.demo.voices import Style, random_voice
from voxflow.errors import VoxflowError

SR = 16000
SMALL = dict(
    seed=3, n_dev_speakers=6, n_test_speakers=5, sessions_per_speaker=3, utts_per_session=4,
    n_mislabeled=2, n_conversations=2, n_noises=1, n_rirs=2,
)
TINY = dict(
    n_dev_speakers=2, n_test_speakers=2, sessions_per_speaker=2, utts_per_session=1, min_dur_s=1.0,
    max_dur_s=1.5, n_mislabeled=1, n_conversations=1, n_noises=1, n_rirs=1,
)
RTTM_LINE = re.compile(r"^SPEAKER (\S+) 1 (\d+\.\d{3}) (\d+\.\d{3}) <NA> <NA> (\S+) <NA> <NA>$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "demo"
    summary = make_demo_corpus(root, **SMALL)
    return root, summary


def _duration(path):
    info = sf.info(str(path))
    assert info.samplerate == SR and info.channels == 1 and info.subtype == "PCM_16", path
    return info.frames / info.samplerate


def _utt_ids(wav_root):
    return sorted(str(p.relative_to(wav_root).with_suffix("")) for p in wav_root.rglob("*.wav"))


def _tree_digest(root):
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _crude_embedding(path):
    """Per-utterance mean and std of 20 MFCCs: the crude speaker-verification baseline."""
    x, sr = sf.read(str(path), dtype="float32")
    mfcc = kaldi.mfcc(torch.from_numpy(x)[None] * 32768, sample_frequency=sr, num_ceps=20, num_mel_bins=30, dither=0.0)
    return torch.cat([mfcc.mean(0), mfcc.std(0)]).numpy().astype(np.float64)


def _cosine_after_mean_subtraction(embeddings):
    mean = np.mean(list(embeddings.values()), axis=0)
    return {k: (v - mean) / np.linalg.norm(v - mean) for k, v in embeddings.items()}


def _eer(scores, labels):
    """Brute-force equal error rate: the threshold where false accepts and false rejects cross."""
    best = (2.0, 1.0)
    for threshold in np.unique(scores):
        far = np.mean(scores[labels == 0] >= threshold)
        frr = np.mean(scores[labels == 1] < threshold)
        best = min(best, (abs(far - frr), (far + frr) / 2))
    return best[1]


def test_layout_and_counts(corpus):
    root, summary = corpus
    dev_spk = [f"id{i:05d}" for i in range(1, 7)]
    test_spk = [f"id{i:05d}" for i in range(7, 12)]
    assert sorted(p.name for p in (root / "dev" / "wav").iterdir()) == dev_spk
    assert sorted(p.name for p in (root / "test" / "wav").iterdir()) == test_spk
    expected = [f"{s}/s{k:02d}/{u:05d}" for s in dev_spk for k in (1, 2, 3) for u in (1, 2, 3, 4)]
    assert _utt_ids(root / "dev" / "wav") == expected
    assert len(_utt_ids(root / "test" / "wav")) == 5 * 12
    for category in ("noise", "music", "babble"):
        assert len(list((root / "noise" / category).glob("*.wav"))) == 1
    assert len(list((root / "rirs").glob("*.wav"))) == 2
    assert sorted(p.name for p in (root / "diar" / "wav").iterdir()) == ["conv001.wav", "conv002.wav"]
    assert sorted(p.name for p in (root / "diar" / "rttm").iterdir()) == ["conv001.rttm", "conv002.rttm"]
    assert [p.name for p in root.parent.iterdir()] == ["demo"]  # no temporary directories left behind
    assert summary["n_dev_utts"] == 72 and summary["n_test_utts"] == 60 and summary["n_mislabeled"] == 2
    trials = (root / "test" / "trials.txt").read_text().splitlines()
    assert summary["n_trials"] == len(trials)
    assert summary["n_target_trials"] == sum(line.startswith("1 ") for line in trials)
    total = sum(_duration(p) for p in root.rglob("*.wav"))
    assert summary["total_duration_s"] == pytest.approx(total, abs=0.01)
    dev_total = sum(_duration(p) for p in (root / "dev").rglob("*.wav"))
    assert summary["duration_s"]["dev"] == pytest.approx(dev_total, abs=0.01)


def test_speakers_json_records_seed_and_plausible_voices(corpus):
    root, _ = corpus
    doc = json.loads((root / "speakers.json").read_text())
    assert doc["seed"] == 3 and doc["settings"]["n_dev_speakers"] == 6
    roles = [v["role"] for v in doc["speakers"].values()]
    assert roles.count("dev") == 6 and roles.count("test") == 5
    for spk in doc["speakers"].values():
        lo, hi = (165.0, 255.0) if spk["sex"] == "f" else (85.0, 155.0)
        assert lo <= spk["f0_mean_hz"] <= hi
        assert 0.8 <= spk["formant_scale"] <= 1.2
        assert len(spk["vowel_offsets"]) == 10


def test_utterance_durations_and_levels(corpus):
    root, _ = corpus
    mislabeled = {row["utt_id"] for row in csv.DictReader(open(root / "dev" / "mislabeled.csv"))}
    for part in ("dev", "test"):
        for utt in _utt_ids(root / part / "wav"):
            path = root / part / "wav" / f"{utt}.wav"
            lo, hi = (6.0, 8.0) if utt in mislabeled else (2.0, 8.0)
            assert lo <= _duration(path) <= hi, utt
            peak_db = 20 * np.log10(np.max(np.abs(sf.read(str(path))[0])))
            assert -33.0 <= peak_db <= -6.0, utt
    for path in (root / "noise").rglob("*.wav"):
        assert 9.0 <= _duration(path) <= 11.0
        assert np.max(np.abs(sf.read(str(path))[0])) == pytest.approx(10 ** (-3 / 20), abs=1e-3)


def test_trial_list_is_valid_and_balanced(corpus):
    root, _ = corpus
    wav = root / "test" / "wav"
    pairs, labels = set(), []
    for line in (root / "test" / "trials.txt").read_text().splitlines():
        label, enroll, test = line.split()
        assert label in ("0", "1") and enroll.endswith(".wav") and test.endswith(".wav")
        assert (wav / enroll).is_file() and (wav / test).is_file()
        assert enroll != test and frozenset((enroll, test)) not in pairs
        pairs.add(frozenset((enroll, test)))
        e_spk, e_sess, _ = enroll.split("/")
        t_spk, t_sess, _ = test.split("/")
        if label == "1":
            assert e_spk == t_spk and e_sess != t_sess
        else:
            assert e_spk != t_spk
        labels.append(int(label))
    assert 0.15 <= np.mean(labels) <= 0.35
    assert len(labels) >= 60 * 12  # every utterance enrolled against several trials


def test_make_trials_respects_sessions_and_avoids_duplicates():
    ids = [f"spk{s}/s{k:02d}/{u:05d}" for s in range(4) for k in (1, 2) for u in (1, 2, 3)]
    trials = make_trials(ids, np.random.default_rng(0))
    pairs = [frozenset((a, b)) for _, a, b in trials]
    assert len(pairs) == len(set(pairs))
    targets = [(a, b) for lab, a, b in trials if lab == 1]
    assert targets and all(a[:4] == b[:4] and a.split("/")[1] != b.split("/")[1] for a, b in targets)
    assert all(a[:4] != b[:4] for lab, a, b in trials if lab == 0)
    assert {a for _, a, _ in trials} == set(ids)


def test_mislabeled_ground_truth(corpus):
    root, _ = corpus
    rows = list(csv.DictReader(open(root / "dev" / "mislabeled.csv")))
    assert len(rows) == 2 and list(rows[0]) == ["utt_id", "labeled_spk", "true_spk"]
    doc = json.loads((root / "speakers.json").read_text())["speakers"]
    assert len({r["labeled_spk"] for r in rows}) == len(rows)  # at most one per speaker
    sources = {doc[r["true_spk"]]["role"] for r in rows}
    assert sources == {"dev", "mislabel_source"}  # both kinds of impostor
    rttm_lines = [line for p in (root / "diar" / "rttm").glob("*.rttm") for line in p.read_text().splitlines()]
    rttm_speakers = {line.split()[7] for line in rttm_lines}
    for r in rows:
        assert r["true_spk"] != r["labeled_spk"] and r["utt_id"].split("/")[0] == r["labeled_spk"]
        path = root / "dev" / "wav" / f"{r['utt_id']}.wav"
        assert 6.0 <= _duration(path) <= 8.0
        if doc[r["true_spk"]]["role"] == "mislabel_source":  # an outsider appears nowhere else
            assert not (root / "dev" / "wav" / r["true_spk"]).exists()
            assert not (root / "test" / "wav" / r["true_spk"]).exists()
            assert r["true_spk"] not in rttm_speakers


def test_rttm_turns_lie_in_audio_and_overlap(corpus):
    root, _ = corpus
    dev_test = {p.name for part in ("dev", "test") for p in (root / part / "wav").iterdir()}
    for rttm in sorted((root / "diar" / "rttm").glob("*.rttm")):
        audio, sr = sf.read(str(root / "diar" / "wav" / f"{rttm.stem}.wav"))
        assert 30.0 <= len(audio) / sr <= 60.0
        turns = []
        for line in rttm.read_text().splitlines():
            m = RTTM_LINE.match(line)
            assert m and m.group(1) == rttm.stem, line
            turns.append((float(m.group(2)), float(m.group(3)), m.group(4)))
        speakers = {s for _, _, s in turns}
        assert 2 <= len(speakers) <= 4 and not speakers & dev_test
        speech = np.zeros(len(audio), dtype=int)
        for start, dur, _ in turns:
            assert 0.0 <= start and start + dur <= len(audio) / sr
            assert 0.999 <= dur <= 6.001
            speech[int(start * sr) : int((start + dur) * sr)] += 1
        overlap = np.mean(speech[speech > 0] > 1)
        assert 0.04 <= overlap <= 0.11
        # The reference marks where the voices are: speech is much louder than the gaps.
        power_in = np.mean(audio[speech > 0] ** 2)
        power_out = np.mean(audio[(speech == 0)] ** 2)
        assert 10 * np.log10(power_in / power_out) > 10.0


def test_rirs_decay_with_their_rt60():
    for rt60 in (0.3, 0.7):
        rir = make_rir(np.random.default_rng(1), SR, rt60, drr_db=0.0)
        assert np.max(np.abs(rir)) == pytest.approx(1.0)
        assert np.argmax(np.abs(rir)) < 0.005 * SR  # the direct path comes first
        energy = np.cumsum(rir[::-1] ** 2)[::-1]
        decay_db = 10 * np.log10(energy / energy[0] + 1e-12)
        t5, t25 = np.argmax(decay_db < -5), np.argmax(decay_db < -25)
        assert 3 * (t25 - t5) / SR == pytest.approx(rt60, rel=0.3)


def test_rendered_voice_has_its_f0_and_formant_scale():
    rng = np.random.default_rng(0)
    low = dataclasses.replace(random_voice("a", rng, sex="m"), f0_mean_hz=110.0, formant_scale=0.85)
    high = dataclasses.replace(low, f0_mean_hz=220.0, formant_scale=1.15)
    results = {}
    for name, voice in (("low", low), ("high", high)):
        x = render_speech(voice, 3 * SR, SR, np.random.default_rng(5), Style())
        assert x.dtype == np.float32 and len(x) == 3 * SR and np.all(np.isfinite(x))
        frames = np.lib.stride_tricks.sliding_window_view(x, 640)[::320]
        loud = frames[np.mean(frames**2, axis=1) > 0.3]
        lags = np.arange(SR // 400, SR // 60)
        ac = np.stack([np.sum(loud[:, :-lag] * loud[:, lag:], axis=1) for lag in lags], axis=1)
        f0 = np.median(SR / lags[np.argmax(ac, axis=1)])
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / SR)
        band = (freqs > 300) & (freqs < 3500)
        results[name] = (f0, np.sum(freqs[band] * spectrum[band]) / np.sum(spectrum[band]))
    assert results["low"][0] == pytest.approx(110.0, rel=0.2)
    assert results["high"][0] == pytest.approx(220.0, rel=0.2)
    assert results["high"][1] > 1.15 * results["low"][1]  # shorter vocal tract: higher spectral centroid


def test_same_seed_same_bytes_and_rebuild_replaces(tmp_path):
    first = make_demo_corpus(tmp_path / "a", seed=7, **TINY)
    digest = _tree_digest(tmp_path / "a")
    assert len([k for k in digest if k.endswith(".wav")]) == 8 + 3 + 1 + 1
    (tmp_path / "a" / "stray.txt").write_text("left over")
    second = make_demo_corpus(tmp_path / "a", seed=7, **TINY)
    assert _tree_digest(tmp_path / "a") == digest  # rebuilt in place, stray file gone
    assert {k: v for k, v in first.items() if k != "out_dir"} == {k: v for k, v in second.items() if k != "out_dir"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    make_demo_corpus(tmp_path / "b", seed=8, **TINY)
    other = _tree_digest(tmp_path / "b")
    assert other.keys() == digest.keys()  # same layout, different audio
    assert all(digest[k] != other[k] for k in digest if k.endswith(".wav"))


@pytest.mark.parametrize(
    "kwargs, culprit",
    [
        (dict(n_mislabeled=5, n_dev_speakers=4), "n_mislabeled"),
        (dict(sessions_per_speaker=1), "sessions_per_speaker"),
        (dict(min_dur_s=4.0, max_dur_s=3.0), "max_dur_s"),
        (dict(n_test_speakers="3"), "n_test_speakers"),
    ],
)
def test_bad_arguments_name_the_culprit(tmp_path, kwargs, culprit):
    with pytest.raises(VoxflowError, match=culprit):
        make_demo_corpus(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_out_dir_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "x").write_text("not a directory")
    with pytest.raises(VoxflowError, match="not a directory"):
        make_demo_corpus(tmp_path / "x", **TINY)


def test_verification_is_nontrivial_but_learnable(corpus):
    root, _ = corpus
    wav = root / "test" / "wav"
    trials = [line.split() for line in (root / "test" / "trials.txt").read_text().splitlines()]
    emb = _cosine_after_mean_subtraction({u: _crude_embedding(wav / f"{u}.wav") for u in _utt_ids(wav)})
    scores = np.array([emb[e[:-4]] @ emb[t[:-4]] for _, e, t in trials])
    labels = np.array([int(label) for label, _, _ in trials])
    eer = _eer(scores, labels)
    assert 0.03 < eer < 0.40, eer


def test_heldout_speakers_are_new_and_leave_dev_and_test_unchanged(tmp_path):
    plain = make_demo_corpus(tmp_path / "plain", seed=1, **TINY)
    extra = make_demo_corpus(tmp_path / "extra", seed=1, n_heldout_speakers=3, **TINY)
    assert not (tmp_path / "plain/heldout").exists() and plain["n_heldout_utts"] == 0
    held = sorted(p.relative_to(tmp_path / "extra/heldout/wav") for p in (tmp_path / "extra/heldout/wav").rglob("*.wav"))
    assert len(held) == extra["n_heldout_utts"] == 3 * TINY["sessions_per_speaker"] * TINY["utts_per_session"]
    held_spk = {p.parts[0] for p in held}
    others = {p.name for part in ("dev", "test") for p in (tmp_path / "extra" / part / "wav").iterdir()}
    assert len(held_spk) == 3 and not held_spk & others
    for part in ("dev/wav", "test/wav", "test/trials.txt"):
        a, b = tmp_path / "plain" / part, tmp_path / "extra" / part
        files = sorted(p.relative_to(a) for p in (a.rglob("*") if a.is_dir() else [a]) if p.is_file())
        assert files and all((a / f if a.is_dir() else a).read_bytes() == (b / f if b.is_dir() else b).read_bytes()
                              for f in files), part


def test_one_heldout_speaker_is_refused(tmp_path):
    with pytest.raises(VoxflowError, match="n_heldout_speakers"):
        make_demo_corpus(tmp_path / "d", n_heldout_speakers=1, **TINY)
