"""Tar shards: round trip, determinism, checksums, corrupt members."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voxflow.audio.io import read_audio
from voxflow.data.shards import iter_shard, verify_shard, write_shards
from voxflow.errors import VoxflowError

SR = 16000


def make_corpus(root: Path, n: int = 23, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        num = int(rng.integers(1600, 12000))
        suffix = ".flac" if i % 3 == 0 else ".wav"
        spk = f"id{i % 4:05d}"
        path = root / spk / f"u{i}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), (0.2 * rng.standard_normal(num)).astype(np.float32), SR)
        rows.append(
            dict(utt_id=f"{spk}/sess/{i:03d}", spk_id=spk, session_id="sess", path=str(path), sample_rate=SR,
                 num_samples=num, duration_s=num / SR, gender="f" if i % 2 else "m", blob={1, 2})
        )
    return pd.DataFrame(rows)


def test_round_trip(tmp_path):
    df = make_corpus(tmp_path / "wav")
    shards = write_shards(df, tmp_path / "shards", utts_per_shard=5, seed=3)
    assert shards["num_utts"].tolist() == [5, 5, 5, 5, 3]
    assert [Path(p).name for p in shards["shard_path"]] == [f"shard_{i:06d}.tar" for i in range(5)]
    by_id = df.set_index("utt_id")
    seen = []
    for row in shards.itertuples():
        data = Path(row.shard_path).read_bytes()
        assert row.num_bytes == len(data) and row.sha256 == hashlib.sha256(data).hexdigest()
        verify_shard(row.shard_path, row.sha256)
        stats = {}
        for sample in iter_shard(row.shard_path, stats=stats):
            src = by_id.loc[sample["utt_id"]]
            ref, sr = read_audio(src["path"])
            assert sample["sample_rate"] == sr and sample["wav"].dtype == np.float32
            np.testing.assert_array_equal(sample["wav"], ref)
            assert sample["spk_id"] == src["spk_id"] and sample["num_samples"] == src["num_samples"]
            assert sample["gender"] == src["gender"] and "blob" not in sample and "path" not in sample
            seen.append(sample["utt_id"])
        assert stats == {"ok": row.num_utts}
    assert sorted(seen) == sorted(df["utt_id"]) and seen != df["utt_id"].tolist()  # all, shuffled


def test_members_are_original_bytes(tmp_path):
    df = make_corpus(tmp_path / "wav", n=6)
    shards = write_shards(df, tmp_path / "shards", utts_per_shard=10)
    with tarfile.open(shards["shard_path"][0]) as tar:
        names = tar.getnames()
        assert len(names) == 12 and names[0] == "000000000.json" and names[-2] == "000000005.json"
        for i in range(0, len(names), 2):
            meta = json.loads(tar.extractfile(names[i]).read())
            src = df.set_index("utt_id").loc[meta["utt_id"], "path"]
            assert names[i + 1] == names[i].replace(".json", Path(src).suffix)
            assert tar.extractfile(names[i + 1]).read() == Path(src).read_bytes()


def test_deterministic_and_parallel(tmp_path):
    df = make_corpus(tmp_path / "wav", n=12)
    a = write_shards(df, tmp_path / "a", utts_per_shard=4, seed=1)
    b = write_shards(df, tmp_path / "b", utts_per_shard=4, seed=1, jobs=2)
    c = write_shards(df, tmp_path / "c", utts_per_shard=4, seed=2)
    assert a["sha256"].tolist() == b["sha256"].tolist()
    assert a["sha256"].tolist() != c["sha256"].tolist()


def test_sha_mismatch_names_shard_and_digests(tmp_path):
    df = make_corpus(tmp_path / "wav", n=4)
    row = write_shards(df, tmp_path / "s", utts_per_shard=4).iloc[0]
    with pytest.raises(VoxflowError) as err:
        verify_shard(row.shard_path, "0" * 64)
    msg = str(err.value)
    assert row.shard_path in msg and "0" * 64 in msg and row.sha256 in msg
    with pytest.raises(VoxflowError, match="nope.tar.*not found"):
        verify_shard(tmp_path / "nope.tar", row.sha256)


def test_corrupt_member_is_skipped_and_counted(tmp_path):
    df = make_corpus(tmp_path / "wav", n=6)
    path = write_shards(df, tmp_path / "s", utts_per_shard=6).iloc[0].shard_path
    with tarfile.open(path) as tar:
        victim = tar.getmembers()[5]  # audio of the third utterance
        victim_key = victim.name.split(".")[0]
    raw = bytearray(Path(path).read_bytes())
    raw[victim.offset_data : victim.offset_data + 64] = b"\xff" * 64  # destroy the audio header
    Path(path).write_bytes(bytes(raw))
    stats = {}
    got = list(iter_shard(path, stats=stats))
    assert stats == {"ok": 5, "skipped": 1} and len(got) == 5
    with tarfile.open(path) as tar:
        victim_id = json.loads(tar.extractfile(f"{victim_key}.json").read())["utt_id"]
    assert victim_id not in {s["utt_id"] for s in got}


def test_truncated_shard_stops_without_crash(tmp_path):
    df = make_corpus(tmp_path / "wav", n=6)
    path = write_shards(df, tmp_path / "s", utts_per_shard=6).iloc[0].shard_path
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    stats = {}
    got = list(iter_shard(path, stats=stats))
    assert 1 <= len(got) < 6 and stats["skipped"] == 1 and stats["ok"] == len(got)


def test_write_errors_name_the_file(tmp_path):
    df = make_corpus(tmp_path / "wav", n=3)
    missing = df.copy()
    missing.loc[1, "path"] = str(tmp_path / "gone.wav")
    with pytest.raises(VoxflowError, match="gone.wav"):
        write_shards(missing, tmp_path / "s1")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 10)
    corrupt = df.copy()
    corrupt.loc[0, "path"] = str(bad)
    with pytest.raises(VoxflowError, match="bad.wav.*not a readable audio"):
        write_shards(corrupt, tmp_path / "s2")
    assert not list((tmp_path / "s2").glob("*.tar"))  # nothing half-written
    odd = df.copy()
    odd.loc[0, "path"] = str(tmp_path / "x.mp3")
    with pytest.raises(VoxflowError, match="x.mp3"):
        write_shards(odd, tmp_path / "s3")
    with pytest.raises(VoxflowError, match="lacks column"):
        write_shards(df.drop(columns=["spk_id"]), tmp_path / "s4")


def test_rewrite_with_fewer_shards_removes_stale_ones(tmp_path):
    df = make_corpus(tmp_path / "wav", n=12)
    out = tmp_path / "s"
    (out).mkdir()
    other = out / "notes.tar"
    other.write_bytes(b"x")  # not a shard name: left alone
    first = write_shards(df, out, utts_per_shard=3)
    assert len(first) == 4
    second = write_shards(df.iloc[:5], out, utts_per_shard=3)
    assert sorted(p.name for p in out.glob("shard_*.tar")) == ["shard_000000.tar", "shard_000001.tar"]
    assert other.exists() and second["num_utts"].tolist() == [3, 2]
    got = {s["utt_id"] for p in second["shard_path"] for s in iter_shard(p, decode=False, sha256=None)}
    assert got == set(df["utt_id"][:5])


def test_iter_shard_checks_digest_while_streaming(tmp_path):
    df = make_corpus(tmp_path / "wav", n=5)
    row = write_shards(df, tmp_path / "s", utts_per_shard=5).iloc[0]
    assert len(list(iter_shard(row.shard_path, sha256=row.sha256))) == 5
    raw = bytearray(Path(row.shard_path).read_bytes())
    raw[-1] = 1  # only the end-of-archive padding changes: every member still reads
    Path(row.shard_path).write_bytes(bytes(raw))
    assert len(list(iter_shard(row.shard_path))) == 5
    with pytest.raises(VoxflowError) as err:
        list(iter_shard(row.shard_path, sha256=row.sha256))
    assert row.shard_path in str(err.value) and row.sha256 in str(err.value)
    assert hashlib.sha256(bytes(raw)).hexdigest() in str(err.value)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_reader_handles_long_names_of_other_tar_writers(tmp_path, fmt):
    df = make_corpus(tmp_path / "wav", n=3)
    path = tmp_path / "foreign.tar"
    key = "k" * 120  # longer than a USTAR name field
    with tarfile.open(path, "w", format=fmt) as tar:
        for i, row in enumerate(df.itertuples()):
            meta = json.dumps({"utt_id": row.utt_id, "spk_id": row.spk_id}).encode()
            audio = (f"{key}{i}{Path(row.path).suffix}", Path(row.path).read_bytes())
            for name, data in ((f"{key}{i}.json", meta), audio):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    stats = {}
    got = list(iter_shard(path, stats=stats, sha256=hashlib.sha256(path.read_bytes()).hexdigest()))
    assert [s["utt_id"] for s in got] == df["utt_id"].tolist() and stats == {"ok": 3}
    for s, row in zip(got, df.itertuples()):
        np.testing.assert_array_equal(s["wav"], read_audio(row.path)[0])
