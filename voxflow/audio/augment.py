"""Signal and feature augmentation: additive noise at an exact SNR, reverberation, speed
perturbation, SpecAugment. Waveforms are 1-D float32 torch tensors (numpy arrays are accepted);
randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import scipy.fft
import torch
import torchaudio.functional as AF

from voxflow.errors import VoxflowError


def _tensor(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float32)
    if t.dim() != 1 or t.numel() == 0:
        raise VoxflowError(f"augment: {name} must be non-empty 1-D audio, got shape {tuple(t.shape)}")
    return t


def _power(x: torch.Tensor) -> float:
    """Mean power of a signal, via a float32 norm (no float64 copy: that copy costs more than the rest)."""
    return float(torch.linalg.vector_norm(x)) ** 2 / x.numel()


def fit_length(noise: torch.Tensor, length: int, rng: np.random.Generator) -> torch.Tensor:
    """A ``length``-sample segment of ``noise`` at a random offset, looping the clip if it is shorter."""
    n = noise.numel()
    if n < length:
        noise = noise.repeat(math.ceil(length / n) + 1)
        n = noise.numel()
    start = int(rng.integers(0, n - length + 1))
    return noise[start : start + length]


def add_noise(wav, noise, snr_db: float, rng: np.random.Generator) -> torch.Tensor:
    """``wav`` plus a random segment of ``noise`` scaled so that the mix has exactly ``snr_db``.

    SNR uses mean power over the whole signal. A silent ``wav`` or silent noise segment is
    returned unchanged (the SNR is undefined).
    """
    x = _tensor(wav, "wav")
    seg = fit_length(_tensor(noise, "noise"), x.numel(), rng)
    p_sig = _power(x)
    p_noise = _power(seg)
    if p_sig <= 0.0 or p_noise <= 0.0:
        return x.clone()
    scale = math.sqrt(p_sig / (p_noise * 10.0 ** (snr_db / 10.0)))
    return x + scale * seg


def add_noises(wav, noises: list, snrs_db: list, rng: np.random.Generator) -> torch.Tensor:
    """Add several noise clips, each scaled to its own SNR relative to ``wav`` (babble).

    Vectorised: the segments are stacked, their powers and gains computed at once and the mix is one
    matrix-vector product; silent segments get gain 0.
    """
    x = _tensor(wav, "wav")
    p_sig = _power(x)
    if p_sig <= 0.0 or not len(noises):
        return x.clone()
    segs = torch.stack([fit_length(_tensor(n, "noise"), x.numel(), rng) for n in noises])
    p_noise = torch.linalg.vector_norm(segs, dim=1).double().square() / x.numel()
    snr = torch.as_tensor(np.asarray(snrs_db, dtype=np.float64))
    gain = torch.where(p_noise > 0, (p_sig / (p_noise.clamp_min(1e-300) * 10.0 ** (snr / 10.0))).sqrt(), 0.0)
    return x + gain.to(torch.float32) @ segs


def fft_size(n: int) -> int:
    """Fast real-FFT length >= n."""
    return scipy.fft.next_fast_len(n, real=True)


def fft_convolve(x: torch.Tensor, h: torch.Tensor, h_spectrum: np.ndarray | None = None) -> torch.Tensor:
    """Full linear convolution (len(x) + len(h) - 1 samples) via float32 real FFTs of a fast length.

    scipy's pocketfft is used: for single 2 s signals it is 2-3x faster than torch.fft on CPU.
    ``h_spectrum`` is ``rfft(h, n=fft_size(len(x) + len(h) - 1))`` if already known.
    """
    n = x.numel() + h.numel() - 1
    nfft = fft_size(n)
    xs = x.detach().numpy()
    hs = scipy.fft.rfft(h.detach().numpy(), n=nfft) if h_spectrum is None else h_spectrum
    y = scipy.fft.irfft(scipy.fft.rfft(xs, n=nfft) * hs, n=nfft)[:n]
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


class SpectrumCache:
    """Least-recently-used store of normalised RIR spectra by (RIR key, FFT size), at most ``max_bytes``.

    Training chunks have one length, so each RIR needs one spectrum: with a cache, reverberation
    costs two FFTs instead of three. A set of RIRs larger than the cache just sees fewer hits.
    """

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes, self.bytes = int(max_bytes), 0
        self._items: OrderedDict = OrderedDict()

    def get(self, key, nfft: int, h: torch.Tensor) -> tuple[np.ndarray, int]:
        """(spectrum of the unit-norm RIR at ``nfft`` points, direct-path delay) of RIR ``h`` named ``key``."""
        k = (key, nfft)
        item = self._items.get(k)
        if item is not None:
            self._items.move_to_end(k)
            return item
        item = _rir_spectrum(h, nfft)
        self._items[k] = item
        self.bytes += item[0].nbytes
        while self.bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self.bytes -= old[0].nbytes
        return item


def _rir_spectrum(h: torch.Tensor, nfft: int) -> tuple[np.ndarray, int]:
    norm = float(torch.linalg.vector_norm(h))
    if norm == 0.0:
        raise VoxflowError("augment: the RIR is all zeros")
    delay = int(h.abs().argmax())
    return scipy.fft.rfft(h.detach().numpy() / np.float32(norm), n=nfft), delay


def reverberate(wav, rir, rescale: str = "power", cache: SpectrumCache | None = None, key=None) -> torch.Tensor:
    """Convolve ``wav`` with a room impulse response, keeping its length and time alignment.

    The output is shifted back by the RIR's direct-path delay (index of its largest magnitude)
    and cut to the input length; ``rescale`` is "power" (match the input's mean power),
    "peak" (match its peak amplitude) or "none". With ``cache`` and a ``key`` naming the RIR,
    its spectrum is computed once per FFT size.
    """
    x = _tensor(wav, "wav")
    h = _tensor(rir, "rir")
    n = x.numel() + h.numel() - 1
    nfft = fft_size(n)
    if cache is not None and key is not None:
        spec, delay = cache.get(key, nfft, h)
    else:
        spec, delay = _rir_spectrum(h, nfft)
    full = scipy.fft.irfft(scipy.fft.rfft(x.detach().numpy(), n=nfft) * spec, n=nfft)
    y = torch.from_numpy(np.ascontiguousarray(full[delay : delay + x.numel()], dtype=np.float32))
    if rescale == "power":
        p_out = _power(y)
        if p_out > 0.0:
            y = y * math.sqrt(_power(x) / p_out)
    elif rescale == "peak":
        peak_out = float(y.abs().max())
        if peak_out > 0.0:
            y = y * (float(x.abs().max()) / peak_out)
    elif rescale != "none":
        raise VoxflowError(f"augment: rescale must be 'power', 'peak' or 'none', got {rescale!r}")
    return y.contiguous()


def speed_rates(sr: int, factor: float) -> tuple[int, int]:
    """(orig_freq, new_freq) of the resampling that plays audio at ``sr`` ``factor`` times faster."""
    if factor <= 0:
        raise VoxflowError(f"augment: speed factor must be positive, got {factor}")
    orig = int(round(sr * factor))
    g = math.gcd(orig, int(sr))
    return orig // g, int(sr) // g


def speed_perturb(wav, sr: int, factor: float) -> torch.Tensor:
    """Kaldi/sox-style speed perturbation: resample from ``sr * factor`` to ``sr``.

    Tempo and pitch both change; the duration becomes ``len(wav) / factor`` samples (rounded up).
    """
    x = _tensor(wav, "wav")
    if factor == 1.0:
        return x.clone()
    orig, new = speed_rates(sr, factor)
    return AF.resample(x, orig, new)


def spec_augment(
    feats: torch.Tensor, rng: np.random.Generator, num_t_masks: int = 1, max_t: int = 10,
    num_f_masks: int = 1, max_f: int = 8,
) -> torch.Tensor:
    """SpecAugment on (frames, dim) features: zero ``num_t_masks`` runs of up to ``max_t`` frames
    and ``num_f_masks`` bands of up to ``max_f`` coefficients (zero = the mean after CMN).
    """
    out = feats.clone()
    frames, dim = out.shape
    for _ in range(num_t_masks):
        width = int(rng.integers(1, max_t + 1))
        start = int(rng.integers(0, max(1, frames - width + 1)))
        out[start : start + width, :] = 0.0
    for _ in range(num_f_masks):
        width = int(rng.integers(1, max_f + 1))
        start = int(rng.integers(0, max(1, dim - width + 1)))
        out[:, start : start + width] = 0.0
    return out
