"""A corpus embedded in parts (embedding.parts): the split by duration, the merge, and the workflow's
scatter-gather against the one embed job it replaces (real Snakemake runs)."""

import math
import re
import runpy
import shlex
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from test_workflow import snakemake, tiny_config, write_config  # pytest puts tests/ on sys.path
from voxflow.data import manifests
from voxflow.data.manifests import read_embeddings, write_embeddings, write_table
from voxflow.demo.corpus import make_demo_corpus
from voxflow.embed import parts as parts_lib
from voxflow.embed.parts import merge_parts, part_bounds, split_manifest
from voxflow.errors import VoxflowError


def test_parts_are_contiguous_and_balanced_by_duration():
    assert part_bounds([1, 1, 1, 1], 2) == [(0, 2), (2, 4)]
    assert part_bounds([10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2) == [(0, 1), (1, 11)]  # 10 s | 10 s, not 6 | 5 rows
    assert part_bounds([100, 1, 1], 3) == [(0, 1), (1, 2), (2, 3)]  # no empty part while rows >= parts
    assert part_bounds([5, 5, 5], 5) == [(0, 1), (1, 2), (2, 3), (3, 3), (3, 3)]  # fewer rows than parts
    assert part_bounds([np.nan] * 6, 3) == [(0, 2), (2, 4), (4, 6)]  # no durations: by count
    assert part_bounds([], 2) == [(0, 0), (0, 0)] and part_bounds([3.0], 1) == [(0, 1)]
    durations = np.random.default_rng(0).lognormal(2.0, 0.8, 5000)  # VoxCeleb-like spread: 1 s to minutes
    bounds = part_bounds(durations, 8)
    assert bounds[0][0] == 0 and bounds[-1][1] == 5000 and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    totals = [durations[s:e].sum() for s, e in bounds]
    assert max(abs(t - durations.sum() / 8) for t in totals) <= durations.max()  # within one utterance of the mean
    assert part_bounds(durations, 8) == bounds  # deterministic
    with pytest.raises(VoxflowError, match="embedding parts: 0; must be at least 1"):
        part_bounds([1.0], 0)


def test_merge_rebuilds_the_one_job_table_and_names_a_stale_part(tmp_path, monkeypatch):
    monkeypatch.setattr(manifests, "EMBEDDING_ROW_GROUP", 4)  # several row groups, part ends inside them
    monkeypatch.setattr(parts_lib, "EMBEDDING_ROW_GROUP", 4)
    n = 11
    ids, spk = [f"u{i:02d}" for i in range(n)], [f"s{i % 3}" for i in range(n)]
    utts = pd.DataFrame({"utt_id": ids, "spk_id": spk, "session_id": "x", "path": [f"{u}.wav" for u in ids],
                         "sample_rate": 16000, "num_samples": 16000, "duration_s": np.linspace(1, 9, n)})
    write_table(utts, tmp_path / "utts.parquet", "utterances")
    outs = [tmp_path / f"split/{k}.parquet" for k in range(1, 5)]
    bounds = split_manifest(tmp_path / "utts.parquet", outs)
    assert [len(pd.read_parquet(p)) for p in outs] == [e - s for s, e in bounds]
    assert pd.concat([pd.read_parquet(p) for p in outs], ignore_index=True).equals(pd.read_parquet(tmp_path / "utts.parquet"))
    m = np.random.default_rng(1).standard_normal((n, 6)).astype(np.float32)
    write_embeddings(ids, m, "exp/a/model.ts", tmp_path / "one.parquet", spk_id=spk)
    parts = []
    for k, (s, e) in enumerate(bounds):
        parts.append(tmp_path / f"part{k}.parquet")
        write_embeddings(ids[s:e], m[s:e], "exp/a/model.ts", parts[-1], spk_id=spk[s:e])
    parts.append(tmp_path / "empty.parquet")  # more parts than utterances leave some empty
    write_embeddings([], np.zeros((0, 6)), "exp/a/model.ts", parts[-1], spk_id=[])
    assert merge_parts(parts, tmp_path / "utts.parquet", tmp_path / "merged.parquet") == n
    one, merged = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "merged.parquet")
    assert merged.schema.equals(one.schema, check_metadata=True) and merged.equals(one)
    groups = pq.ParquetFile(tmp_path / "merged.parquet").metadata
    assert [groups.row_group(g).num_rows for g in range(groups.num_row_groups)] == [4, 4, 3]
    with pytest.raises(VoxflowError, match=r"part2.parquet: row 0 is 'u\d+', but the manifest .* has 'u\d+'"):
        merge_parts([parts[0], parts[2], parts[1], parts[3]], tmp_path / "utts.parquet", tmp_path / "x.parquet")
    with pytest.raises(VoxflowError, match=f"the parts hold {bounds[0][1]} embeddings, the manifest .* has {n}"):
        merge_parts(parts[:1], tmp_path / "utts.parquet", tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


# ---------------------------------------------------------------- the workflow (real Snakemake runs)
TARGET = "exp/xvector_aam_untrained/embeddings/demo_test.parquet"


def parts_config(parts: int) -> dict:
    cfg = tiny_config()
    cfg["demo"].update(n_dev_speakers=2, n_test_speakers=3, n_heldout_speakers=2, n_mislabeled=0, n_conversations=0,
                       sessions_per_speaker=2, utts_per_session=3)
    cfg["embedding"]["parts"] = parts
    # per-part requests that show the part's size: 100 MB + 100 GB per hour of audio (an 18 s part: 600 MB)
    cfg["resources"] = {"embed": {"cpus": 1, "mem_mb": 100, "mem_mb_per_unit": 100_000, "runtime": 1,
                                  "runtime_per_unit": 10_000}}
    return cfg


@pytest.mark.workflow
def test_parts_plan_n_embed_jobs_and_a_merge_and_leave_the_rest(tmp_path):
    """Dry runs of the whole workflow: parts 1 is one embed job per (system, corpus) as before; parts 3 (on
    GPUs listed in part_devices, as on one machine without SLURM) is 3 embed jobs, each asking for one GPU and
    running on part_devices[(k-1) mod 2], one merge per (system, corpus), one split per corpus; nothing else
    changes."""
    jobs, out = {}, ""
    for parts in (1, 3):
        cfg = parts_config(parts)
        if parts == 3:
            cfg["embedding"].update(device="cuda", part_devices=["cuda:0", "cuda:1"])
        (tmp_path / f"p{parts}").mkdir()
        write_config(tmp_path / f"p{parts}", cfg)
        out = snakemake(tmp_path / f"p{parts}", "-n", "-p").stdout
        jobs[parts] = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$",
                                                                          out.split("Job stats:")[1], re.M)}
    one, three = jobs[1], jobs[3]
    assert "merge_embeddings" not in one and "split_manifest" not in one
    corpora = 3  # demo_dev (back-end, calibration), demo_test (trials), demo_heldout (validation)
    assert three["embed"] == 3 * one["embed"] and three["merge_embeddings"] == one["embed"] > 0
    assert three["split_manifest"] == corpora  # one split per corpus, shared by the systems
    rest = {r: c for r, c in three.items() if r not in ("embed", "merge_embeddings", "split_manifest", "total")}
    assert rest == {r: c for r, c in one.items() if r not in ("embed", "total")}  # consumers (fit_backend, score, ...) unchanged
    devices = {}
    for part, body in re.findall(r"system=xvector_aam_untrained, corpus=demo_test, part=(\d)\n(.*?)\n\n", out, re.S):
        assert "gpu=1" in body, body
        devices[part] = re.search(r'"device": "(cuda:\d)"', body).group(1)
    assert devices == {"1": "cuda:0", "2": "cuda:1", "3": "cuda:0"}, out[-3000:]


@pytest.mark.workflow
def test_bad_parts_settings_are_named(tmp_path):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from test_workflow import REPO

    for value, message in ((0, "0 is less than the minimum of 1"), (1.5, "1.5 is not of type 'integer'")):
        cfg = parts_config(1)
        cfg["embedding"]["parts"] = value
        with pytest.raises(WorkflowError, match=re.escape(message)) as err:
            validate(cfg, str(REPO / "config/schema.yaml"))
        assert "['embedding']['parts']" in str(err.value)  # the key, as Snakemake prints it
    cfg = parts_config(1)
    cfg["embedding"].update(device="cuda", part_devices=["cuda:0", "cuda:1"])
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert ("config: embedding.part_devices: ['cuda:0', 'cuda:1'] spreads the parts of a corpus over GPUs; it needs "
            "embedding.parts > 1 (is 1)") in proc.stdout + proc.stderr


@pytest.mark.workflow
def test_two_parts_on_cpu_equal_the_one_job(tmp_path, one_thread, monkeypatch):
    """The real parts-2 run against the command a parts-1 embed job runs (taken from a dry run, run in this
    process with the same single thread as the parts' jobs, resources.embed.cpus: 1). Measured bit-identical
    (ONNX Runtime on the CPU; also with 2 threads per job), so the comparison is exact: the windows of one part
    are batched apart from the other's, and the network's outputs do not depend on the batch here."""
    cfg = parts_config(2)
    cfg["demo"]["enabled"] = False  # the corpus made here, in this process: 3 s instead of the rule's 10 s
    make_demo_corpus(tmp_path / "data/demo", seed=0, n_dev_speakers=2, n_test_speakers=2, sessions_per_speaker=2,
                     utts_per_session=3, n_mislabeled=0, n_conversations=0, n_noises=1, n_rirs=1, max_dur_s=4.0)
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, TARGET)
    run = proc.stdout + proc.stderr
    merged = tmp_path / TARGET
    # each part's request scales with its own audio (resources.embed's units: hours of the part's manifest)
    requests = re.findall(r"wildcards: system=xvector_aam_untrained, corpus=demo_test, part=(\d)\n.*?"
                          r"mem_mb=(\d+)", run, re.S)
    assert len(requests) == 2, run[-3000:]
    for part, mem in requests:
        hours = pd.read_parquet(tmp_path / f"data/split2/demo_test/{part}.parquet").duration_s.sum() / 3600
        assert int(mem) == math.ceil(100 + 100_000 * hours)
    split = [pd.read_parquet(tmp_path / f"data/split2/demo_test/{k}.parquet") for k in (1, 2)]
    manifest = pd.read_parquet(tmp_path / "data/manifests/demo_test.parquet")
    assert pd.concat(split, ignore_index=True).equals(manifest) and all(len(p) > 0 for p in split)
    # parts 1: the same target is made by one embed job again (the only job planned); run its command
    cfg["embedding"]["parts"] = 1
    write_config(tmp_path, cfg)
    out = snakemake(tmp_path, "-n", "-p", TARGET).stdout
    assert re.search(r"^embed\s+1\ntotal\s+1$", out, re.M), out[-2000:]
    command = next(line for line in out.splitlines() if "embed.py utterances" in line)
    args = shlex.split(command.split("python ", 1)[1].split(" > ")[0])
    one = tmp_path / "one.parquet"
    args[args.index("--out") + 1] = str(one)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", args)
    runpy.run_path(args[0], run_name="__main__")
    a, b = pq.read_table(one), pq.read_table(merged)
    assert b.schema.equals(a.schema, check_metadata=True)
    ids_a, m_a, rest_a = read_embeddings(one)
    ids_b, m_b, rest_b = read_embeddings(merged)
    assert ids_b == ids_a == manifest.utt_id.tolist() and rest_b.equals(rest_a)
    np.testing.assert_array_equal(m_b, m_a)
