"""Safe, atomic, idempotent extraction of zip and tar archives, and joining split archives.

Every member is checked before anything is written: absolute names, ``..`` components,
backslash separators, links whose target leaves the extraction root, and device, fifo or other
special files are refused and reported. Regular files and directories are written by this
module (never by ``extractall``) into a fresh temporary directory beside the target, symlinks
are created last and re-checked against the final tree, then the directory is renamed onto the
target with a completion marker inside, so a rerun does nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from voxflow.corpora.archive_members import ArchiveEntry, link_target, member_path, open_archive
from voxflow.corpora.checksums import expected_digests, record_verified, verify_file
from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)

MARKER = ".voxflow-extracted.json"
_COPY_BYTES = 1 << 20


@dataclass
class ExtractReport:
    """What ``safe_extract`` did: counts of what it wrote, and each refused member with the reason."""

    archive: Path
    target: Path
    files: int = 0
    dirs: int = 0
    links: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped: bool = False  # True when the target was already complete (nothing done)

    def to_json(self) -> dict:
        return {"archive": str(self.archive), "files": self.files, "dirs": self.dirs, "links": self.links,
                "refused": [list(r) for r in self.refused]}


def _within(path: str | os.PathLike, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


class _Extractor:
    """Writes checked entries under ``root``; records what it refused."""

    def __init__(self, root: Path, report: ExtractReport):
        self.root = root
        self.real_root = os.path.realpath(root)
        self.report = report
        self.kinds: dict[PurePosixPath, str] = {}
        self.symlinks: list[tuple[str, PurePosixPath, str]] = []
        self.dir_times: list[tuple[Path, float]] = []

    def refuse(self, name: str, reason: str) -> None:
        self.report.refused.append((name, reason))

    def _parent_ok(self, rel: PurePosixPath, name: str) -> bool:
        for i in range(1, len(rel.parts)):
            prefix = PurePosixPath(*rel.parts[:i])
            kind = self.kinds.get(prefix)
            if kind == "refused":
                self.refuse(name, f"parent {prefix} was refused")
                return False
            if kind not in (None, "dir"):
                self.refuse(name, f"parent {prefix} is a {kind}, not a directory")
                return False
        for i in range(1, len(rel.parts)):
            self.kinds.setdefault(PurePosixPath(*rel.parts[:i]), "dir")
        return True

    def add(self, entry: ArchiveEntry) -> None:
        rel = member_path(entry.name)
        if isinstance(rel, str):
            self.refuse(entry.name, rel)
            return
        refused = len(self.report.refused)
        self._add(entry, rel)
        if len(self.report.refused) > refused:
            self.kinds.setdefault(rel, "refused")  # so nothing is later written beneath it

    def _add(self, entry: ArchiveEntry, rel: PurePosixPath) -> None:
        if entry.kind == "other":
            self.refuse(entry.name, entry.what)
            return
        if not self._parent_ok(rel, entry.name):
            return
        previous = self.kinds.get(rel)
        if previous is not None and not (previous == entry.kind == "dir" or
                                          (previous == "file" and entry.kind in ("file", "hardlink"))):
            self.refuse(entry.name, f"duplicate entry: already extracted as a {previous}")
            return
        dest = self.root.joinpath(*rel.parts)
        if entry.kind == "symlink":
            target = link_target(rel, entry.link)
            if isinstance(target, str):
                self.refuse(entry.name, target)
                return
            self.kinds[rel] = "symlink"
            self.symlinks.append((entry.name, rel, entry.link))  # created after all files and directories
            return
        if entry.kind == "dir":
            dest.mkdir(parents=True, exist_ok=True)
            os.chmod(dest, (entry.mode & 0o777) | 0o700)
            self.kinds[rel] = "dir"
            if entry.mtime is not None:
                self.dir_times.append((dest, entry.mtime))
            self.report.dirs += 1
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not _within(dest.parent, self.real_root):  # cannot happen (no links exist yet), checked anyway
            self.refuse(entry.name, "would be written outside the target directory")
            return
        if entry.kind == "hardlink":
            source = member_path(entry.link)
            if isinstance(source, str):
                self.refuse(entry.name, f"hard link target {entry.link!r}: {source}")
                return
            if source == rel or self.kinds.get(source) != "file":
                self.refuse(entry.name, f"hard link to {entry.link!r}, which is not a regular file extracted "
                                        "earlier from this archive")
                return
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            src = self.root.joinpath(*source.parts)
            try:
                os.link(src, dest)
            except OSError:
                shutil.copy2(src, dest)
            self.kinds[rel] = "file"
            self.report.files += 1
            return
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out, entry.open() as src:
            shutil.copyfileobj(src, out, _COPY_BYTES)
        os.chmod(dest, (entry.mode & 0o777 & ~0o022) | 0o600)  # no setuid/setgid/sticky, no group/other write
        if entry.mtime is not None:
            os.utime(dest, (entry.mtime, entry.mtime))
        self.kinds[rel] = "file"
        self.report.files += 1

    def finish(self) -> None:
        """Create the deferred symlinks, then drop any that resolve outside the root in the final tree."""
        made: list[tuple[str, Path]] = []
        for name, rel, link in self.symlinks:
            dest = self.root.joinpath(*rel.parts)
            if not _within(dest.parent, self.real_root):
                self.refuse(name, "its directory resolves outside the target directory")
                continue
            if not _within(dest.parent / link, self.real_root):
                self.refuse(name, f"symlink target {link!r} resolves outside the target directory")
                continue
            if os.path.lexists(dest):
                self.refuse(name, "duplicate entry: path already exists")
                continue
            os.symlink(link, dest)
            made.append((name, dest))
        changed = True
        while changed:  # links created later can change where earlier ones resolve
            changed = False
            for name, dest in list(made):
                if not _within(dest, self.real_root):
                    dest.unlink()
                    made.remove((name, dest))
                    self.refuse(name, "symlink resolves outside the target directory via other links")
                    changed = True
        self.report.links = len(made)
        for dest, mtime in sorted(self.dir_times, key=lambda d: -len(d[0].parts)):
            os.utime(dest, (mtime, mtime))


def read_marker(target: str | os.PathLike) -> dict | None:
    """The completion record of an extracted directory, or None when there is none."""
    path = Path(target) / MARKER
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise VoxflowError(f"{path}: unreadable extraction marker: {exc}") from exc


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike, on_refused: str = "skip") -> ExtractReport:
    """Extract a .zip/.tar/.tar.gz/.tgz (.tar.bz2, .tar.xz) archive into the new directory ``target``.

    Unsafe members are refused and listed in the report (``on_refused="skip"``, with a warning)
    or make the whole extraction fail (``"error"``); either way nothing is written outside
    ``target``. The tree is built in a temporary directory beside ``target`` and renamed onto it
    with a marker file; if the marker is already there (and the archive, when still present,
    has the recorded size) nothing is done. A ``target`` that exists without the marker is an error.
    """
    if on_refused not in ("skip", "error"):
        raise VoxflowError(f"on_refused must be 'skip' or 'error', got {on_refused!r}")
    archive, target = Path(archive), Path(target)
    marker = read_marker(target) if target.is_dir() else None
    if marker is not None:
        if archive.is_file() and marker.get("archive_size") != archive.stat().st_size:
            raise VoxflowError(f"{target}: was extracted from a different {marker.get('archive_name')!r} "
                               f"({marker.get('archive_size')} bytes, now {archive.stat().st_size}); remove it "
                               "to extract again")
        log.info("%s: already extracted from %s; nothing to do", target, marker.get("archive_name"))
        return ExtractReport(archive, target, marker.get("files", 0), marker.get("dirs", 0), marker.get("links", 0),
                             [tuple(r) for r in marker.get("refused", [])], skipped=True)
    if os.path.lexists(target):
        raise VoxflowError(f"{target}: exists but was not extracted by voxflow (no {MARKER}); remove it or choose "
                           "another directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    report = ExtractReport(archive, target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.extracting-"))
    try:
        extractor = _Extractor(tmp, report)
        with open_archive(archive) as entries:
            for entry in entries:
                extractor.add(entry)
                if report.refused and on_refused == "error":
                    break
        if report.refused and on_refused == "error":
            name, reason = report.refused[0]
            raise VoxflowError(f"{archive}: unsafe member {name!r}: {reason}")
        extractor.finish()
        if report.refused and on_refused == "error":
            name, reason = report.refused[0]
            raise VoxflowError(f"{archive}: unsafe member {name!r}: {reason}")
        for name, reason in report.refused:
            log.warning("%s: refused member %r: %s", archive, name, reason)
        record = {"archive_name": archive.name, "archive_size": archive.stat().st_size, **report.to_json()}
        (tmp / MARKER).write_text(json.dumps(record, indent=1))
        os.chmod(tmp, 0o755)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("%s: extracted %d files, %d directories, %d links into %s (%d refused)", archive, report.files,
             report.dirs, report.links, target, len(report.refused))
    return report


def concat_parts(parts: list[str | os.PathLike], dest: str | os.PathLike, sha256: str | None = None,
                 md5: str | None = None) -> Path:
    """Join split archive parts (``vox1_dev_wav_partaa`` ...) into ``dest`` atomically, verifying the result.

    A present ``dest`` that matches the checksum(s) is left alone. A mismatch is a VoxflowError
    naming both digests, and the joined file is kept as ``<dest>.bad``.
    """
    dest = Path(dest)
    expected = expected_digests(sha256, md5)
    if dest.is_file() and verify_file(dest, sha256, md5):
        log.info("%s: present%s; nothing to join", dest, " and verified" if expected else "")
        return dest
    missing = [str(p) for p in parts if not Path(p).is_file()]
    if missing or not parts:
        raise VoxflowError(f"{dest}: cannot join, part(s) missing: {missing or 'no parts given'}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    hashers = {a: hashlib.new(a) for a in expected}
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".joining")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    while chunk := src.read(_COPY_BYTES):
                        out.write(chunk)
                        for h in hashers.values():
                            h.update(chunk)
        got = {a: h.hexdigest() for a, h in hashers.items()}
        wrong = [a for a in expected if got[a] != expected[a]]
        if wrong:
            bad = dest.with_name(dest.name + ".bad")
            os.replace(tmp, bad)
            detail = "; ".join(f"expected {a} {expected[a]}, got {got[a]}" for a in wrong)
            raise VoxflowError(f"{dest}: checksum mismatch of the joined parts: {detail} (kept as {bad})")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if expected:
        record_verified(dest, got)
    return dest
