"""The built-in synthetic demo corpus: speakers in VoxCeleb layout, trials, mislabels, noises, RIRs, diarization.

Layout under the output directory::

    dev/wav/<spk>/<session>/<utt>.wav     training speakers (id00001..), sessions s01.., utterances 00001..
    dev/mislabeled.csv                    utt_id,labeled_spk,true_spk of the planted mislabels
    test/wav/<spk>/<session>/<utt>.wav    held-out speakers, numbering continued
    test/trials.txt                       "<1|0> <enroll>.wav <test>.wav", paths relative to test/wav
    heldout/wav/<spk>/<session>/<utt>.wav another set of held-out speakers (only if n_heldout_speakers > 0),
                                          for validation and calibration without touching the test speakers
    noise/{noise,music,babble}/*.wav      MUSAN-like augmentation noises
    rirs/*.wav                            room impulse responses (peak 1)
    diar/wav/<conv>.wav, diar/rttm/<conv>.rttm   conversations and their reference turns
    speakers.json                         seed, settings and every speaker's voice parameters

Everything is drawn from ``seed`` through independent per-item random streams, so the same seed gives
bit-identical files. Voices come from :mod:`voxflow.demo.voices` and :mod:`voxflow.demo.speech`, recording
sessions from :mod:`voxflow.demo.recording`, noises and rooms from :mod:`voxflow.demo.acoustics`, conversations
from :mod:`voxflow.demo.conversations`; this module draws the cast, plans mislabels and trials, and writes it all.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from voxflow.demo.acoustics import make_music, make_noise, make_rir, random_channel_eq
from voxflow.demo.conversations import render_conversation, rttm_text
from voxflow.demo.recording import peak_normalise, random_environment, random_session, record_utterance
from voxflow.demo.speech import render_speech
from voxflow.demo.voices import Voice, random_style, random_voice
from voxflow.errors import VoxflowError

# Tags that separate the random streams of different kinds of items.
_VOICE, _SESSION, _UTT, _MISLABEL, _TRIALS, _NOISE, _MUSIC, _BABBLE, _RIR, _CONV, _DEVICE, _ENVIRONMENT = range(1, 13)
_HELDOUT_VOICE = 13  # a stream of its own, so that adding held-out speakers changes nothing else

MISLABELED_DUR_S = (6.0, 8.0)
NOISE_DUR_S = (9.0, 11.0)
TARGETS_PER_UTT = 4
NONTARGETS_PER_UTT = 12
BABBLE_POOL = 12
N_DEVICES = 8  # microphones / channels shared by all sessions of the corpus
N_ENVIRONMENTS = 8  # background noises (and rooms) shared likewise


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _write_wav(path: Path, x: np.ndarray, sample_rate: int) -> int:
    """Write ``x`` (float, full scale 1.0) as 16-bit PCM; return the number of samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    buffer = io.BytesIO()  # one write of the finished file is much faster than libsndfile's small writes
    sf.write(buffer, pcm, sample_rate, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())
    return len(pcm)


def make_trials(utt_ids: list[str], rng: np.random.Generator) -> list[tuple[int, str, str]]:
    """Enroll every utterance against targets from other sessions of its speaker and random non-targets.

    Utterance ids are ``spk/session/utt``. Unordered pairs are never repeated; no self-trials.
    """
    by_spk: dict[str, list[str]] = {}
    for u in utt_ids:
        by_spk.setdefault(u.split("/")[0], []).append(u)
    seen: set[frozenset] = set()
    trials = []
    for u in utt_ids:
        spk, session = u.split("/")[:2]
        same = [v for v in by_spk[spk] if v.split("/")[1] != session]
        other = [v for v in utt_ids if v.split("/")[0] != spk]
        for label, pool, k in ((1, same, TARGETS_PER_UTT), (0, other, NONTARGETS_PER_UTT)):
            for j in rng.choice(len(pool), size=min(k, len(pool)), replace=False) if pool else []:
                pair = frozenset((u, pool[j]))
                if pair not in seen:
                    seen.add(pair)
                    trials.append((label, u, pool[j]))
    return trials


def _check_args(**kw) -> None:
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise VoxflowError(f"make_demo_corpus: {key}={kw[key]!r} is invalid; it must be {what}")

    for key in ("seed", "n_dev_speakers", "n_test_speakers", "n_heldout_speakers", "sessions_per_speaker",
                "utts_per_session",
                "n_mislabeled", "n_conversations", "n_noises", "n_rirs", "sample_rate"):
        need(isinstance(kw[key], (int, np.integer)) and not isinstance(kw[key], bool), key, "an integer")
    need(kw["seed"] >= 0, "seed", ">= 0")
    need(kw["n_dev_speakers"] >= 2, "n_dev_speakers", ">= 2")
    need(kw["n_test_speakers"] >= 2, "n_test_speakers", ">= 2")
    need(kw["n_heldout_speakers"] == 0 or kw["n_heldout_speakers"] >= 2, "n_heldout_speakers", "0 or >= 2")
    need(kw["sessions_per_speaker"] >= 2, "sessions_per_speaker", ">= 2 (targets come from other sessions)")
    need(kw["utts_per_session"] >= 1, "utts_per_session", ">= 1")
    need(0 <= kw["n_mislabeled"] <= kw["n_dev_speakers"], "n_mislabeled", "between 0 and n_dev_speakers")
    for key in ("n_conversations", "n_noises", "n_rirs"):
        need(kw[key] >= 0, key, ">= 0")
    need(8000 <= kw["sample_rate"] <= 48000, "sample_rate", "between 8000 and 48000")
    for key in ("min_dur_s", "max_dur_s"):
        need(isinstance(kw[key], (int, float, np.number)) and not isinstance(kw[key], bool), key, "a number")
    need(kw["min_dur_s"] >= 0.5, "min_dur_s", ">= 0.5")
    need(kw["min_dur_s"] <= kw["max_dur_s"], "max_dur_s", ">= min_dur_s")


def make_demo_corpus(
    out_dir,
    seed: int = 0,
    n_dev_speakers: int = 40,
    n_test_speakers: int = 10,
    n_heldout_speakers: int = 0,
    sessions_per_speaker: int = 3,
    utts_per_session: int = 4,
    min_dur_s: float = 2.0,
    max_dur_s: float = 8.0,
    n_mislabeled: int = 6,
    n_conversations: int = 3,
    n_noises: int = 6,
    n_rirs: int = 8,
    sample_rate: int = 16000,
) -> dict:
    """Build the synthetic demo corpus in ``out_dir`` (replacing it atomically); return a summary.

    The layout is in the module docstring; ``n_noises`` files are made for each of the noise/,
    music/ and babble/ categories. The same arguments always give bit-identical files.
    """
    settings = dict(
        seed=seed, n_dev_speakers=n_dev_speakers, n_test_speakers=n_test_speakers,
        n_heldout_speakers=n_heldout_speakers,
        sessions_per_speaker=sessions_per_speaker, utts_per_session=utts_per_session, min_dur_s=min_dur_s,
        max_dur_s=max_dur_s, n_mislabeled=n_mislabeled, n_conversations=n_conversations, n_noises=n_noises,
        n_rirs=n_rirs, sample_rate=sample_rate,
    )
    _check_args(**settings)
    settings = {k: float(v) if k.endswith("_s") else int(v) for k, v in settings.items()}
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VoxflowError(f"demo corpus output {out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    try:
        summary = _build(tmp, settings)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["out_dir"] = str(out)
    return summary


class _Cast:
    """Every voice of the corpus, created on demand from the seed; records them for speakers.json."""

    def __init__(self, seed: int, n_main: int):
        self.seed, self.n_main, self.n_extra = seed, n_main, 0
        self.params: dict[str, dict] = {}

    def _voice(self, index: int, spk_id: str, role: str, stream: int = _VOICE) -> Voice:
        voice = random_voice(spk_id, _rng(self.seed, stream, index))
        self.params[spk_id] = {"role": role, **voice.to_json()}
        return voice

    def main(self, index: int, role: str) -> Voice:
        return self._voice(index, f"id{index + 1:05d}", role)

    def heldout(self, k: int) -> Voice:
        """The k-th held-out speaker, numbered after the main ones."""
        return self._voice(k, f"id{self.n_main + k + 1:05d}", "heldout", _HELDOUT_VOICE)

    def extras(self, count: int, role: str) -> list[Voice]:
        """``count`` new speakers (ext0001, ...) who appear nowhere but where ``role`` says."""
        first, self.n_extra = self.n_extra, self.n_extra + count
        return [self._voice(self.n_main + k, f"ext{k + 1:04d}", role) for k in range(first, self.n_extra)]


def _build(root: Path, cfg: dict) -> dict:
    """Write every part of the corpus under ``root``; return the summary counts."""
    seed, sr = cfg["seed"], cfg["sample_rate"]
    n_dev, n_test, n_heldout = cfg["n_dev_speakers"], cfg["n_test_speakers"], cfg["n_heldout_speakers"]
    parts = ["dev"] * n_dev + ["test"] * n_test + ["heldout"] * n_heldout
    cast = _Cast(seed, n_dev + n_test)
    voices = [cast.main(i, part) for i, part in enumerate(parts[: n_dev + n_test])]
    voices += [cast.heldout(k) for k in range(n_heldout)]
    planted = _plan_mislabels(cfg, voices[:n_dev], cast)
    samples = {"dev": 0, "test": 0, "heldout": 0, "noise": 0, "rirs": 0, "diar": 0}

    devices = [random_channel_eq(_rng(seed, _DEVICE, k), sr) for k in range(N_DEVICES)]
    environments = [random_environment(_rng(seed, _ENVIRONMENT, k), sr) for k in range(N_ENVIRONMENTS)]
    mislabel_rows, test_utts = [], []
    for i, (voice, part) in enumerate(zip(voices, parts)):
        for s in range(cfg["sessions_per_speaker"]):
            session = random_session(_rng(seed, _SESSION, i, s), sr, devices, environments)
            for u in range(cfg["utts_per_session"]):
                rng = _rng(seed, _UTT, i, s, u)
                utt_id = f"{voice.spk_id}/s{s + 1:02d}/{u + 1:05d}"
                speaker = planted.get((i, s, u), voice)
                lo, hi = MISLABELED_DUR_S if speaker is not voice else (cfg["min_dur_s"], cfg["max_dur_s"])
                audio = record_utterance(speaker, int(rng.uniform(lo, hi) * sr), session, rng, sr)
                samples[part] += _write_wav(root / part / "wav" / f"{utt_id}.wav", audio, sr)
                if speaker is not voice:
                    mislabel_rows.append(f"{utt_id},{voice.spk_id},{speaker.spk_id}\n")
                if part == "test":
                    test_utts.append(utt_id)
    (root / "dev" / "mislabeled.csv").write_text("utt_id,labeled_spk,true_spk\n" + "".join(sorted(mislabel_rows)))
    trials = make_trials(test_utts, _rng(seed, _TRIALS))
    (root / "test" / "trials.txt").write_text("".join(f"{lab} {a}.wav {b}.wav\n" for lab, a, b in trials))

    samples["noise"] = _write_noises(root / "noise", cfg, cast)
    for k in range(cfg["n_rirs"]):
        rng = _rng(seed, _RIR, k)
        rt60 = 0.2 + 0.6 * (k + rng.random()) / cfg["n_rirs"]  # spread over 0.2-0.8 s
        rir = make_rir(rng, sr, rt60, rng.uniform(-2.0, 10.0))
        samples["rirs"] += _write_wav(root / "rirs" / f"rir-{k + 1:03d}.wav", rir, sr)
    for c in range(cfg["n_conversations"]):
        rng = _rng(seed, _CONV, c)
        conv_id = f"conv{c + 1:03d}"
        talkers = cast.extras(int(rng.integers(2, 5)), f"diar:{conv_id}")
        audio, spans = render_conversation(talkers, rng, sr)
        samples["diar"] += _write_wav(root / "diar" / "wav" / f"{conv_id}.wav", audio, sr)
        (root / "diar" / "rttm").mkdir(parents=True, exist_ok=True)
        (root / "diar" / "rttm" / f"{conv_id}.rttm").write_text(rttm_text(conv_id, spans, [v.spk_id for v in talkers], sr))

    doc = {"seed": seed, "settings": cfg, "speakers": cast.params}
    (root / "speakers.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    n_target = sum(lab for lab, _, _ in trials)
    n_per_speaker = cfg["sessions_per_speaker"] * cfg["utts_per_session"]
    return {
        "seed": seed,
        "sample_rate": sr,
        "n_dev_speakers": n_dev,
        "n_test_speakers": n_test,
        "n_heldout_speakers": n_heldout,
        "n_dev_utts": n_dev * n_per_speaker,
        "n_test_utts": n_test * n_per_speaker,
        "n_heldout_utts": n_heldout * n_per_speaker,
        "n_trials": len(trials),
        "n_target_trials": n_target,
        "n_nontarget_trials": len(trials) - n_target,
        "n_mislabeled": len(mislabel_rows),
        "n_noise_files": {"noise": cfg["n_noises"], "music": cfg["n_noises"], "babble": cfg["n_noises"]},
        "n_rirs": cfg["n_rirs"],
        "n_conversations": cfg["n_conversations"],
        "n_extra_speakers": cast.n_extra,
        "duration_s": {k: round(v / sr, 3) for k, v in samples.items()},
        "total_duration_s": round(sum(samples.values()) / sr, 3),
    }


def _plan_mislabels(cfg: dict, dev_voices: list[Voice], cast: _Cast) -> dict[tuple[int, int, int], Voice]:
    """Which (speaker, session, utterance) slots get another voice: one slot for each of n_mislabeled
    distinct dev speakers; half the impostors are other dev speakers, the rest outsiders."""
    rng = _rng(cfg["seed"], _MISLABEL)
    n_mis, n_dev = cfg["n_mislabeled"], len(dev_voices)
    from_dev = rng.permutation(np.arange(n_mis) < n_mis // 2)
    outsiders = iter(cast.extras(int(n_mis - from_dev.sum()), "mislabel_source"))
    planted = {}
    for spk, dev_source in zip(rng.choice(n_dev, size=n_mis, replace=False), from_dev):
        true = dev_voices[int(rng.choice([d for d in range(n_dev) if d != spk]))] if dev_source else next(outsiders)
        slot = (int(spk), int(rng.integers(cfg["sessions_per_speaker"])), int(rng.integers(cfg["utts_per_session"])))
        planted[slot] = true
    return planted


def _write_noises(noise_dir: Path, cfg: dict, cast: _Cast) -> int:
    """MUSAN-like noise/, music/ and babble/ files (n_noises each); return the number of samples."""
    seed, sr = cfg["seed"], cfg["sample_rate"]
    babble_pool = cast.extras(BABBLE_POOL if cfg["n_noises"] else 0, "babble")
    written = 0
    for k in range(cfg["n_noises"]):
        rng = _rng(seed, _NOISE, k)
        noise = make_noise(rng, k, int(rng.uniform(*NOISE_DUR_S) * sr), sr)
        rng = _rng(seed, _MUSIC, k)
        music = make_music(rng, int(rng.uniform(*NOISE_DUR_S) * sr), sr)
        rng = _rng(seed, _BABBLE, k)
        n = int(rng.uniform(*NOISE_DUR_S) * sr)
        talkers = rng.choice(len(babble_pool), size=int(rng.integers(3, 7)), replace=False)
        babble = sum(
            10.0 ** (rng.uniform(-4.0, 4.0) / 20.0) * render_speech(babble_pool[j], n, sr, rng, random_style(rng))
            for j in talkers
        )
        babble = scipy.signal.sosfilt(random_channel_eq(rng, sr, strength=0.5), babble)
        for category, audio in (("noise", noise), ("music", music), ("babble", babble)):
            path = noise_dir / category / f"{category}-{k + 1:03d}.wav"
            written += _write_wav(path, peak_normalise(audio, -3.0), sr)
    return written
