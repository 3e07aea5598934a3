"""plan_shards: what write_shards packs, planned by whole columns (a 1.09 M-row manifest in seconds)."""

import json

import numpy as np
import pandas as pd

from voxflow.data.shards import iter_shard, plan_shards, write_shards


def manifest(n=10):
    return pd.DataFrame({
        "utt_id": [f"s{i % 3}/v/{i:03d}" for i in range(n)], "spk_id": [f"s{i % 3}" for i in range(n)],
        "session_id": "v", "path": [f"/data/{i}.wav" for i in range(n)], "sample_rate": np.int64(16000),
        "num_samples": np.arange(n, dtype=np.int64) + 16000, "duration_s": (np.arange(n) + 16000) / 16000,
    })


def test_plan_covers_every_utterance_once_in_seeded_order():
    df = manifest(10)
    tasks = plan_shards(df, "/out", utts_per_shard=4, seed=3)
    assert [p for p, _ in tasks] == ["/out/shard_000000.tar", "/out/shard_000001.tar", "/out/shard_000002.tar"]
    members = [m for _, group in tasks for m in group]
    assert [k for k, _, _ in members] == [f"{i:09d}" for i in range(10)]
    order = np.random.default_rng(3).permutation(10)
    assert [p for _, p, _ in members] == [f"/data/{j}.wav" for j in order]
    key, path, meta = members[0]
    j = int(order[0])
    assert meta == {"utt_id": f"s{j % 3}/v/{j:03d}", "spk_id": f"s{j % 3}", "session_id": "v",
                    "sample_rate": 16000, "num_samples": 16000 + j, "duration_s": (16000 + j) / 16000}
    assert all(type(meta[c]) is int for c in ("sample_rate", "num_samples"))


def test_metadata_values_without_json_form_are_left_out_and_missing_ones_are_null():
    df = manifest(4)
    df["score"] = [0.5, np.nan, np.inf, -1.0]
    df["tag"] = pd.Series(["a", None, "c", "d"], dtype="string")
    df["obj"] = pd.Series([{"k": 1}, object(), None, [1, 2]], dtype=object)
    df["flag"] = [True, False, True, False]
    df["sample_rate"] = [16000.0, 16000.0, 8000.0, 16000.0]
    metas = {m["num_samples"]: m for _, g in plan_shards(df, "/o", seed=0) for _, _, m in g}
    assert metas[16000]["score"] == 0.5 and metas[16001]["score"] is None and "score" not in metas[16002]
    assert metas[16001]["tag"] is None and metas[16002]["tag"] == "c"
    assert metas[16000]["obj"] == {"k": 1} and "obj" not in metas[16001] and metas[16002]["obj"] is None
    assert metas[16003]["obj"] == [1, 2] and metas[16000]["flag"] is True
    assert metas[16002]["sample_rate"] == 8000 and type(metas[16002]["sample_rate"]) is int


def test_write_shards_packs_the_plan(tmp_path):
    import soundfile as sf

    df = manifest(5)
    for i, p in enumerate(df.path):
        df.loc[i, "path"] = str(tmp_path / f"{i}.wav")
        sf.write(df.path[i], np.zeros(16000 + i, np.float32), 16000)
    plan = plan_shards(df, tmp_path / "shards", utts_per_shard=2)
    table = write_shards(df, tmp_path / "shards", utts_per_shard=2)
    assert table.shard_path.tolist() == [p for p, _ in plan]
    got = [s for p in table.shard_path for s in iter_shard(p, decode=False)]
    want = [m for _, g in plan for _, _, m in g]
    assert [{k: v for k, v in s.items() if k not in ("audio", "audio_name")} for s in got] == json.loads(
        json.dumps(want))
