"""Audio I/O, features and augmentation against direct references."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from voxflow.audio import augment
from voxflow.audio.features import (
    apply_cmn,
    energy_vad,
    extract_features,
    fbank,
    feature_dim,
    frame_log_energy,
    sliding_cmn,
)
from voxflow.audio.io import audio_info, decode_audio, read_audio, write_audio
from voxflow.errors import VoxflowError

SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")

def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---------------------------------------------------------------------------------- I/O
def test_write_read_round_trip_wav_and_flac(tmp_path):
    x = tone(440, 0.5, amp=0.999)
    for name in ("a.wav", "a.flac"):
        write_audio(tmp_path / name, x, SR)
        y, sr = read_audio(tmp_path / name)
        assert sr == SR and y.dtype == np.float32 and y.shape == x.shape
        assert np.abs(y - x).max() <= 0.5 / 32768 + 1e-9  # 16-bit rounding only
        assert audio_info(tmp_path / name) == (SR, len(x), 1)
    assert sf.info(str(tmp_path / "a.wav")).subtype == "PCM_16"
    write_audio(tmp_path / "a.wav", np.array([1.5, -1.5, 0.25], dtype=np.float32), SR)  # clipped
    np.testing.assert_array_equal(read_audio(tmp_path / "a.wav")[0], [32767 / 32768, -1.0, 0.25])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac", "a.wav"]  # no temporaries left


def test_multichannel_keeps_first_channel(tmp_path):
    left, right = tone(300, 0.2), tone(900, 0.2, amp=0.1)
    sf.write(str(tmp_path / "st.wav"), np.stack([left, right], axis=1), SR, subtype="FLOAT")
    y, _ = read_audio(tmp_path / "st.wav")
    np.testing.assert_array_equal(y, left)
    assert audio_info(tmp_path / "st.wav") == (SR, len(left), 2)


def test_pcm16_fast_path_matches_soundfile(tmp_path):
    rng = np.random.default_rng(9)
    stereo = (0.5 * rng.standard_normal((3001, 2))).clip(-1, 1).astype(np.float32)
    sf.write(str(tmp_path / "s.wav"), stereo, SR, subtype="PCM_16")
    data = (tmp_path / "s.wav").read_bytes()
    ref, _ = sf.read(str(tmp_path / "s.wav"), dtype="float32")
    y, sr = decode_audio(data, "s.wav")
    assert sr == SR
    np.testing.assert_array_equal(y, ref[:, 0])
    # an odd-sized extra chunk before 'data' is skipped with its pad byte, like soundfile does
    riff_end = data.index(b"data")
    extra = b"LIST" + (3).to_bytes(4, "little") + b"abc\x00"
    patched = data[:4] + (len(data) - 8 + len(extra)).to_bytes(4, "little") + data[8:riff_end] + extra + data[riff_end:]
    (tmp_path / "p.wav").write_bytes(patched)
    ref_p, _ = sf.read(str(tmp_path / "p.wav"), dtype="float32")
    np.testing.assert_array_equal(read_audio(tmp_path / "p.wav")[0], ref_p[:, 0])
    # a data chunk longer than the file is left to soundfile (which reads what is there)
    short = data[:-100]
    np.testing.assert_array_equal(decode_audio(short, "t.wav")[0], sf.read(io.BytesIO(short), dtype="float32")[0][:, 0])


def test_resample_on_read(tmp_path):
    sf.write(str(tmp_path / "n.wav"), tone(200, 1.0, sr=8000), 8000)
    y, sr = read_audio(tmp_path / "n.wav", expected_sr=16000, resample=True)
    assert sr == 16000 and len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 200) <= 1.0  # still a 200 Hz tone


def test_read_errors_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x01garbage" + bytes(range(200)))
    with pytest.raises(VoxflowError, match="corrupt.wav.*cannot decode"):
        read_audio(bad)
    with pytest.raises(VoxflowError, match="corrupt.wav"):
        audio_info(bad)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(VoxflowError, match="empty.wav.*empty"):
        read_audio(empty)
    zero = tmp_path / "zero.wav"
    sf.write(str(zero), np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(VoxflowError, match="zero.wav.*no samples"):
        read_audio(zero)
    rate = tmp_path / "rate.wav"
    sf.write(str(rate), tone(100, 0.1, sr=8000), 8000)
    with pytest.raises(VoxflowError, match=r"rate.wav.*8000 Hz.*16000 Hz"):
        read_audio(rate, expected_sr=16000)
    with pytest.raises(VoxflowError, match="missing.wav.*not found"):
        read_audio(tmp_path / "missing.wav")
    with pytest.raises(VoxflowError, match="member.wav.*cannot decode"):
        decode_audio(b"\x00" * 100, "shard.tar:member.wav")
    with pytest.raises(VoxflowError, match="out.mp3"):
        write_audio(tmp_path / "out.mp3", tone(100, 0.1), SR)


# ----------------------------------------------------------------------------- features
@pytest.fixture
def speech_like():
    rng = np.random.default_rng(0)
    x = 0.3 * rng.standard_normal(SR * 2).astype(np.float32) + tone(150, 2.0)
    return torch.from_numpy(x)


def test_fbank_equals_kaldi(speech_like):
    ref = kaldi.fbank(
        speech_like.unsqueeze(0) * 32768, num_mel_bins=80, frame_length=25.0, frame_shift=10.0,
        dither=0.0, sample_frequency=SR, window_type="hamming", energy_floor=0.0,
    )
    raw = extract_features(speech_like, SR, {"cmn": "none"})
    assert raw.shape == (198, 80) and raw.dtype == torch.float32
    torch.testing.assert_close(raw, ref)
    cmn = extract_features(speech_like, SR, {})
    torch.testing.assert_close(cmn, ref - ref.mean(0))
    assert feature_dim({}) == 80


@pytest.mark.parametrize(
    "sr,bins,length_ms,shift_ms", [(16000, 80, 25.0, 10.0), (16000, 40, 32.0, 12.5), (8000, 23, 25.0, 10.0),
                                   (22050, 64, 20.0, 10.0)]
)
def test_fbank_matches_kaldi_across_settings(sr, bins, length_ms, shift_ms):
    x = torch.from_numpy(np.random.default_rng(sr + bins).uniform(-0.5, 0.5, int(1.3 * sr)).astype(np.float32))
    x[: sr // 10] = 0.0  # digital silence hits the log floor
    ref = kaldi.fbank(
        x.unsqueeze(0) * 32768, num_mel_bins=bins, frame_length=length_ms, frame_shift=shift_ms,
        dither=0.0, sample_frequency=sr, window_type="hamming", energy_floor=0.0,
    )
    got = fbank(x, sr, bins, length_ms, shift_ms)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-5)
    torch.manual_seed(0)
    dithered = fbank(x, sr, bins, length_ms, shift_ms, dither=1.0)  # the kaldi.fbank path itself
    torch.manual_seed(0)
    ref_d = kaldi.fbank(
        x.unsqueeze(0) * 32768, num_mel_bins=bins, frame_length=length_ms, frame_shift=shift_ms,
        dither=1.0, sample_frequency=sr, window_type="hamming", energy_floor=0.0,
    )
    torch.testing.assert_close(dithered, ref_d)


def test_mfcc_equals_kaldi_with_sliding_cmn(speech_like):
    cfg = {"kind": "mfcc", "num_ceps": 30, "num_mel_bins": 30, "cmn": "sliding", "cmn_window": 50}
    ref = kaldi.mfcc(speech_like.unsqueeze(0) * 32768, num_ceps=30, num_mel_bins=30, sample_frequency=SR, dither=0.0)
    ref = AF.sliding_window_cmn(ref, cmn_window=50, center=True)
    got = extract_features(speech_like, SR, cfg)
    assert got.shape == (198, 30) and feature_dim(cfg) == 30
    torch.testing.assert_close(got, ref, atol=1e-3, rtol=1e-5)  # torchaudio sums in float32


def brute_sliding_cmn(x: np.ndarray, window: int, norm_vars: bool) -> np.ndarray:
    n = len(x)
    out = np.empty_like(x)
    for t in range(n):
        width = min(window, n)
        start = min(max(t - window // 2, 0), n - width)
        seg = x[start : start + width]
        out[t] = x[t] - seg.mean(0)
        if norm_vars:
            out[t] /= seg.std(0)
    return out


@pytest.mark.parametrize("n", [40, 300, 301, 650])
@pytest.mark.parametrize("norm_vars", [False, True])
def test_sliding_cmn_equals_brute_force(n, norm_vars):
    x = np.random.default_rng(n).normal(3.0, 2.0, size=(n, 4))
    got = sliding_cmn(torch.from_numpy(x), window=300, norm_vars=norm_vars).numpy()
    np.testing.assert_allclose(got, brute_sliding_cmn(x, 300, norm_vars), atol=1e-9)


def test_apply_cmn_zero_mean_unit_var():
    x = torch.randn(100, 3) * 5 + 7
    y = apply_cmn(x, norm_vars=True)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)


def test_energy_vad_drops_silence():
    rng = np.random.default_rng(1)
    speech = tone(200, 1.0) + 0.05 * rng.standard_normal(SR).astype(np.float32)
    silence = 1e-4 * rng.standard_normal(SR).astype(np.float32)
    x = torch.from_numpy(np.concatenate([speech, silence, speech]))
    voiced = energy_vad(frame_log_energy(x, SR))
    assert voiced.shape == (298,)
    assert voiced[:95].all() and voiced[205:].all()
    assert not voiced[105:195].any()
    assert 190 <= int(voiced.sum()) <= 210
    feats = extract_features(x, SR, {"vad": True})
    assert feats.shape[0] == int(voiced.sum())
    full = extract_features(x, SR, {})  # CMN over all frames, then selection
    torch.testing.assert_close(feats, full[voiced])


def test_features_config_errors():
    with pytest.raises(VoxflowError, match="'num_mels'"):
        extract_features(torch.zeros(16000), SR, {"num_mels": 40})
    with pytest.raises(VoxflowError, match="cmn"):
        extract_features(torch.zeros(16000), SR, {"cmn": "global"})
    with pytest.raises(VoxflowError, match="shorter than one"):
        extract_features(torch.zeros(100), SR, {})


# ---------------------------------------------------------------------------- augmentation
def snr_db(clean: torch.Tensor, mixed: torch.Tensor) -> float:
    noise = (mixed - clean).double()
    return 10 * math.log10(float(clean.double().pow(2).mean()) / float(noise.pow(2).mean()))


@pytest.mark.parametrize("noise_len", [3000, 48000])  # looped and cropped
@pytest.mark.parametrize("target", [0.0, 7.5, 20.0])
def test_add_noise_hits_snr(noise_len, target):
    rng = np.random.default_rng(2)
    clean = torch.from_numpy(tone(300, 2.0))
    noise = torch.from_numpy(rng.uniform(-1, 1, noise_len).astype(np.float32))
    mixed = augment.add_noise(clean, noise, target, rng)
    assert mixed.shape == clean.shape
    assert abs(snr_db(clean, mixed) - target) < 0.5


def test_babble_mix_is_sum_of_scaled_clips():
    rng = np.random.default_rng(3)
    clean = torch.from_numpy(tone(300, 1.0))
    clips = [torch.from_numpy(rng.standard_normal(5000).astype(np.float32)) for _ in range(3)]
    mixed = augment.add_noises(clean, clips, [13.0, 13.0, 13.0], rng)
    # three independent clips at 13 dB each: total SNR ~ 13 - 10 log10(3)
    assert abs(snr_db(clean, mixed) - (13 - 10 * math.log10(3))) < 0.5


def test_reverb_keeps_length_and_alignment():
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.standard_normal(16000).astype(np.float32))
    t = np.arange(4000)
    rir = (rng.standard_normal(4000) * np.exp(-t / 600.0) * 0.3).astype(np.float32)
    rir[:120] = 0.0
    rir[120] = 1.0  # direct path after 120 samples
    y = augment.reverberate(x, torch.from_numpy(rir))
    assert y.shape == x.shape
    xc = np.correlate(y.numpy(), x.numpy(), mode="full")
    assert np.argmax(np.abs(xc)) - (len(x) - 1) == 0
    assert abs(float(y.pow(2).mean()) / float(x.pow(2).mean()) - 1) < 1e-4
    yp = augment.reverberate(x, torch.from_numpy(rir), rescale="peak")
    assert abs(float(yp.abs().max()) - float(x.abs().max())) < 1e-5
    # against a direct (non-FFT) convolution
    h = rir / np.linalg.norm(rir)
    ref = np.convolve(x.numpy().astype(np.float64), h)[120 : 120 + len(x)]
    ref *= np.sqrt(np.mean(x.numpy().astype(np.float64) ** 2) / np.mean(ref**2))
    np.testing.assert_allclose(y.numpy(), ref, atol=2e-4)


def test_reverb_spectrum_cache_gives_the_same_output_and_stays_bounded():
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.standard_normal(16000).astype(np.float32))
    rirs = [torch.from_numpy((rng.standard_normal(3000) * np.exp(-np.arange(3000) / 300.0)).astype(np.float32))
            for _ in range(4)]
    one = augment.reverberate(x, rirs[0]).numpy().nbytes  # ~ size of one cached spectrum
    cache = augment.SpectrumCache(max_bytes=int(2.5 * one))
    for _ in range(2):
        for i, h in enumerate(rirs):
            np.testing.assert_array_equal(augment.reverberate(x, h, cache=cache, key=i).numpy(),
                                          augment.reverberate(x, h).numpy())
    assert 1 <= len(cache._items) <= 2 and cache.bytes <= cache.max_bytes
    hit = cache.get(3, augment.fft_size(16000 + 3000 - 1), rirs[3])
    assert hit is cache.get(3, augment.fft_size(16000 + 3000 - 1), rirs[0])  # keyed: not recomputed
    with pytest.raises(VoxflowError, match="all zeros"):
        augment.reverberate(x, torch.zeros(10), cache=cache, key="z")


def test_babble_equals_sequential_mixing():
    rng = np.random.default_rng(6)
    clean = torch.from_numpy(rng.standard_normal(8000).astype(np.float32))
    clips = [torch.from_numpy(rng.standard_normal(n).astype(np.float32)) for n in (3000, 9000, 20000)]
    clips.append(torch.zeros(12000))  # silent clip: contributes nothing
    snrs = [5.0, 10.0, 15.0, 0.0]
    mixed = augment.add_noises(clean, clips, snrs, np.random.default_rng(1))
    ref, r = clean.clone().double(), np.random.default_rng(1)
    p_sig = float(clean.double().pow(2).mean())
    for clip, snr in zip(clips, snrs):
        seg = augment.fit_length(clip, 8000, r).double()
        p = float(seg.pow(2).mean())
        if p > 0:
            ref += math.sqrt(p_sig / (p * 10 ** (snr / 10))) * seg
    np.testing.assert_allclose(mixed.numpy(), ref.numpy(), atol=1e-5)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_changes_duration_and_pitch(factor):
    x = torch.from_numpy(tone(200, 2.0))
    y = augment.speed_perturb(x, SR, factor)
    assert y.numel() == math.ceil(len(x) / factor)
    spectrum = np.abs(np.fft.rfft(y.numpy()))
    assert abs(np.argmax(spectrum) * SR / y.numel() - 200 * factor) <= 1.0
    assert augment.speed_perturb(x, SR, 1.0).numel() == len(x)


def test_spec_augment_masks_within_limits():
    rng = np.random.default_rng(5)
    feats = torch.randn(200, 80) + 10.0  # no natural zeros
    out = augment.spec_augment(feats, rng, num_t_masks=2, max_t=10, num_f_masks=1, max_f=8)
    zero_rows = (out == 0).all(1).sum().item()
    zero_cols = (out == 0).all(0).sum().item()
    assert 1 <= zero_rows <= 20 and 1 <= zero_cols <= 8
    assert (feats != 0).all()  # input untouched
    kept = (out != 0)
    torch.testing.assert_close(out[kept], feats[kept])
