"""Processing steps of the on-the-fly training chain (per utterance, after the shuffle buffer).

Timelines: an utterance of ``N`` samples at ``sr_in`` that is resampled to ``sr_out`` and
speed-perturbed by ``factor`` has ``ceil(N * n / o)`` samples in the *target* timeline, where
``o/n`` is ``round(sr_in * factor) / sr_out`` in lowest terms. Windows are chosen in the target
timeline and only the source span they need (plus a filter margin) is resampled, which equals
resampling the whole utterance and cutting the window, at a fraction of the cost.
Original time ``t`` seconds sits at target sample ``t * sr_out / factor``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import torchaudio.transforms as AT

from voxflow.audio import augment
from voxflow.audio.io import read_audio
from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)

SPEED_FACTORS = (1.0, 0.9, 1.1)  # index k: a perturbed utterance's label is label + k * num_speakers
NOISE_KINDS = ("noise", "music", "babble")
BABBLE_SPEAKERS = (3, 7)  # MUSAN-style babble: 3..7 clips summed, each at its own SNR
SPEC_AUG_PROB = 0.6  # Wespeaker's SpecAugment probability


def utt_rng(seed: int, epoch: int, utt_id: str) -> np.random.Generator:
    """Generator for one utterance in one epoch; independent of worker, rank and read order."""
    h = int.from_bytes(hashlib.blake2b(utt_id.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([int(seed), int(epoch), h])


def rate_ratio(sr_in: int, sr_out: int, factor: float) -> tuple[int, int]:
    """(o, n): target timeline has n samples per o source samples."""
    return _reduced(int(round(sr_in * factor)), int(sr_out))


# Above this o * n the combined resample+speed kernel gets large (tens of MB for 22.05 kHz at
# speed 0.9): resample the utterance to the training rate first, then speed-perturb (9/10, 11/10).
MAX_DIRECT_RATIO = 200_000


def prepare(x: torch.Tensor, sr_in: int, sr_out: int, factor: float) -> tuple[torch.Tensor, int, int]:
    """(source, o, n) for rendering ``x`` at ``sr_out`` with speed ``factor`` by ``render``."""
    o, n = rate_ratio(sr_in, sr_out, factor)
    if o * n > MAX_DIRECT_RATIO and sr_in != sr_out:
        x = _resampler(*_reduced(int(sr_in), int(sr_out)))(x)
        o, n = rate_ratio(sr_out, sr_out, factor)
    return x, o, n


def _reduced(o: int, n: int) -> tuple[int, int]:
    g = math.gcd(o, n)
    return o // g, n // g


def target_length(num_source: int, o: int, n: int) -> int:
    """Length after resampling by n/o (as torchaudio.functional.resample)."""
    return -(-num_source * n // o)


@functools.lru_cache(maxsize=8)
def _resampler(o: int, n: int) -> AT.Resample:
    """Resampler with its sinc kernel built once (the kernel costs more than applying it to 2 s)."""
    return AT.Resample(o, n)


def render(x: torch.Tensor, o: int, n: int, j0: int, j1: int) -> torch.Tensor:
    """Target-timeline samples [j0, j1) of source ``x`` resampled by n/o, resampling only the needed span."""
    if o == n:
        return x[j0:j1]
    width = math.ceil(6 * o / (min(o, n) * 0.99))  # torchaudio's sinc kernel half-width, source samples
    margin = width + 2 * o + 2
    k = max(0, (j0 * o // n - margin) // o)  # crop starts at a multiple of o: same phase as the full resample
    a = k * o
    b = min(x.numel(), -(-j1 * o // n) + margin)
    return _apply_resampler(_resampler(o, n), x[a:b], o, n)[j0 - k * n : j1 - k * n]


def _apply_resampler(r: AT.Resample, x: torch.Tensor, o: int, n: int) -> torch.Tensor:
    """``r(x)`` for 1-D ``x`` (torchaudio's polyphase convolution) without its per-call overhead."""
    y = F.conv1d(F.pad(x[None], (r.width, r.width + o))[:, None], r.kernel, stride=o)  # (1, n phases, T)
    return y[0].T.reshape(-1)[: -(-x.numel() * n // o)]


def merge_intervals(intervals) -> list[tuple[float, float]]:
    """Sorted union of (start, end) intervals, dropping empty ones."""
    out: list[list[float]] = []
    for s, e in sorted((float(s), float(e)) for s, e in intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def excluded_cumsum(intervals_s, length: int, scale: float) -> np.ndarray | None:
    """Prefix sums of the excluded-sample mask in the target timeline (None when nothing is excluded)."""
    if not intervals_s:
        return None
    mask = np.zeros(length, dtype=np.int32)
    for s, e in intervals_s:
        a, b = max(0, int(round(s * scale))), min(length, int(round(e * scale)))
        if b > a:
            mask[a:b] = 1
    if not mask.any():
        return None
    return np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])


def window_ok(csum: np.ndarray | None, starts: np.ndarray, win: int) -> np.ndarray:
    """Mask of windows [s, s + win) overlapping excluded samples by at most half the window."""
    if csum is None:
        return np.ones(len(starts), dtype=bool)
    overlap = csum[starts + win] - csum[starts]
    return 2 * overlap <= win


def sliding_starts(length: int, win: int, hop: int) -> np.ndarray:
    """Starts of all full windows; a single window at 0 when the utterance is shorter than one."""
    if length <= win:
        return np.zeros(1, dtype=np.int64)
    return np.arange(0, length - win + 1, hop, dtype=np.int64)


def random_start(length: int, win: int, csum: np.ndarray | None, rng: np.random.Generator) -> int | None:
    """A random window start whose excluded overlap is at most half the window (None if there is none)."""
    if length <= win:
        ok = window_ok(csum, np.zeros(1, dtype=np.int64), length)
        return 0 if ok[0] else None
    if csum is None:
        return int(rng.integers(0, length - win + 1))
    starts = np.arange(0, length - win + 1, dtype=np.int64)
    valid = starts[window_ok(csum, starts, win)]
    if len(valid) == 0:
        return None
    return int(valid[rng.integers(0, len(valid))])


def tile_to(x: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat a short signal until it has ``length`` samples."""
    if x.numel() >= length:
        return x[:length]
    return x.repeat(math.ceil(length / x.numel()))[:length]


def fix_frames(feats: torch.Tensor, frames: int) -> torch.Tensor:
    """Repeat (or cut) features to exactly ``frames`` frames (needed after VAD drops frames)."""
    if feats.shape[0] == frames:
        return feats
    reps = math.ceil(frames / feats.shape[0])
    return feats.repeat(reps, 1)[:frames]


class ClipPool:
    """Noise or RIR clips held in memory as float32 tensors at the training sample rate.

    Clips are read once per process on first use (``load``). Memory cost: 4 bytes per sample,
    i.e. about 230 MB per hour of 16 kHz audio; a pool loaded before DataLoader workers fork
    is shared copy-on-write, a pool first used inside a worker is loaded by that worker.
    """

    def __init__(self, df: pd.DataFrame | None, sample_rate: int, role: str):
        self.role, self.sample_rate = role, int(sample_rate)
        self.paths: list[str] = []
        self.kinds: list[str] = []
        self.by_kind: dict[str, list[int]] = {}
        self._clips: list[torch.Tensor] | None = None
        self.spectra = augment.SpectrumCache()  # RIR spectra per FFT size (per process)
        if df is None or len(df) == 0:
            return
        if "path" not in df.columns:
            raise VoxflowError(f"{role} manifest: lacks column 'path'; has {list(df.columns)}")
        if role == "noise":
            if "kind" not in df.columns:
                raise VoxflowError("noise manifest: lacks column 'kind' (noise, music or babble)")
            bad = sorted(set(df["kind"].astype(str)) - set(NOISE_KINDS))
            if bad:
                raise VoxflowError(f"noise manifest: column 'kind' has value(s) {bad}; allowed: {list(NOISE_KINDS)}")
            self.kinds = df["kind"].astype(str).tolist()
        self.paths = df["path"].astype(str).tolist()
        for i, kind in enumerate(self.kinds):
            self.by_kind.setdefault(kind, []).append(i)

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_clips"] = None  # spawned workers reload lazily instead of receiving a pickled copy
        state["spectra"] = augment.SpectrumCache(self.spectra.max_bytes)
        return state

    def load(self) -> list[torch.Tensor]:
        """Read every clip (resampled to the pool's rate) unless already in memory."""
        if self._clips is None and self.paths:
            clips = []
            for p in self.paths:
                wav, _ = read_audio(p, expected_sr=self.sample_rate, resample=True)
                clips.append(torch.from_numpy(wav))
            mb = sum(c.numel() for c in clips) * 4 / 2**20
            log.info("loaded %d %s clips into memory (%.1f MB)", len(clips), self.role, mb)
            self._clips = clips
        return self._clips or []

    def clip(self, i: int) -> torch.Tensor:
        return self.load()[i]


def augment_chunk(
    chunk: torch.Tensor, rng: np.random.Generator, noise: ClipPool, rirs: ClipPool, cfg: dict
) -> tuple[torch.Tensor, str]:
    """With probability ``aug_prob``: reverberation (share ``reverb_share``) or one MUSAN-style
    additive noise type with an SNR drawn from its range. Returns (audio, what was done)."""
    if cfg["aug_prob"] <= 0.0 or rng.random() >= cfg["aug_prob"]:
        return chunk, "clean"
    use_rir = len(rirs) > 0 and (len(noise) == 0 or rng.random() < cfg["reverb_share"])
    if use_rir:
        i = int(rng.integers(0, len(rirs)))
        return augment.reverberate(chunk, rirs.clip(i), cache=rirs.spectra, key=i), "reverb"
    kinds = [k for k in NOISE_KINDS if k in noise.by_kind]
    kind = kinds[int(rng.integers(0, len(kinds)))]
    lo, hi = cfg["snr_db"][kind]
    pool = noise.by_kind[kind]
    if kind == "babble":
        count = int(rng.integers(BABBLE_SPEAKERS[0], BABBLE_SPEAKERS[1] + 1))
        picks = rng.choice(len(pool), size=count, replace=len(pool) < count)
        snrs = rng.uniform(lo, hi, size=count)
        return augment.add_noises(chunk, [noise.clip(pool[int(i)]) for i in picks], list(snrs), rng), kind
    clip = noise.clip(pool[int(rng.integers(0, len(pool)))])
    return augment.add_noise(chunk, clip, float(rng.uniform(lo, hi)), rng), kind
