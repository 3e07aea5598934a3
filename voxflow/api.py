"""Python API of an exported (or imported) model: embed, verify, diarize.

    import voxflow

    model = voxflow.load_model("exp/xvector_aam")       # a model directory, or its model.ts
    e = model.embed("a.wav")                             # L2-normalised embedding (SEA settings of the model)
    r = model.verify("a.wav", "b.wav", threshold=0.5)    # r.score (cosine), r.same (None without a threshold)
    turns = model.diarize("meeting.wav")                 # DataFrame: file_id, start, duration, speaker
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from voxflow.errors import VoxflowError

MODEL_FILE = "model.ts"
Audio = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class Verification:
    """A trial's cosine score and, with a threshold, its decision (``score >= threshold``)."""

    score: float
    threshold: float | None = None

    @property
    def same(self) -> bool | None:
        return None if self.threshold is None else self.score >= self.threshold


def utterance_table(paths: list, sample_rate: int) -> pd.DataFrame:
    """A manifest of audio files (utt_id: the path without its suffix) for ``embed_utterances``."""
    paths = [str(p) for p in paths]
    return pd.DataFrame({"utt_id": [str(Path(p).with_suffix("")) for p in paths], "path": paths, "spk_id": "",
                         "sample_rate": sample_rate})


class Model:
    """An exported TorchScript model with its meta (front-end, SEA settings); see ``load_model``."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threshold: float | None = None,
                 runtime: str = "torch"):
        from voxflow.embed.extract import Embedder
        from voxflow.embed.runtime import load_network

        path = Path(path)
        self.path = path / MODEL_FILE if path.is_dir() else path
        if not self.path.is_file():
            raise VoxflowError(f"{path}: no such model (give a model directory holding {MODEL_FILE}, or the file)")
        model, self.meta, self.engine = load_network(self.path, runtime, device)
        self.embedder = Embedder(model, self.meta, device=device)
        self.threshold = threshold

    @property
    def sample_rate(self) -> int:
        return self.embedder.sample_rate

    def embed_files(self, paths: list, mode: str = "sea") -> tuple[list[str], np.ndarray]:
        """(utt_ids, embeddings) of audio files, batched together, as the workflow's embed rule computes them."""
        from voxflow.embed.extract import embed_utterances

        return embed_utterances(self.embedder, utterance_table(paths, self.sample_rate), mode=mode)

    def embed(self, audio: Audio, sample_rate: int | None = None, mode: str = "sea") -> np.ndarray:
        """The embedding of a file or a mono waveform (``sample_rate``: default the model's; other rates are
        resampled). ``sea``: split-embed-average; ``full``: the whole recording at once."""
        if isinstance(audio, (str, os.PathLike)):
            if sample_rate is not None:
                raise VoxflowError(f"{audio}: sample_rate is for waveforms; a file's rate is read from it")
            return self.embed_files([audio], mode)[1][0]
        import soundfile as sf

        wav = np.asarray(audio, dtype=np.float32)
        if wav.ndim != 1:
            raise VoxflowError(f"expected a mono 1-D waveform, got shape {wav.shape}")
        with tempfile.TemporaryDirectory() as tmp:  # the files' code path, so that both give the same embedding
            path = Path(tmp) / "audio.wav"
            sf.write(path, wav, int(sample_rate or self.sample_rate), subtype="FLOAT")
            return self.embed_files([path], mode)[1][0]

    def verify(self, a: Audio, b: Audio, threshold: float | None = None, sample_rate: int | None = None,
               mode: str = "sea") -> Verification:
        """Cosine score of two recordings; decided with ``threshold`` (default: the one given to load_model)."""
        ea, eb = (self.embed(x, sample_rate, mode) for x in (a, b))
        score = float(np.dot(ea, eb) / max(np.linalg.norm(ea) * np.linalg.norm(eb), 1e-12))
        return Verification(score, self.threshold if threshold is None else threshold)

    def diarize(self, path: str | os.PathLike, num_speakers: int | None = None, max_speakers: int = 8,
                **kwargs) -> pd.DataFrame:
        """Speaker turns (file_id, start, duration, speaker) of a recording: ``voxflow.diarize.pipeline.diarize``
        (its ``window_s``, ``shift_s``, ``vad_kwargs``, ``cluster_kwargs`` pass through)."""
        from voxflow.audio.io import read_audio
        from voxflow.diarize.pipeline import diarize

        wav, sr = read_audio(path, expected_sr=self.sample_rate, resample=True)
        return diarize(wav, sr, Path(path).stem, lambda segs: self.embedder.embed_waveforms(segs, sr),
                       num_speakers=num_speakers, max_speakers=max_speakers, **kwargs)


def load_model(path: str | os.PathLike, device: str = "cpu", threshold: float | None = None,
               runtime: str = "torch") -> Model:
    """The model at ``path``: a directory holding model.ts (an experiment's, or ``voxflow model import``'s) or
    the model.ts itself. ``threshold``: the default decision threshold of ``verify``. ``runtime``: torch, onnx
    (model.onnx beside model.ts, in ONNX Runtime) or auto (onnx on the CPU when model.onnx exists, see
    ``voxflow.embed.runtime``)."""
    return Model(path, device=device, threshold=threshold, runtime=runtime)
