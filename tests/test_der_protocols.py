"""DER under its four protocols and JER: against pyannote.metrics, known answers, der.json and the summary rows."""
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_der import random_rttm, segs

from voxflow.diarize.rttm import write_rttm
from voxflow.metrics.der import diarization_error, diarization_protocols, protocol_key
from voxflow.report.summary import diarization_rows, summary_markdown

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = [(0.25, False), (0.25, True), (0.0, False), (0.0, True)]


def jer(ref, hyp, **kw):
    return diarization_error(ref, hyp, **kw)["jer"]


# ---------------------------------------------------------------- JER known answers


def test_jer_known_answers():
    ref = segs(("f", 0, 10, "A"), ("f", 10, 10, "B"))
    assert jer(ref, ref.assign(speaker=["x", "y"]), collar=0.0) == 0.0
    # all speech to one speaker: A (or B) maps to it, 1 - 10/20; the other is unmapped, 1
    out = diarization_error(ref, segs(("f", 0, 20, "x")), collar=0.0)
    assert out["jer"] == pytest.approx(0.75) and out["confusion"] == pytest.approx(0.5)
    # a split speaker: A -> x, 1 - 6/10
    assert jer(segs(("f", 0, 10, "A")), segs(("f", 0, 6, "x"), ("f", 6, 4, "y")), collar=0.0) == pytest.approx(0.4)
    # an extra hypothesis speaker costs DER (false alarm) but not JER
    out = diarization_error(segs(("f", 0, 10, "A")), segs(("f", 0, 10, "x"), ("f", 20, 10, "z")), collar=0.0)
    assert out["jer"] == 0.0 and out["false_alarm"] == pytest.approx(1.0)
    # no hypothesis: every reference speaker at 1
    assert jer(ref, segs(), collar=0.0) == 1.0
    # a hypothesis speaker that never meets its reference speaker is no pairing
    assert jer(segs(("f", 0, 5, "A")), segs(("f", 6, 4, "x")), collar=0.0) == 1.0


def test_overlapping_hypothesis_turns():
    ref = segs(("f", 0, 10, "A"), ("f", 5, 5, "B"))
    # one speaker's overlapping turns count once; two hypothesis speakers at once score like reference overlap
    hyp = segs(("f", 0, 6, "x"), ("f", 4, 6, "x"), ("f", 5, 5, "y"))
    out = diarization_error(ref, hyp, collar=0.0)
    assert (out["der"], out["jer"]) == (0.0, 0.0)
    # a second hypothesis speaker where only one reference speaker talks is a false alarm
    out = diarization_error(segs(("f", 0, 10, "A")), segs(("f", 0, 10, "x"), ("f", 2, 2, "y")), collar=0.0)
    assert out["false_alarm_s"] == pytest.approx(2.0) and out["jer"] == 0.0


def test_jer_pools_reference_speakers_over_files():
    ref = segs(("a", 0, 10, "A"), ("b", 0, 2, "P"), ("b", 2, 2, "Q"), ("b", 4, 2, "R"))
    out = diarization_error(ref, segs(("a", 0, 10, "x")), collar=0.0)
    assert out["files"]["a"]["jer"] == 0.0 and out["files"]["b"]["jer"] == 1.0
    assert out["jer"] == pytest.approx(3 / 4) and out["jer_speakers"] == 4  # not (0 + 1) / 2
    out = diarization_error(segs(("a", 0, 10, "A")), segs(("a", 0, 10, "x")), uem={"a": [(0, 10)], "c": [(0, 5)]})
    assert math.isnan(out["files"]["c"]["jer"]) and out["jer"] == 0.0  # a file without reference speech


def test_protocols_match_single_runs():
    rng = np.random.default_rng(7)
    ref, hyp = random_rttm(rng, ["a", "b"], 3, "s"), random_rttm(rng, ["a"], 2, "h")
    protocols = diarization_protocols(ref, hyp, collars=(0.25, 0.25, 0.0))
    assert list(protocols) == ["collar0.25_overlap", "collar0.25_skipoverlap", "collar0_overlap",
                               "collar0_skipoverlap"]
    for collar, skip in PROTOCOLS:
        got = protocols[protocol_key(collar, skip)]
        assert got["protocol"] == f"collar {collar:g} s, overlap {'skipped' if skip else 'scored'}"
        want = diarization_error(ref, hyp, collar=collar, skip_overlap=skip)
        assert {k: v for k, v in got.items() if k in want} == want


# ---------------------------------------------------------------- pyannote.metrics


def annotation(df):
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for i, (s, d, k) in enumerate(zip(df["start"], df["duration"], df["speaker"])):
        ann[Segment(s, s + d), i] = k
    return ann


def check_against_pyannote(ref, hyp, files, uem=None):
    """All four protocols, per file and pooled: DER parts and JER to 1e-6. pyannote's ``collar`` is the total
    width of the no-score zone, md-eval's (and ours) each side of a boundary: pyannote collar = 2 * ours."""
    pytest.importorskip("pyannote.metrics")
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    ours = diarization_protocols(ref, hyp, collars=(0.25, 0.0), uem=uem)
    for collar, skip in PROTOCOLS:
        out = ours[protocol_key(collar, skip)]
        der = DiarizationErrorRate(collar=2 * collar, skip_overlap=skip)
        jer_metric = JaccardErrorRate(collar=2 * collar, skip_overlap=skip)
        for f in files:
            # support(): one speaker's overlapping turns merged (pyannote would count them twice, md-eval once)
            args = (annotation(ref[ref.file_id == f]).support(), annotation(hyp[hyp.file_id == f]).support())
            kw = {"uem": Timeline([Segment(*s) for s in uem[f]])} if uem else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d = der(*args, detailed=True, **kw)
                j = jer_metric(*args, **kw)
            mine = out["files"][f]
            for key, theirs in [("scored_speech_s", "total"), ("miss_s", "missed detection"),
                                ("false_alarm_s", "false alarm"), ("confusion_s", "confusion")]:
                assert mine[key] == pytest.approx(d[theirs], abs=1e-6), (collar, skip, f, key)
            if mine["jer_speakers"]:  # pyannote says 1.0 for a file without reference speakers, we NaN
                assert mine["jer"] == pytest.approx(j, abs=1e-6), (collar, skip, f)
        assert out["der"] == pytest.approx(abs(der), abs=1e-6), (collar, skip)
        assert out["jer"] == pytest.approx(abs(jer_metric), abs=1e-6), (collar, skip)


@pytest.mark.parametrize("seed", range(4))
def test_random_rttms_match_pyannote(seed):
    rng = np.random.default_rng(100 + seed)
    files = ["f1", "f2", "f3"]
    ref = random_rttm(rng, files, int(rng.integers(2, 5)), "s", horizon_ms=15_000)
    hyp = random_rttm(rng, files[:2], int(rng.integers(1, 6)), "h", horizon_ms=15_000)  # f3: no hypothesis
    ref["start"] += rng.uniform(0, 1e-3, len(ref))  # off the grid
    hyp["duration"] += rng.uniform(0, 1e-3, len(hyp))
    twin = hyp.sample(3, random_state=seed).assign(start=lambda d: d.start + 0.3)  # a speaker's own turns overlap
    hyp = pd.concat([hyp, twin], ignore_index=True)
    ref = ref[~((ref.file_id == "f2") & (ref.speaker == "s0"))]  # hypothesis speakers without a counterpart
    uem = {f: [(0.5, 7.0), (8.0, 14.2)] for f in files} if seed % 2 else None
    check_against_pyannote(ref, hyp, files, uem)


def test_meeting_like_case_matches_pyannote():
    """Turn-taking with back-channels and overlap; a system with shifted boundaries, a missed back-channel,
    a split speaker and a marked overlap."""
    ref = segs(("m", 0.00, 4.20, "alice"), ("m", 3.90, 5.35, "bob"), ("m", 6.10, 0.40, "alice"),
               ("m", 9.25, 3.00, "carol"), ("m", 12.00, 6.50, "alice"), ("m", 14.30, 0.60, "bob"),
               ("m", 18.40, 2.10, "carol"), ("m", 20.80, 1.70, "dave"))
    hyp = segs(("m", 0.05, 4.00, "1"), ("m", 4.00, 5.30, "2"), ("m", 9.30, 2.90, "3"), ("m", 12.10, 3.20, "1"),
               ("m", 15.30, 3.10, "4"), ("m", 14.30, 0.50, "2"), ("m", 18.40, 4.10, "3"))
    check_against_pyannote(ref, hyp, ["m"])
    out = diarization_protocols(ref, hyp, collars=(0.25, 0.0))
    assert out["collar0.25_overlap"]["der"] < out["collar0_overlap"]["der"]  # the collar forgives boundaries
    assert 0 < out["collar0_overlap"]["jer"] < 1


# ---------------------------------------------------------------- der.json and the summary


def test_der_json_keeps_its_keys_and_the_summary_names_protocols(tmp_path):
    ref = segs(("m", 0, 10, "A"), ("m", 8, 6, "B"))
    hyp = segs(("m", 0.1, 9.0, "x"), ("m", 9.1, 4.9, "y"))
    (tmp_path / "ref").mkdir()
    write_rttm(ref, tmp_path / "ref" / "m.rttm")
    write_rttm(hyp, tmp_path / "hyp.rttm")
    out = tmp_path / "exp/sys/diarization/dev/der.json"
    subprocess.run([sys.executable, str(REPO / "scripts/der.py"), "--hyp", str(tmp_path / "hyp.rttm"),
                    "--ref-dir", str(tmp_path / "ref"), "--collar", "0.1", "--out", str(out)],
                   check=True, capture_output=True)
    m = json.loads(out.read_text())
    main = diarization_error(ref, hyp, collar=0.1)
    assert {k: m[k] for k in ("der", "miss", "false_alarm", "confusion")} == pytest.approx(
        {k: main[k] for k in ("der", "miss", "false_alarm", "confusion")})
    assert (m["collar"], m["uem"], m["protocol"], set(m["files"])) == (0.1, None, "collar 0.1 s, overlap scored", {"m"})
    assert list(m["protocols"]) == [f"collar{c}_{o}" for c in ("0.1", "0.25", "0") for o in ("overlap", "skipoverlap")]
    assert all({"der", "miss", "false_alarm", "confusion", "jer"} <= set(p) and "files" not in p
               for p in m["protocols"].values())

    old = tmp_path / "exp/old/diarization/dev/der.json"  # a der.json from before protocols
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"der": 0.1, "miss": 0.05, "false_alarm": 0.03, "confusion": 0.02, "collar": 0.25}))
    rows = diarization_rows([str(out), str(old), str(tmp_path / "exp/gone/diarization/dev/der.json")])
    assert rows["protocol"].tolist()[:2] == ["collar 0.1 s, overlap scored", "collar 0.25 s, overlap scored"]
    new = rows.iloc[0]
    assert new["der_%"] == pytest.approx(100 * m["der"])
    assert new["der_collar0_%"] == pytest.approx(100 * m["protocols"]["collar0_overlap"]["der"])
    assert new["der_skip_overlap_%"] == pytest.approx(100 * m["protocols"]["collar0.1_skipoverlap"]["der"])
    assert new["jer_%"] == pytest.approx(100 * m["protocols"]["collar0_overlap"]["jer"])
    assert rows.iloc[1][["der_collar0_%", "jer_%"]].isna().all() and rows.iloc[2]["status"] == "missing"
    md = summary_markdown(pd.DataFrame(), rows)
    assert "| system | set | protocol | der_% |" in md
    assert "`jer_%`: JER, collar 0 s, overlap scored" in md and "`der_collar0_%`: DER, collar 0 s" in md

