"""The streaming training dataset: coverage, determinism, raw/shard equivalence, chain steps."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio
from torch.utils.data import DataLoader

from voxflow.audio.augment import speed_perturb
from voxflow.audio.features import extract_features
from voxflow.data import chain
from voxflow.data.config import num_classes, validate_data_cfg
from voxflow.data.dataset import TrainDataset, build_train_loader
from voxflow.data.shards import write_shards
from voxflow.errors import VoxflowError

SR = 16000
L = 2 * SR  # 2 s chunks


pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        num = int(rng.integers(int(0.6 * SR), 4 * SR))
        spk = f"spk{i % 4}"
        path = root / f"{spk}_{i}.wav"
        t = np.arange(num) / SR
        wav = 0.3 * np.sin(2 * np.pi * (100 + 20 * i) * t) + 0.05 * rng.standard_normal(num)
        sf.write(str(path), wav.astype(np.float32), SR)
        rows.append(dict(utt_id=f"{spk}/s{i % 2}/{i:02d}", spk_id=spk, session_id=f"s{i % 2}", path=str(path),
                         sample_rate=SR, num_samples=num, duration_s=num / SR))
    df = pd.DataFrame(rows)
    noise_rows = []
    for j, kind in enumerate(["noise", "noise", "music", "babble", "babble", "babble"]):
        p = root / f"noise{j}.wav"
        sf.write(str(p), (0.1 * rng.standard_normal(int(rng.integers(3000, 40000)))).astype(np.float32), SR)
        noise_rows.append(dict(path=str(p), kind=kind))
    rir_rows = []
    for j in range(2):
        p = root / f"rir{j}.wav"
        h = rng.standard_normal(3000) * np.exp(-np.arange(3000) / 400.0) * 0.2
        h[50 + j] = 1.0
        sf.write(str(p), (h / np.abs(h).max()).astype(np.float32), SR)
        rir_rows.append(dict(path=str(p)))
    shards4 = write_shards(df, root / "shards4", utts_per_shard=4, seed=5)["shard_path"].tolist()
    shards10 = write_shards(df, root / "shards10", utts_per_shard=10, seed=5)["shard_path"].tolist()
    spk2id = {f"spk{k}": k for k in range(4)}
    return dict(df=df, noise=pd.DataFrame(noise_rows), rir=pd.DataFrame(rir_rows), shards4=shards4,
                shards10=shards10, spk2id=spk2id)


def keyed(ds: TrainDataset, num_workers: int = 0) -> list[tuple]:
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers)
    return [(feats, int(label), key) for feats, label, key in loader]


def as_dict(samples) -> dict:
    return {(k[0], int(k[1]), float(k[2])): (f, lab) for f, lab, k in samples}


@pytest.mark.parametrize("source", ["shards4", "shards10", "raw"])  # 6 shards, 3 shards (< 4 readers), raw files
def test_each_utterance_once_per_epoch_2_ranks_2_workers(corpus, source):
    src = corpus["df"] if source == "raw" else corpus[source]
    seen = Counter()
    for rank in (0, 1):
        ds = TrainDataset(src, corpus["spk2id"], {"shuffle_buffer": 3}, seed=1, rank=rank, world_size=2, with_keys=True)
        ds.set_epoch(3)
        seen.update(key[0] for _, _, key in keyed(ds, num_workers=2))
    assert seen == Counter(corpus["df"]["utt_id"].tolist())


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(f.clone(), lab.clone()) for f, lab in loader]


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_same_seed_same_batches(corpus):
    cfg = {"batch_size": 4, "speed_perturb": True, "aug_prob": 0.6, "spec_aug": True, "shuffle_buffer": 5,
           "drop_last": False}
    def run(workers, epoch=2, seed=7):
        c = {**cfg, "num_workers": workers}
        return batches(build_train_loader(corpus["shards4"], corpus["spk2id"], c, epoch, seed,
                                          noise_df=corpus["noise"], rir_df=corpus["rir"]))
    a0, a2 = run(0), run(2)
    assert sum(len(b[1]) for b in a0) == 24 and a0[0][0].shape == (4, 198, 80)
    assert a0[0][0].dtype == torch.float32 and a0[0][1].dtype == torch.int64
    assert same(a0, run(0)) and same(a2, run(2))
    assert not same(a0, run(0, epoch=3)) and not same(a0, run(0, seed=8))
    # per-utterance seeding: the same samples whatever the worker count, only grouped differently
    def flat(bs):
        return sorted(((int(lab), float(f.abs().sum())), f) for fb, lb in bs for f, lab in zip(fb, lb))
    for (ka, fa), (kb, fb) in zip(flat(a0), flat(a2), strict=True):
        assert ka[0] == kb[0]
        torch.testing.assert_close(fa, fb, atol=1e-3, rtol=1e-4)


def test_drop_last_gives_fixed_batches(corpus):
    loader = build_train_loader(corpus["df"], corpus["spk2id"], {"batch_size": 5}, 0, 0)
    shapes = [tuple(f.shape) for f, _ in loader]
    assert shapes == [(5, 198, 80)] * 4


def test_raw_mode_equals_shard_mode(corpus):
    cfg = {"speed_perturb": True, "aug_prob": 0.8, "spec_aug": True, "shuffle_buffer": 4}
    kw = dict(seed=11, with_keys=True, noise_df=corpus["noise"], rir_df=corpus["rir"])
    raw = TrainDataset(corpus["df"], corpus["spk2id"], cfg, **kw)
    shard = TrainDataset(corpus["shards4"], corpus["spk2id"], cfg, **kw)
    for ds in (raw, shard):
        ds.set_epoch(4)
    r, s = as_dict(keyed(raw)), as_dict(keyed(shard))
    assert len(r) == 24 and r.keys() == s.keys()
    for k in r:
        assert r[k][1] == s[k][1] and torch.equal(r[k][0], s[k][0])


def test_speed_perturbation_labels_and_samples(corpus):
    spk2id, n = corpus["spk2id"], len(corpus["spk2id"])
    assert num_classes(spk2id, {"speed_perturb": True}) == 3 * n and num_classes(spk2id, {}) == n
    ds = TrainDataset(corpus["df"], spk2id, {"speed_perturb": True}, seed=0, with_keys=True)
    by_id = corpus["df"].set_index("utt_id")
    factors, checked = Counter(), 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for feats, label, (utt, start, factor) in keyed(ds):
            k = {1.0: 0, 0.9: 1, 1.1: 2}[factor]
            assert label == spk2id[by_id.loc[utt, "spk_id"]] + k * n
            factors[factor] += 1
            wav, _ = sf.read(by_id.loc[utt, "path"], dtype="float32")
            full = speed_perturb(torch.from_numpy(wav), SR, factor)  # whole-utterance reference
            if full.numel() > L and checked < 12:
                ref = extract_features(full[start : start + L], SR, {})
                torch.testing.assert_close(feats, ref, atol=2e-3, rtol=1e-4)
                checked += 1
    assert set(factors) == {0.9, 1.0, 1.1} and checked == 12


@pytest.mark.parametrize(
    "sr_in,factor", [(8000, 0.9), (8000, 1.1), (16000, 0.9), (16000, 1.0), (16000, 1.1), (22050, 1.0), (48000, 0.9)]
)
def test_render_equals_full_resample(sr_in, factor):
    x = torch.randn(40000, generator=torch.Generator().manual_seed(0))
    o, n = chain.rate_ratio(sr_in, SR, factor)
    full = torchaudio.functional.resample(x, o, n)
    size = chain.target_length(x.numel(), o, n)
    assert size == full.numel()
    for j0 in (0, 7, 1001, size // 2, size - 3000):
        torch.testing.assert_close(chain.render(x, o, n, j0, j0 + 3000), full[j0 : j0 + 3000], atol=1e-4, rtol=0)


def overlap(a: float, b: float, intervals) -> float:
    return sum(max(0.0, min(b, e) - max(a, s)) for s, e in intervals)


def test_random_chunks_avoid_excluded_segments(corpus):
    df = corpus["df"]
    long_utts = df[df["num_samples"] > 3.5 * SR]["utt_id"].tolist()
    target, gone = long_utts[0], long_utts[1]
    excluded = {target: [(0.0, 1.5), (3.0, 3.2)], gone: [(0.0, 10.0)]}
    cfg = {"speed_perturb": True}
    ds = TrainDataset(df[df["utt_id"].isin(long_utts[:3])], corpus["spk2id"], cfg, seed=2, with_keys=True,
                      excluded=excluded)
    starts = []
    for epoch in range(40):
        ds.set_epoch(epoch)
        keys = [k for _, _, k in keyed(ds)]
        assert gone not in {k[0] for k in keys}
        for utt, start, factor in keys:
            if utt == target:
                a = start * factor / SR  # back to original seconds
                win = 2.0 * factor
                assert overlap(a, a + win, excluded[target]) <= 0.5 * win + 1.0 / SR
                starts.append(round(a, 3))
    assert len(starts) == 40 and len(set(starts)) > 20
    assert min(starts) < 0.7  # the valid region starts at 0.5 s (0.45 s at speed 0.9)


def test_sliding_windows_drop_excluded(corpus):
    df = corpus["df"]
    n_samples = dict(zip(df["utt_id"], df["num_samples"]))
    target = df.loc[df["num_samples"].idxmax(), "utt_id"]  # longest: > 3 s
    excluded = {target: [(1.0, 3.0)]}
    cfg = {"chunking": "sliding", "chunk_s": 2.0, "chunk_hop_s": 1.0}
    ds = TrainDataset(df, corpus["spk2id"], cfg, seed=0, with_keys=True, excluded=excluded,
                      excluded_utts={df["utt_id"][0]})
    got = Counter()
    starts = {}
    for feats, _, (utt, start, _) in keyed(ds):
        assert feats.shape == (198, 80)
        got[utt] += 1
        starts.setdefault(utt, []).append(start)
    for utt, num in n_samples.items():
        if utt == df["utt_id"][0]:
            assert utt not in got
        elif utt != target:
            assert got[utt] == (1 if num <= L else (num - L) // SR + 1)
    all_starts = [s for s in range(0, n_samples[target] - L + 1, SR)]
    expected = [s for s in all_starts if overlap(s / SR, s / SR + 2.0, excluded[target]) <= 1.0]
    assert sorted(starts[target]) == expected and len(expected) < len(all_starts)


def test_short_utterance_is_padded_by_repetition(corpus):
    df = corpus["df"]
    short = df[df["num_samples"] < L].iloc[[0]]
    ds = TrainDataset(short, corpus["spk2id"], {}, seed=0, with_keys=True)
    [(feats, _, (_, start, _))] = keyed(ds)
    wav, _ = sf.read(short["path"].iloc[0], dtype="float32")
    ref = extract_features(torch.from_numpy(np.tile(wav, math.ceil(L / len(wav)))[:L]), SR, {})
    assert start == 0
    torch.testing.assert_close(feats, ref)


def test_augmentation_changes_samples_and_vad_keeps_length(corpus):
    df = corpus["df"].iloc[:6]
    clean = as_dict(keyed(TrainDataset(df, corpus["spk2id"], {}, seed=0, with_keys=True)))
    for kw in ({"noise_df": corpus["noise"]}, {"rir_df": corpus["rir"]}):
        aug = as_dict(keyed(TrainDataset(df, corpus["spk2id"], {"aug_prob": 1.0}, seed=0, with_keys=True, **kw)))
        assert aug.keys() == clean.keys()
        assert all(not torch.allclose(aug[k][0], clean[k][0], atol=1e-3) for k in aug)
    cfg = {"features": {"kind": "mfcc", "num_ceps": 30, "num_mel_bins": 30, "cmn": "sliding", "vad": True}}
    vad = keyed(TrainDataset(df, corpus["spk2id"], cfg, seed=0, with_keys=True))
    assert len(vad) == 6 and all(f.shape == (198, 30) for f, _, _ in vad)


def test_resampling_and_errors(corpus, tmp_path):
    p = tmp_path / "eight.wav"
    sf.write(str(p), (0.2 * np.random.default_rng(0).standard_normal(3 * 8000)).astype(np.float32), 8000)
    row = pd.DataFrame([dict(utt_id="spk0/x/1", spk_id="spk0", session_id="x", path=str(p), sample_rate=8000,
                             num_samples=24000, duration_s=3.0)])
    [(feats, label)] = list(TrainDataset(row, corpus["spk2id"], {}, seed=0))
    assert feats.shape == (198, 80) and label == 0
    odd = tmp_path / "odd.wav"
    sf.write(str(odd), (0.2 * np.random.default_rng(1).standard_normal(3 * 22050)).astype(np.float32), 22050)
    row22 = row.assign(path=str(odd), utt_id="spk1/x/2", spk_id="spk1")
    ds = TrainDataset(row22, corpus["spk2id"], {"speed_perturb": True}, seed=0, with_keys=True)
    factors = set()
    for epoch in range(6):  # 22.05 kHz with speed perturbation: resampled to 16 kHz first, then perturbed
        ds.set_epoch(epoch)
        [(feats, label, (_, start, factor))] = keyed(ds)
        wav16 = torchaudio.functional.resample(torch.from_numpy(sf.read(str(odd), dtype="float32")[0]), 22050, SR)
        ref = extract_features(speed_perturb(wav16, SR, factor)[start : start + L], SR, {})
        torch.testing.assert_close(feats, ref, atol=2e-3, rtol=1e-4)
        factors.add(factor)
    assert len(factors) >= 2
    with pytest.raises(VoxflowError, match=r"eight.wav.*8000 Hz.*16000 Hz"):
        list(TrainDataset(row, corpus["spk2id"], {"resample": False}, seed=0))
    with pytest.raises(VoxflowError, match="spk9"):
        list(TrainDataset(row.assign(spk_id="spk9"), corpus["spk2id"], {}, seed=0))


def test_config_errors(corpus):
    with pytest.raises(VoxflowError, match="'chunk_len'"):
        validate_data_cfg({"chunk_len": 2})
    with pytest.raises(VoxflowError, match=r"data.features.*'mels'"):
        validate_data_cfg({"features": {"mels": 80}})
    with pytest.raises(VoxflowError, match="snr_db.*'speech'"):
        validate_data_cfg({"snr_db": {"speech": [0, 5]}})
    with pytest.raises(VoxflowError, match="chunking"):
        validate_data_cfg({"chunking": "fixed"})
    with pytest.raises(VoxflowError, match="aug_prob"):
        TrainDataset(corpus["df"], corpus["spk2id"], {"aug_prob": 0.5})
    with pytest.raises(VoxflowError, match="kind"):
        TrainDataset(corpus["df"], corpus["spk2id"], {"aug_prob": 0.5}, noise_df=corpus["rir"])
    with pytest.raises(VoxflowError, match="rank"):
        TrainDataset(corpus["df"], corpus["spk2id"], {}, rank=2, world_size=2)
    assert validate_data_cfg({})["snr_db"] == {"noise": [0.0, 15.0], "music": [5.0, 15.0], "babble": [13.0, 20.0]}
    with pytest.raises(VoxflowError, match="empty"):
        TrainDataset([], corpus["spk2id"], {})


def test_main_process_chain_leaves_torch_threads_alone(corpus):
    torch.set_num_threads(2)
    try:
        seen = [torch.get_num_threads() for _ in TrainDataset(corpus["df"].iloc[:3], corpus["spk2id"], {}, seed=0)]
        assert seen == [2, 2, 2]
    finally:
        torch.set_num_threads(1)


def _shard_table(corpus, tmp_path, per_shard=6):
    return write_shards(corpus["df"], tmp_path / "shards", utts_per_shard=per_shard, seed=2)


def _flip_audio_byte(path, member_index: int, offset: int = 2000):
    import tarfile
    from pathlib import Path

    with tarfile.open(path) as tar:
        member = [m for m in tar.getmembers() if not m.name.endswith(".json")][member_index]
    raw = bytearray(Path(path).read_bytes())
    raw[member.offset_data + offset] ^= 0x55  # a sample changes: still decodable, digest differs
    Path(path).write_bytes(bytes(raw))


@pytest.mark.parametrize("workers", [0, 2])
def test_training_verifies_shard_digests(corpus, tmp_path, workers):
    table = _shard_table(corpus, tmp_path)
    intact = TrainDataset(table, corpus["spk2id"], {"shuffle_buffer": 2}, seed=0)
    assert len(list(DataLoader(intact, batch_size=None, num_workers=workers))) == 24
    victim = table["shard_path"][2]
    _flip_audio_byte(victim, 1)
    ds = TrainDataset(table, corpus["spk2id"], {"shuffle_buffer": 2}, seed=0)
    with pytest.raises(VoxflowError) as err:
        list(DataLoader(ds, batch_size=None, num_workers=workers))
    msg = str(err.value)
    assert victim in msg and "checksum mismatch" in msg and table["sha256"][2] in msg
    # a plain list of paths carries no digests: the altered shard trains (one sample differs)
    assert len(list(TrainDataset(table["shard_path"].tolist(), corpus["spk2id"], {}, seed=0))) == 24


def test_truncated_shard_with_digest_is_an_error(corpus, tmp_path):
    from pathlib import Path

    table = _shard_table(corpus, tmp_path)
    victim = Path(table["shard_path"][0])
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(VoxflowError, match=f"{victim.name}.*checksum mismatch"):
        list(TrainDataset(table, corpus["spk2id"], {}, seed=0))


def test_corrupt_member_is_skipped_and_counted_in_training(corpus, tmp_path):
    import tarfile
    from pathlib import Path

    paths = _shard_table(corpus, tmp_path)["shard_path"].tolist()  # no digests: member-level handling
    with tarfile.open(paths[1]) as tar:
        victim = [m for m in tar.getmembers() if not m.name.endswith(".json")][0]
    raw = bytearray(Path(paths[1]).read_bytes())
    raw[victim.offset_data : victim.offset_data + 44] = b"\xff" * 44  # undecodable header
    Path(paths[1]).write_bytes(bytes(raw))
    ds = TrainDataset(paths, corpus["spk2id"], {"shuffle_buffer": 2}, seed=0)
    samples = list(ds)
    assert len(samples) == 23 and ds.stats["skipped_unreadable"] == 1 and ds.stats["samples"] == 23


def test_random_chunk_length_per_batch(corpus):
    cfg = {"batch_size": 4, "chunk_s": 1.0, "chunk_s_max": 3.0, "shuffle_buffer": 3, "drop_last": False}
    def shapes(workers, seed=3):
        loader = build_train_loader(corpus["df"], corpus["spk2id"], {**cfg, "num_workers": workers}, 1, seed)
        return [tuple(f.shape) for f, _ in loader]
    a = shapes(0)
    assert sum(s[0] for s in a) == 24 and len(a) == 6
    frames = [s[1] for s in a]
    assert len(set(frames)) > 2 and all(98 <= f <= 298 for f in frames)  # 1-3 s at 10 ms, 25 ms windows
    assert shapes(0) == a and shapes(0, seed=4) != a and len(shapes(2)) == 6
    ds = TrainDataset(corpus["df"], corpus["spk2id"], cfg, seed=3)
    ds.set_epoch(1)
    lens = [ds.batch_chunk_len(0, b) for b in range(400)]
    secs = np.array(lens) / SR
    assert secs.min() >= 1.0 and secs.max() <= 3.0 and abs(secs.mean() - 2.0) < 0.1
    assert np.allclose(secs * 100, np.round(secs * 100))  # on the 10 ms grid
    with pytest.raises(VoxflowError, match="chunk_s_max"):
        validate_data_cfg({"chunk_s": 2.0, "chunk_s_max": 1.5})
    with pytest.raises(VoxflowError, match="chunk_s_max.*random"):
        validate_data_cfg({"chunk_s_max": 3.0, "chunking": "sliding"})
    assert validate_data_cfg({})["chunk_s_max"] is None


def test_loader_verifies_digests_in_the_jobs_first_epoch(corpus, tmp_path):
    table = _shard_table(corpus, tmp_path)
    def run(epoch):
        return sum(len(lab) for _, lab in build_train_loader(table, corpus["spk2id"], {"batch_size": 4}, epoch, 0))
    assert run(5) == 24  # first epoch of this "job": verified
    _flip_audio_byte(table["shard_path"][0], 0)
    assert run(6) == 24  # later epochs trust the shards verified in epoch 5
    with pytest.raises(VoxflowError, match="shard_000000.tar.*checksum mismatch"):
        run(5)
