"""Checksums of downloaded files: digests, ``.verified`` stamps that spare re-hashing an unchanged file, and the
trust-on-first-use record ``<dest>.sha256`` of a file without a published checksum."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from voxflow.errors import VoxflowError
from voxflow.utils.atomic import write_text_atomic


def file_digests(path: str | os.PathLike, algorithms=("sha256",), chunk_bytes: int = 1 << 20) -> dict[str, str]:
    """Hex digests of a file, one per algorithm name (hashlib names, e.g. 'sha256', 'md5')."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def expected_digests(sha256: str | None, md5: str | None) -> dict[str, str]:
    """The given checksums as {algorithm: lowercase hex}; a malformed one is a VoxflowError."""
    expected = {}
    for algo, value, length in (("sha256", sha256, 64), ("md5", md5, 32)):
        if value is None:
            continue
        value = str(value).strip().lower()
        if not re.fullmatch(f"[0-9a-f]{{{length}}}", value):
            raise VoxflowError(f"{algo} checksum {value!r} is not {length} hexadecimal digits")
        expected[algo] = value
    return expected


def tofu_record_path(dest: str | os.PathLike) -> Path:
    """Where the trust-on-first-use sha256 of ``dest`` is recorded: ``<dest>.sha256``."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".sha256")


def read_tofu_record(dest: str | os.PathLike) -> str | None:
    """The sha256 recorded for ``dest`` on its first download, or None; a malformed record is an error."""
    record = tofu_record_path(dest)
    if not record.is_file():
        return None
    try:
        fields = record.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise VoxflowError(f"{record}: cannot read the recorded checksum: {exc}") from None
    if not fields or not re.fullmatch("[0-9a-f]{64}", fields[0].lower()):
        raise VoxflowError(f"{record}:1: expected '<sha256 hex> <file name>' (the digest recorded on first download); "
                           f"delete it to trust the next download")
    return fields[0].lower()


def write_tofu_record(dest: str | os.PathLike, sha256_hex: str) -> Path:
    """Record ``sha256_hex`` as the trusted digest of ``dest`` (atomically, ``sha256sum -c`` compatible)."""
    record = tofu_record_path(dest)
    write_text_atomic(record, f"{sha256_hex}  {Path(dest).name}\n")
    return record


def digest_mismatches(got: dict[str, str], expected: dict[str, str]) -> list[str]:
    """The algorithms whose digest in ``got`` differs from ``expected``."""
    return [a for a in expected if got.get(a) != expected[a]]


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def record_verified(dest: Path, digests: dict[str, str]) -> None:
    """Remember that ``dest`` (at its current size and mtime) has these digests, so reruns skip hashing."""
    st = dest.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "digests": digests}
    tmp = _stamp_path(dest).with_name(_stamp_path(dest).name + ".tmp")
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, _stamp_path(dest))


def _stamped_digests(dest: Path) -> dict[str, str]:
    """Digests recorded when ``dest`` was last verified, if the file is unchanged since (size, mtime)."""
    try:
        stamp = json.loads(_stamp_path(dest).read_text())
        st = dest.stat()
        if stamp["size"] == st.st_size and stamp["mtime_ns"] == st.st_mtime_ns:
            return dict(stamp["digests"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {}


def verify_file(path: str | os.PathLike, sha256: str | None = None, md5: str | None = None) -> bool:
    """True if ``path`` matches the given digest(s); uses (and refreshes) a ``.verified`` stamp."""
    p = Path(path)
    expected = expected_digests(sha256, md5)
    if not expected:
        return p.is_file()
    known = _stamped_digests(p)
    if all(known.get(a) == v for a, v in expected.items()):
        return True
    got = file_digests(p, tuple(expected))
    if digest_mismatches(got, expected):
        return False
    record_verified(p, {**known, **got})
    return True
