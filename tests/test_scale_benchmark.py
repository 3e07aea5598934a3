"""The scale benchmark (benchmarks/scale.py) at tiny sizes: real steps, checked for the row format, not timings."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import scale  # noqa: E402
from scale_cleaning import cleaning_rows  # noqa: E402
from scale_common import ROW_KEYS, check_row, make_row  # noqa: E402
from scale_manifests import manifest_rows  # noqa: E402
from scale_plan import planning_rows  # noqa: E402
from scale_resources import resource_rows  # noqa: E402


def test_row_format_is_checked():
    ok = make_row("9 x", "m", "1 s", "< 2 s", True)
    assert tuple(ok) == ROW_KEYS and ok["verdict"] == "meets" and check_row(ok) is ok
    bad = make_row("9 x", "m", "3 s", "< 2 s", False, "too slow; faster disks")
    assert bad["verdict"] == "misses: too slow; faster disks"
    with pytest.raises(ValueError):
        check_row({**ok, "verdict": "fine"})
    with pytest.raises(ValueError):
        check_row({**ok, "extra": "x"})
    with pytest.raises(SystemExit):
        scale.parse_rows("1,7")
    assert scale.parse_rows("3,1,3") == (1, 3)


def test_rows_at_tiny_sizes(tmp_path):
    units = {}
    rows = planning_rows(str(tmp_path), quick=True, configs=("voxceleb_lstm_netvlad",), scale=0.002, units=units)
    rows += manifest_rows(str(tmp_path), quick=True, jobs=8, units=units, frac=0.002, n_audio=6)
    rows += cleaning_rows(str(tmp_path), quick=True, threads=2, speakers=5, units=units, cost_sizes=(200, 400))
    rows += resource_rows(units, rows, recipes=("voxceleb_lstm_netvlad",))
    for r in rows:
        check_row(r)
    by = {}
    for r in rows:
        by.setdefault(r["row"], []).append(r)
    assert sorted(by) == ["1 planning", "2 manifests", "2 shards", "3 cleaning", "6 resources"]
    plan = by["1 planning"][0]
    # the recipe's DAG with cleaning and validation: seed model, segment embeddings, cleaning, 3 trial lists
    assert "voxceleb_lstm_netvlad" in plan["measure"] and int(plan["measure"].rsplit(": ", 1)[1].split()[0]) > 20
    assert "shards of 1,000" in by["1 planning"][-1]["measure"]
    assert len(by["2 shards"]) == 2 and "utts/s per job" in by["2 shards"][0]["figure"]
    clean = by["3 cleaning"][0]
    assert "5 speakers" in clean["measure"] and "planted utterances caught" in clean["figure"]
    caught, planted = clean["figure"].split("caught ")[1].split(",")[0].split("/")
    assert int(planted) >= 1 and int(caught) == int(planted)  # speaker id00003 has its planted utterances found
    assert {"clean_min_per_kseg", "manifest_peak_mb", "shard_utts_per_s_wav"} <= set(units)
    checked = " ".join(r["measure"] for r in by["6 resources"])
    assert "manifest" in checked and "shards (8 jobs)" in checked and "clean_speakers" in checked
    table = scale.markdown(rows, {"mode": "quick", "date": "d", "run_time": "t", "machine_line": "m"})
    assert table.count("\n| ") == len(rows) + 1


def test_extraction_timing_takes_turns_and_keeps_the_best_batch():
    """Row 4's timing (benchmarks/scale_extraction.py): the engines alternate within each round, every timing
    spans at least min_s of calls, and each engine reports its fastest batch. Stand-in engines sleep 1 ms and
    2 ms per window plus 5 ms per call, so the larger batch is faster and the first engine about twice as fast."""
    import time

    from scale_extraction import best_rates

    calls = []

    def engine(name, ms_per_window):
        def run(batch):
            calls.append(name)
            time.sleep(0.005 + ms_per_window * batch / 1000)
        return run

    rates = best_rates({"a": engine("a", 1), "b": engine("b", 2)}, batches=[1, 8], rounds=2, min_s=0.05)
    assert [rates[k][0] for k in "ab"] == [8, 8]
    assert 1.5 < rates["a"][1] / rates["b"][1] < 2.5 and rates["a"][1] < 1000  # never faster than the sleep alone allows
    switches = sum(x != y for x, y in zip(calls, calls[1:]))
    assert switches >= 2 * 2 * 2 - 1  # a and b alternate for every (round, batch), not one engine's whole sweep
