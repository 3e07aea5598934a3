import itertools
import math

import numpy as np
import pandas as pd
import pytest

from voxflow.diarize.rttm import read_rttm, read_uem, write_rttm
from voxflow.errors import VoxflowError
from voxflow.metrics.der import diarization_error, diarization_error_by_file

COLS = ["file_id", "start", "duration", "speaker"]


def segs(*rows):
    return pd.DataFrame(list(rows), columns=COLS)


# ---------------------------------------------------------------- RTTM / UEM


def test_rttm_roundtrip_and_format(tmp_path):
    df = segs(("f2", 3.0, 1.25, "B"), ("f1", 0.5, 2.0, "A"), ("f1", 0.0, 0.125, "B"))
    p = tmp_path / "out" / "sys.rttm"
    write_rttm(df, p)
    lines = p.read_text().splitlines()
    assert lines[0] == "SPEAKER f1 1 0.000 0.125 <NA> <NA> B <NA> <NA>"
    assert lines[2] == "SPEAKER f2 1 3.000 1.250 <NA> <NA> B <NA> <NA>"
    back = read_rttm(p)
    assert back.to_dict("list") == {
        "file_id": ["f1", "f1", "f2"], "start": [0.0, 0.5, 3.0], "duration": [0.125, 2.0, 1.25],
        "speaker": ["B", "A", "B"],
    }
    assert [x.name for x in p.parent.iterdir()] == ["sys.rttm"]


def test_read_rttm_skips_comments_and_other_types(tmp_path):
    p = tmp_path / "a.rttm"
    p.write_text(
        ";; comment\n\nSPKR-INFO f1 1 <NA> <NA> <NA> unknown A <NA>\n"
        "SPEAKER f1 1 1.5 2.5 <NA> <NA> A <NA> <NA>\nSPEAKER f1 1 4 1 <NA> <NA> B\n"
    )
    df = read_rttm(p)
    assert df.to_dict("list") == {"file_id": ["f1", "f1"], "start": [1.5, 4.0], "duration": [2.5, 1.0],
                                  "speaker": ["A", "B"]}


@pytest.mark.parametrize(
    "bad, match",
    [
        ("SPEAKER f1 1 1.0 2.0 <NA> <NA>", "at least 8 fields"),
        ("SPEAKER f1 1 abc 2.0 <NA> <NA> A <NA> <NA>", "start 'abc' is not a number"),
        ("SPEAKER f1 1 1.0 nan <NA> <NA> A <NA> <NA>", "not finite"),
        ("SPEAKER f1 1 1.0 -2 <NA> <NA> A <NA> <NA>", ">= 0"),
    ],
)
def test_read_rttm_errors_name_file_and_line(tmp_path, bad, match):
    p = tmp_path / "bad.rttm"
    p.write_text("SPEAKER f1 1 0.0 1.0 <NA> <NA> A <NA> <NA>\n" + bad + "\n")
    with pytest.raises(VoxflowError, match=match) as exc:
        read_rttm(p)
    assert f"{p}:2" in str(exc.value)
    with pytest.raises(VoxflowError, match="not found"):
        read_rttm(tmp_path / "missing.rttm")


def test_write_rttm_rejects_whitespace_names(tmp_path):
    with pytest.raises(VoxflowError, match="whitespace"):
        write_rttm(segs(("f 1", 0.0, 1.0, "A")), tmp_path / "x.rttm")
    assert not (tmp_path / "x.rttm").exists()


def test_read_uem(tmp_path):
    p = tmp_path / "all.uem"
    p.write_text("f1 1 0.00 60.5\nf2 1 1 2\n")
    assert read_uem(p).to_dict("list") == {"file_id": ["f1", "f2"], "start": [0.0, 1.0], "end": [60.5, 2.0]}
    p.write_text("f1 1 5 2\n")
    with pytest.raises(VoxflowError, match=":1"):
        read_uem(p)


# ---------------------------------------------------------------- hand-computed DER


def test_perfect_hypothesis_with_other_labels_has_zero_error():
    ref = segs(("f", 0, 4, "A"), ("f", 3, 3, "B"), ("f", 8, 2, "A"))
    hyp = ref.assign(speaker=ref["speaker"].map({"A": "x", "B": "y"}))
    out = diarization_error(ref, hyp, collar=0.0)
    assert out["der"] == 0.0 and out["scored_speech_s"] == pytest.approx(9.0)


def test_confusion_split_speaker():
    ref = segs(("f", 0, 10, "A"))
    hyp = segs(("f", 0, 6, "X"), ("f", 6, 4, "Y"))
    out = diarization_error(ref, hyp, collar=0.0)
    assert out["confusion_s"] == pytest.approx(4.0)  # A->X (6 s); the 4 s of Y are confusion
    assert (out["miss"], out["false_alarm"], out["der"]) == pytest.approx((0.0, 0.0, 0.4))


def test_miss_false_alarm_and_collar():
    ref = segs(("f", 0, 10, "A"))
    hyp = segs(("f", 2, 10, "X"))
    out = diarization_error(ref, hyp, collar=0.0)
    assert (out["miss_s"], out["false_alarm_s"], out["confusion_s"]) == pytest.approx((2.0, 2.0, 0.0))
    assert out["der"] == pytest.approx(0.4)
    # collar 0.5: no-score zones [-0.5, 0.5] and [9.5, 10.5]
    out = diarization_error(ref, hyp, collar=0.5)
    assert out["scored_speech_s"] == pytest.approx(9.0)
    assert (out["miss_s"], out["false_alarm_s"]) == pytest.approx((1.5, 1.5))
    assert out["der"] == pytest.approx(3.0 / 9.0)
    assert out["reference_speech_s"] == pytest.approx(10.0)
    assert out["scored_time_s"] == pytest.approx(9.0 + 1.5)  # [0.5, 9.5] + [10.5, 12] of the extent [0, 12]


def test_overlap_counts_each_speaker_and_skip_overlap():
    ref = segs(("f", 0, 10, "A"), ("f", 5, 5, "B"))
    hyp = segs(("f", 0, 10, "X"))
    out = diarization_error(ref, hyp, collar=0.0)
    assert out["scored_speech_s"] == pytest.approx(15.0)
    assert (out["miss_s"], out["confusion_s"], out["der"]) == pytest.approx((5.0, 0.0, 1 / 3))
    out = diarization_error(ref, hyp, collar=0.0, skip_overlap=True)
    assert out["scored_speech_s"] == pytest.approx(5.0) and out["der"] == 0.0


def test_same_speaker_overlapping_segments_count_once():
    ref = segs(("f", 0, 6, "A"), ("f", 4, 6, "A"))
    out = diarization_error(ref, segs(("f", 0, 10, "X")), collar=0.0)
    assert out["scored_speech_s"] == pytest.approx(10.0) and out["der"] == 0.0


def test_uem_restricts_scoring_and_pools_files():
    ref = segs(("a", 0, 10, "A"), ("b", 0, 4, "S"))
    hyp = segs(("a", 2, 10, "X"), ("b", 0, 2, "T"), ("c", 0, 1, "U"))
    uem = pd.DataFrame({"file_id": ["a", "b", "c"], "start": [2.0, 0.0, 0.0], "end": [8.0, 4.0, 5.0]})
    out = diarization_error(ref, hyp, collar=0.0, uem=uem)
    assert out["files"]["a"]["scored_speech_s"] == pytest.approx(6.0) and out["files"]["a"]["der"] == 0.0
    assert out["files"]["b"]["miss_s"] == pytest.approx(2.0)
    assert out["files"]["c"]["false_alarm_s"] == pytest.approx(1.0) and math.isnan(out["files"]["c"]["der"])
    assert out["scored_speech_s"] == pytest.approx(10.0)
    assert out["der"] == pytest.approx((2.0 + 1.0) / 10.0)
    table = diarization_error_by_file(ref, hyp, collar=0.0, uem={"a": [(2, 8)], "b": [(0, 4)], "c": [(0, 5)]})
    assert table["file_id"].tolist() == ["a", "b", "c"]
    assert table["miss_s"].tolist() == pytest.approx([0.0, 2.0, 0.0])


def test_missing_hypothesis_file_is_all_miss():
    out = diarization_error(segs(("a", 0, 3, "A"), ("b", 1, 2, "B")), segs(("a", 0, 3, "X")), collar=0.0)
    assert out["files"]["b"]["miss"] == 1.0 and out["der"] == pytest.approx(2.0 / 5.0)


def test_der_input_errors():
    ref = segs(("a", 0, 3, "A"))
    with pytest.raises(VoxflowError, match="'zz'"):
        diarization_error(ref, segs(("zz", 0, 1, "X")))
    with pytest.raises(VoxflowError, match="no UEM entry"):
        diarization_error(ref, ref, uem={"b": [(0, 1)]})
    with pytest.raises(VoxflowError, match="collar"):
        diarization_error(ref, ref, collar=-1)
    with pytest.raises(VoxflowError, match="lack column"):
        diarization_error(ref.drop(columns="speaker"), ref)


# ---------------------------------------------------------------- brute force at 1 ms


def random_rttm(rng, files, n_spk, prefix, horizon_ms=20_000):
    """Random segments on a 1 ms grid; a speaker's own segments never touch."""
    rows = []
    for f in files:
        for k in range(n_spk):
            t = int(rng.integers(0, 3000))
            while t < horizon_ms:
                d = int(rng.integers(100, 4000))
                rows.append((f, t / 1000, d / 1000, f"{prefix}{k}"))
                t += d + int(rng.integers(1, 4000))
    return pd.DataFrame(rows, columns=COLS)


def brute_force_file(ref, hyp, collar_ms, skip_overlap, uem_ms):
    """Frame-level (1 ms) components with an exhaustive search over speaker mappings."""
    def frames(df):
        spk = sorted(df["speaker"].unique())
        n = int(round(max([25_000] + list((df["start"] + df["duration"]) * 1000)))) + 1000
        act = np.zeros((len(spk), n), bool)
        for s, d, k in zip(df["start"], df["duration"], df["speaker"]):
            a = int(round(s * 1000))
            act[spk.index(k), a:a + int(round(d * 1000))] = True
        return act

    ar, ah = frames(ref), frames(hyp)
    n = max(ar.shape[1], ah.shape[1])
    ar = np.pad(ar, ((0, 0), (0, n - ar.shape[1])))
    ah = np.pad(ah, ((0, 0), (0, n - ah.shape[1])))
    scored = np.zeros(n, bool)
    lo, hi = uem_ms
    scored[lo:hi] = True
    for s, d in zip(ref["start"], ref["duration"]):
        for b in (int(round(s * 1000)), int(round((s + d) * 1000))):
            scored[max(b - collar_ms, 0):b + collar_ms] = False
    nr, nh = ar.sum(0), ah.sum(0)
    if skip_overlap:
        scored &= nr <= 1
    cooc = (ar[:, None, :] & ah[None, :, :] & scored).sum(-1)
    size = max(cooc.shape)
    sq = np.zeros((size, size))
    sq[: cooc.shape[0], : cooc.shape[1]] = cooc
    best = max(sum(sq[i, p[i]] for i in range(size)) for p in itertools.permutations(range(size)))
    nr, nh = nr[scored], nh[scored]
    return {
        "scored_speech_s": nr.sum() / 1000, "miss_s": np.maximum(nr - nh, 0).sum() / 1000,
        "false_alarm_s": np.maximum(nh - nr, 0).sum() / 1000,
        "confusion_s": (np.minimum(nr, nh).sum() - best) / 1000,
    }


@pytest.mark.parametrize("seed", range(6))
def test_matches_frame_level_brute_force(seed):
    rng = np.random.default_rng(seed)
    files = ["f1", "f2"]
    ref = random_rttm(rng, files, int(rng.integers(1, 4)), "s")
    hyp = random_rttm(rng, files, int(rng.integers(1, 5)), "h")
    collar_ms = [0, 250, 100][seed % 3]
    skip = bool(seed % 2)
    use_uem = seed >= 3
    uem_ms = (1500, 15000) if use_uem else (0, 10**7)
    uem = {f: [(uem_ms[0] / 1000, uem_ms[1] / 1000)] for f in files} if use_uem else None
    out = diarization_error(ref, hyp, collar=collar_ms / 1000, skip_overlap=skip, uem=uem)
    totals = {k: 0.0 for k in ("scored_speech_s", "miss_s", "false_alarm_s", "confusion_s")}
    for f in files:
        bf = brute_force_file(ref[ref.file_id == f], hyp[hyp.file_id == f], collar_ms, skip, uem_ms)
        for k, v in bf.items():
            assert out["files"][f][k] == pytest.approx(v, abs=1e-9), (f, k)
            totals[k] += v
    for k, v in totals.items():
        assert out[k] == pytest.approx(v, abs=1e-9)
    errors = totals["miss_s"] + totals["false_alarm_s"] + totals["confusion_s"]
    assert out["der"] == pytest.approx(errors / totals["scored_speech_s"], rel=1e-12)
    assert out["confusion_s"] > 0  # the random cases do exercise the mapping


# ---------------------------------------------------------------- pyannote.metrics


@pytest.mark.parametrize("collar, skip_overlap", [(0.0, False), (0.25, False), (0.25, True), (0.1, True)])
def test_matches_pyannote_metrics(collar, skip_overlap):
    pytest.importorskip("pyannote.metrics")
    import warnings

    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(df):
        ann = Annotation()
        for i, (s, d, k) in enumerate(zip(df["start"], df["duration"], df["speaker"])):
            ann[Segment(s, s + d), i] = k
        return ann

    rng = np.random.default_rng(42)
    for case in range(10):
        ref = random_rttm(rng, ["f"], int(rng.integers(1, 5)), "s")
        hyp = random_rttm(rng, ["f"], int(rng.integers(1, 6)), "h")
        ref["start"] += rng.uniform(0, 1e-3, len(ref))  # off-grid times too
        hyp["duration"] += rng.uniform(0, 1e-3, len(hyp))
        uem = (0.7, 18.3) if case % 2 else None
        metric = DiarizationErrorRate(collar=2 * collar, skip_overlap=skip_overlap)  # pyannote: total width
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = metric(annotation(ref), annotation(hyp), detailed=True,
                              uem=Timeline([Segment(*uem)]) if uem else None)
        out = diarization_error(ref, hyp, collar=collar, skip_overlap=skip_overlap,
                                uem={"f": [uem]} if uem else None)
        assert out["scored_speech_s"] == pytest.approx(expected["total"], abs=1e-6)
        assert out["miss_s"] == pytest.approx(expected["missed detection"], abs=1e-6)
        assert out["false_alarm_s"] == pytest.approx(expected["false alarm"], abs=1e-6)
        assert out["confusion_s"] == pytest.approx(expected["confusion"], abs=1e-6)
        assert out["der"] == pytest.approx(expected["diarization error rate"], abs=1e-6)
