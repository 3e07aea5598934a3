"""What every corpus importer applies to one utterance: the sample-rate and minimum-duration checks, and the
session id derived from the utterance id."""

from __future__ import annotations

from voxflow.errors import VoxflowError


def check_audio(where: str, sr: int, duration: float, sample_rate: int, on_other_rate: str,
                min_duration_s: float) -> None:
    """The import-time checks on one utterance (sample rate policy, minimum duration); ``where`` names it."""
    if sr != sample_rate and on_other_rate == "error":
        raise VoxflowError(f"{where}: sample rate {sr} Hz, expected {sample_rate} Hz "
                           "(set audio.on_other_rate: resample to convert)")
    if duration < min_duration_s:
        raise VoxflowError(f"{where}: {duration:.2f} s long, shorter than audio.min_duration_s={min_duration_s}")


def session_of(utt_id: str, spk_id: str, default: str) -> str:
    """Session of an utterance: ``spk/session`` for VoxCeleb-style ids ``spk/session/utt``; for two-level ids
    ``spk/name``, ``spk/<name up to its last - or _>`` (``spk/1zcIwhmdeo4`` of ``spk/1zcIwhmdeo4_00001``), or
    ``spk`` (one session per speaker) if the name has neither; else ``default``."""
    parts = utt_id.split("/")
    if len(parts) == 3 and parts[0] == spk_id:
        return f"{parts[0]}/{parts[1]}"
    if len(parts) == 2 and parts[0] == spk_id:
        cut = max(parts[1].rfind("-"), parts[1].rfind("_"))
        return f"{spk_id}/{parts[1][:cut]}" if cut > 0 else spk_id
    return default
