"""The members of a zip or tar archive read as one kind of entry, and the checks on their names and link targets
that decide what extraction may write (:mod:`voxflow.corpora.archive`)."""

from __future__ import annotations

import contextlib
import datetime
import gzip
import lzma
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

from voxflow.errors import VoxflowError


@dataclass
class ArchiveEntry:
    """One archive member, reduced to what extraction needs."""

    name: str
    kind: str  # file | dir | symlink | hardlink | other
    mode: int = 0o644
    mtime: float | None = None
    link: str = ""
    open: Callable[[], IO[bytes]] | None = None
    what: str = ""  # description of an "other" member


def member_path(name: str) -> PurePosixPath | str:
    """The normalised relative path of a member name, or the reason it is refused (a str)."""
    if "\x00" in name:
        return "name contains a NUL byte"
    if "\\" in name:
        return "name contains a backslash (a Windows path separator)"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "path contains '..'"
    if not parts:
        return "empty name"
    return PurePosixPath(*parts)


def link_target(entry_path: PurePosixPath, link: str) -> PurePosixPath | str:
    """Where a symlink at ``entry_path`` pointing to ``link`` lands, relative to the root, or a reason."""
    if not link:
        return "empty link target"
    if link.startswith("/"):
        return f"symlink to absolute path {link!r}"
    parts: list[str] = list(entry_path.parent.parts)
    for piece in link.split("/"):
        if piece in ("", "."):
            continue
        if piece == "..":
            if not parts:
                return f"symlink target {link!r} leaves the target directory"
            parts.pop()
        else:
            parts.append(piece)
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _tar_entries(tf: tarfile.TarFile) -> Iterator[ArchiveEntry]:
    for m in tf:
        mtime = float(m.mtime) if m.mtime is not None else None
        if m.isreg():
            yield ArchiveEntry(m.name, "file", m.mode, mtime, open=lambda m=m: tf.extractfile(m))
        elif m.isdir():
            yield ArchiveEntry(m.name, "dir", m.mode, mtime)
        elif m.issym():
            yield ArchiveEntry(m.name, "symlink", m.mode, mtime, link=m.linkname)
        elif m.islnk():
            yield ArchiveEntry(m.name, "hardlink", m.mode, mtime, link=m.linkname)
        else:
            what = ("character device" if m.ischr() else "block device" if m.isblk() else
                    "fifo" if m.isfifo() else f"special file (tar type {m.type!r})")
            yield ArchiveEntry(m.name, "other", m.mode, mtime, what=what)


def _zip_entries(zf: zipfile.ZipFile) -> Iterator[ArchiveEntry]:
    for info in zf.infolist():
        unix_mode = info.external_attr >> 16
        mtime = datetime.datetime(*info.date_time).timestamp() if info.date_time[0] >= 1980 else None
        perm = stat.S_IMODE(unix_mode) or (0o755 if info.is_dir() else 0o644)
        if info.flag_bits & 0x1:
            yield ArchiveEntry(info.filename, "other", perm, mtime, what="encrypted member")
        elif info.is_dir():
            yield ArchiveEntry(info.filename, "dir", perm, mtime)
        elif stat.S_ISLNK(unix_mode):
            target = zf.read(info).decode("utf-8", errors="surrogateescape")
            yield ArchiveEntry(info.filename, "symlink", perm, mtime, link=target)
        elif unix_mode and not stat.S_ISREG(unix_mode) and stat.S_IFMT(unix_mode):
            kind = ("character device" if stat.S_ISCHR(unix_mode) else "block device" if stat.S_ISBLK(unix_mode)
                    else "fifo" if stat.S_ISFIFO(unix_mode) else "socket" if stat.S_ISSOCK(unix_mode)
                    else f"special file (mode {unix_mode:o})")
            yield ArchiveEntry(info.filename, "other", perm, mtime, what=kind)
        else:
            yield ArchiveEntry(info.filename, "file", perm, mtime, open=lambda info=info: zf.open(info))


@contextlib.contextmanager
def open_archive(archive: Path) -> Iterator[Iterator[ArchiveEntry]]:
    """The entries of a zip or tar archive (any compression); a missing, unknown or corrupt one is a VoxflowError."""
    if not archive.is_file():
        raise VoxflowError(f"{archive}: archive not found")
    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as zf:
                yield _zip_entries(zf)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise VoxflowError(f"{archive}: corrupt zip archive: {exc}") from exc
        return
    try:
        tf = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise VoxflowError(f"{archive}: not a zip or tar archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz): "
                           f"{exc}") from exc
    try:
        with tf:
            yield _tar_entries(tf)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError) as exc:
        raise VoxflowError(f"{archive}: corrupt or truncated archive: {exc}") from exc
