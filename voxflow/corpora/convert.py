"""Audio format conversion with the ``ffmpeg`` binary (VoxCeleb2's AAC .m4a to 16-bit mono WAV or FLAC)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from voxflow.audio.io import audio_info
from voxflow.errors import VoxflowError
from voxflow.utils.atomic import atomic_path

log = logging.getLogger(__name__)

ENV_FFMPEG = "VOXFLOW_FFMPEG"  # path of the ffmpeg binary, if not the one on PATH
_CODECS = {".wav": ("wav", "pcm_s16le"), ".flac": ("flac", "flac")}


def find_ffmpeg(ffmpeg: str | None = None) -> str:
    """Path of the ffmpeg binary (argument, $VOXFLOW_FFMPEG, else PATH); a clear error when there is none."""
    name = ffmpeg or os.environ.get(ENV_FFMPEG) or "ffmpeg"
    found = shutil.which(name)
    if found is None:
        raise VoxflowError(f"ffmpeg not found ({name!r} is not an executable on PATH): install FFmpeg or use the "
                           "conda env envs/ffmpeg.yaml")
    return found


def convert_to_wav(src: str | os.PathLike, dst: str | os.PathLike, sample_rate: int = 16000,
                   ffmpeg: str | None = None) -> Path:
    """Decode any audio ffmpeg reads into mono 16-bit ``dst`` at ``sample_rate``, written atomically.

    The output container follows ``dst``'s suffix: .wav (PCM) or .flac (lossless).
    """
    src, dst = Path(src), Path(dst)
    codec = _CODECS.get(dst.suffix.lower())
    if codec is None:
        raise VoxflowError(f"{dst}: output must end in .wav or .flac, not {dst.suffix!r}")
    if not src.is_file():
        raise VoxflowError(f"{src}: audio file not found")
    binary = find_ffmpeg(ffmpeg)
    with atomic_path(dst) as tmp:
        cmd = [binary, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-vn", "-ac", "1",
               "-ar", str(int(sample_rate)), "-sample_fmt", "s16", "-c:a", codec[1], "-f", codec[0], str(tmp)]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip()[-500:]
            raise VoxflowError(f"{src}: ffmpeg could not convert it (exit code {proc.returncode}): {tail}")
        audio_info(tmp)  # the output must be readable and non-empty
    return dst


@dataclass
class ConvertReport:
    converted: int = 0
    skipped: int = 0  # outputs already present (written atomically, so complete)


def convert_tree(src_root: str | os.PathLike, dst_root: str | os.PathLike, fmt: str = "wav",
                 sample_rate: int = 16000, src_suffixes: tuple[str, ...] = (".m4a",), jobs: int | None = None,
                 ffmpeg: str | None = None) -> ConvertReport:
    """Convert every ``src_suffixes`` file under ``src_root`` into the same relative path under ``dst_root``.

    E.g. VoxCeleb2 ``aac/id00012/21Uxsk56VDQ/00001.m4a`` -> ``wav/id00012/21Uxsk56VDQ/00001.wav``.
    Outputs already present are kept, so an interrupted run resumes. ``jobs`` ffmpeg processes run
    at once (default: the CPU count). The first failure stops the run and is raised.
    """
    if fmt not in ("wav", "flac"):
        raise VoxflowError(f"conversion format must be 'wav' or 'flac', got {fmt!r}")
    src_root, dst_root = Path(src_root), Path(dst_root)
    if not src_root.is_dir():
        raise VoxflowError(f"{src_root}: source directory not found")
    binary = find_ffmpeg(ffmpeg)
    suffixes = {s.lower() for s in src_suffixes}
    sources = sorted(p for p in src_root.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    if not sources:
        raise VoxflowError(f"{src_root}: no {sorted(suffixes)} files found")
    report = ConvertReport()
    todo = []
    for s in sources:
        d = (dst_root / s.relative_to(src_root)).with_suffix(f".{fmt}")
        if d.is_file():
            report.skipped += 1
        else:
            todo.append((s, d))
    log.info("%s: converting %d file(s) to %s (%d already done)", src_root, len(todo), fmt, report.skipped)
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        futures = [pool.submit(convert_to_wav, s, d, sample_rate, binary) for s, d in todo]
        try:
            for i, f in enumerate(as_completed(futures), start=1):
                f.result()
                if i % 1000 == 0 or i == len(futures):
                    log.info("%s: %d of %d converted", src_root, i, len(futures))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    report.converted = len(todo)
    return report
