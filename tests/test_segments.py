"""Kaldi ``segments`` manifests (start_s/end_s of a longer recording): every reader reads only the segment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from voxflow.audio.features import extract_features
from voxflow.audio.io import read_audio
from voxflow.data.dataset import TrainDataset
from voxflow.corpora.kaldi import import_kaldi_dir
from voxflow.data.shards import iter_shard, write_shards
from voxflow.embed.extract import Embedder, embed_segments, embed_utterances
from voxflow.errors import VoxflowError
from voxflow.models import build
from voxflow.train.validation import ValidationSet, build_validation_set

SR = 16000
# (recording, suffix, seconds) and (utt, recording, start, end): several segments per recording, one open end
RECORDINGS = [("recA", ".wav", 9.0), ("recB", ".flac", 8.0), ("recC", ".wav", 7.0), ("recD", ".flac", 7.5)]
SEGMENTS = [
    ("spk1-a1", "recA", 0.37, 2.61), ("spk1-a2", "recA", 3.013, 6.2), ("spk1-b1", "recB", 1.25, 4.5),
    ("spk2-b2", "recB", 5.0, -1), ("spk2-c1", "recC", 0.5, 3.1), ("spk2-c2", "recC", 3.5, 6.9),
    ("spk3-d1", "recD", 0.0, 2.4), ("spk3-d2", "recD", 4.1, 7.2),
]


@pytest.fixture(scope="module")
def kaldi(tmp_path_factory):
    d = tmp_path_factory.mktemp("kaldi")
    rng = np.random.default_rng(0)
    audio = {}
    for k, (rec, suffix, seconds) in enumerate(RECORDINGS):
        n = int(seconds * SR)
        t = np.arange(n) / SR
        wav = 0.3 * np.sin(2 * np.pi * (90 + 35 * k) * t * (1 + t / 20)) + 0.05 * rng.standard_normal(n)
        path = d / f"{rec}{suffix}"
        sf.write(str(path), wav.astype(np.float32), SR, subtype="PCM_16")
        audio[rec], _ = sf.read(str(path), dtype="float32")
    (d / "wav.scp").write_text("".join(f"{r} {d / (r + s)}\n" for r, s, _ in RECORDINGS))
    (d / "segments").write_text("".join(f"{u} {r} {a} {b}\n" for u, r, a, b in SEGMENTS))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u, *_ in SEGMENTS))
    df = import_kaldi_dir(d)
    expected = {}
    for utt, rec, a, b in SEGMENTS:
        stop = len(audio[rec]) if b == -1 else int(round(b * SR))
        expected[utt] = audio[rec][int(round(a * SR)) : stop]
    return d, df, expected


def test_read_audio_reads_only_the_region(kaldi):
    _, df, expected = kaldi
    assert {"start_s", "end_s"} <= set(df.columns)
    for row in df.itertuples():
        wav, sr = read_audio(row.path, start_s=row.start_s, end_s=row.end_s)
        assert sr == SR and len(wav) == row.num_samples
        np.testing.assert_array_equal(wav, expected[row.utt_id])
    path = df.path[0]
    whole, _ = read_audio(path)
    np.testing.assert_array_equal(read_audio(path, start_s=float("nan"), end_s=None)[0], whole)
    np.testing.assert_array_equal(read_audio(path, start_s=8.5)[0], whole[int(8.5 * SR):])
    np.testing.assert_array_equal(read_audio(path, end_s=len(whole) / SR + 0.03)[0], whole)  # rounding slack
    with pytest.raises(VoxflowError, match="recA.wav.*beyond the end"):
        read_audio(path, start_s=8.0, end_s=9.5)
    with pytest.raises(VoxflowError, match="recA.wav.*empty"):
        read_audio(path, start_s=2.0, end_s=2.0)


def test_shards_hold_exactly_the_segments(kaldi, tmp_path):
    _, df, expected = kaldi
    table = write_shards(df, tmp_path / "shards", utts_per_shard=3, seed=1)
    seen = set()
    for p in table.shard_path:
        for sample in iter_shard(p):
            utt = sample["utt_id"]
            np.testing.assert_array_equal(sample["wav"], expected[utt])
            assert sample["num_samples"] == len(expected[utt]) and sample["sample_rate"] == SR
            seen.add(utt)
    assert seen == set(expected)
    again = write_shards(df, tmp_path / "again", utts_per_shard=3, seed=1)
    assert again.sha256.tolist() == table.sha256.tolist()  # re-encoded segments are deterministic


def test_training_raw_and_shards_use_the_segment(kaldi, tmp_path):
    _, df, expected = kaldi
    spk2id = {s: i for i, s in enumerate(sorted(df.spk_id.unique()))}
    cfg = {"chunk_s": 1.0, "shuffle_buffer": 3}
    table = write_shards(df, tmp_path / "shards", utts_per_shard=3, seed=1)
    raw = TrainDataset(df, spk2id, cfg, seed=4, with_keys=True)
    shard = TrainDataset(table, spk2id, cfg, seed=4, with_keys=True)
    got = {}
    for ds in (raw, shard):
        out = {}
        for feats, label, (utt, start, _) in DataLoader(ds, batch_size=None):
            ref = extract_features(torch.from_numpy(expected[utt][start : start + SR].copy()), SR, {})
            torch.testing.assert_close(feats, ref, atol=1e-4, rtol=0)
            out[utt] = (int(start), feats)
        got[len(got)] = out
    assert got[0].keys() == got[1].keys() == set(expected)
    for utt in expected:
        assert got[0][utt][0] == got[1][utt][0] and torch.equal(got[0][utt][1], got[1][utt][1])
    # random starts cover the segment, not the recording: a start is never past segment end - 1 s
    assert all(got[0][u][0] <= len(expected[u]) - SR for u in expected)


@pytest.fixture(scope="module")
def embedder():
    torch.manual_seed(0)
    model = build("xvector", feat_dim=80, channels=16, stats_channels=32, embed_dim=8).eval()
    return Embedder(model, {"data_cfg": {"sample_rate": SR}}, batch_size=3)


def test_extraction_embeds_the_segment(kaldi, embedder):
    _, df, expected = kaldi
    ids, full = embed_utterances(embedder, df, mode="full")
    assert ids == df.utt_id.tolist()
    for i, utt in enumerate(ids):
        with torch.no_grad():
            ref = embedder.model(embedder.features(expected[utt], SR)[None])[0].numpy()
        np.testing.assert_allclose(full[i], ref / np.linalg.norm(ref), atol=1e-5)
    segs, matrix = embed_segments(embedder, df, window_s=2.0, hop_s=1.0)
    for utt, group in segs.groupby("utt_id"):
        dur = len(expected[utt]) / SR
        assert group.start_s.min() == 0.0 and group.end_s.max() <= dur + 0.01  # utterance-relative times
    first = segs.index[segs.utt_id == "spk1-a2"][0]
    with torch.no_grad():
        ref = embedder.model(embedder.features(expected["spk1-a2"], SR)[:200][None])[0].numpy()
    np.testing.assert_allclose(matrix[first], ref, atol=1e-5)


def test_validation_segments_lie_inside_the_kaldi_segment(kaldi):
    _, df, expected = kaldi
    df = df.assign(session_id=[f"s{i % 2}" for i in range(len(df))])
    segs, pairs = build_validation_set(df, pairs=6, segment_s=2.0, seed=0)
    by_id = df.set_index("utt_id")
    feats = ValidationSet(segs, pairs).features({"sample_rate": SR})
    for row, f in zip(segs.itertuples(), feats):
        seg = by_id.loc[row.utt_id]
        assert seg.start_s <= row.start_s and row.end_s <= seg.end_s + 1e-9
        off = int(round((row.start_s - seg.start_s) * SR))
        ref = extract_features(torch.from_numpy(expected[row.utt_id][off : off + 2 * SR].copy()), SR, {})
        torch.testing.assert_close(f, ref, atol=1e-4, rtol=0)


def test_bucketed_extraction_equals_one_by_one(kaldi, embedder):
    _, df, _ = kaldi
    feats = [embedder.features(read_audio(r.path, start_s=r.start_s, end_s=r.end_s)[0], SR) for r in df.itertuples()]
    feats += [f[:200] for f in feats] + [f[50:250] for f in feats]  # equal-length windows share batches
    calls = []
    hook = embedder.model.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    try:
        bucketed = embedder.embed_feature_batch(feats)
    finally:
        hook.remove()
    with torch.no_grad():
        single = np.stack([embedder.model(f[None])[0].numpy() for f in feats])
    np.testing.assert_allclose(bucketed, single, atol=1e-5)
    assert len(calls) < len(feats) and all(b <= 3 for b, _, _ in calls)
    assert [t for _, t, _ in calls] == sorted(t for _, t, _ in calls)  # buckets in length order
    assert sum(b for b, _, _ in calls) == len(feats)
