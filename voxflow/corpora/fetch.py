"""A corpus's ``download:`` block of the workflow config: resolved to files, fetched, and its m4a converted.

A block names catalogue entries (``catalog``, config/corpora.yaml, with ``mirrors`` per source) or
explicit ``files`` ({url, filename, sha256, md5, no_checksum}; ``$VARS`` in a URL come from the
environment, so a private host need not be written in the config). A file without sha256/md5 must
say why (``no_checksum: <reason>``) and is then trusted on first use: its first download's sha256 is
recorded in ``<file>.sha256`` and checked on every later run. Everything lands in one download directory:
files, extracted archives (``extract``, into ``subdir`` or the archive's name without its
extension) and converted audio (``convert``). Credentials only ever come from the environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Mapping

from voxflow.corpora.archive import ExtractReport
from voxflow.corpora.catalog import Corpus, RemoteFile, fetch_corpus, load_catalog, resolve
from voxflow.corpora.checksums import expected_digests, file_digests, read_tofu_record
from voxflow.errors import VoxflowError

BLOCK_KEYS = {"catalog", "files", "extract", "subdir", "mirrors", "convert"}
FILE_KEYS = {"url", "filename", "sha256", "md5", "no_checksum"}
CONVERT_KEYS = {"src", "dst", "format", "sample_rate"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip")
_ENV_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def archive_stem(filename: str) -> str | None:
    """``filename`` without its archive suffix (``a.tar.gz`` -> ``a``), or None when it is no archive."""
    lower = filename.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return None


def _inside(path: str, where: str) -> str:
    parts = str(path).replace("\\", "/").split("/")
    if not path or str(path).startswith("/") or ".." in parts:
        raise VoxflowError(f"{where}: {path!r} must be a relative path inside the download directory")
    return str(path)


def _expand_url(url: str, where: str, env: Mapping[str, str]) -> str:
    def value(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if not env.get(name):
            raise VoxflowError(f"{where}: the URL uses ${name}, which is not set in the environment")
        return env[name].rstrip("/") if m.end() < len(url) and url[m.end()] == "/" else env[name]

    expanded = _ENV_VAR.sub(value, url)
    if not re.match(r"https?://", expanded):
        raise VoxflowError(f"{where}: only http(s) URLs can be downloaded, got {url!r}")
    return expanded


def _explicit_files(name: str, block: Mapping, env: Mapping[str, str]) -> Corpus:
    where = f"corpora.{name}.download"
    files = block["files"]
    if not isinstance(files, list) or not files:
        raise VoxflowError(f"{where}.files: must be a non-empty list of {{url, filename, sha256, md5}}")
    remote = []
    for i, f in enumerate(files):
        fw = f"{where}.files[{i}]"
        if not isinstance(f, Mapping) or "url" not in f or set(f) - FILE_KEYS:
            raise VoxflowError(f"{fw}: must be a mapping with a url and keys among {sorted(FILE_KEYS)}")
        url = _expand_url(str(f["url"]), fw, env)
        filename = f.get("filename") or url.split("?")[0].rstrip("/").split("/")[-1]
        if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
            raise VoxflowError(f"{fw}: file name {filename!r} must be a plain name (set filename)")
        try:
            digests = expected_digests(f.get("sha256") or None, f.get("md5") or None)
        except VoxflowError as exc:
            raise VoxflowError(f"{fw}: {exc}") from None
        reason = f.get("no_checksum")
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            raise VoxflowError(f"{fw}.no_checksum: must say why the file has no checksum (a non-empty string)")
        if digests and reason is not None:
            raise VoxflowError(f"{fw}: has both a checksum and no_checksum; keep the checksum")
        if not digests and reason is None:
            raise VoxflowError(f"{fw}: needs sha256 or md5, or no_checksum: <why none is known> (the first download "
                               "is then trusted and its sha256, recorded next to it, checked on every later run)")
        remote.append(RemoteFile(url, filename, digests.get("md5"), digests.get("sha256"), no_checksum=reason))
    names = [f.filename for f in remote]
    if len(set(names)) != len(names):
        raise VoxflowError(f"{where}.files: file names repeat: {names}")
    archives = [n for n in names if archive_stem(n)]
    subdir = block.get("subdir") or ""
    if subdir and len(archives) != 1:
        raise VoxflowError(f"{where}.subdir: needs exactly one archive among the files, found {archives}")
    extract = {}
    if block.get("extract", True):
        extract = {a: _inside(subdir, f"{where}.subdir") if subdir else archive_stem(a) for a in archives}
    return Corpus(name, "", tuple(remote), None, extract)


def plan_download(name: str, block: Mapping, catalog: dict | str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None) -> list[Corpus]:
    """The catalogue-style entries (files with mirrors applied, extraction targets) a download block names."""
    where = f"corpora.{name}.download"
    env = os.environ if env is None else env
    if not isinstance(block, Mapping):
        raise VoxflowError(f"{where}: must be a mapping")
    unknown = set(block) - BLOCK_KEYS
    if unknown:
        raise VoxflowError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(BLOCK_KEYS)}")
    if ("catalog" in block) == ("files" in block):
        raise VoxflowError(f"{where}: needs exactly one of 'catalog' (config/corpora.yaml names) or 'files'")
    if "files" in block:
        if block.get("mirrors"):
            raise VoxflowError(f"{where}.mirrors: applies to catalog sources only; put the URL in files")
        return [_explicit_files(name, block, env)]
    if block.get("subdir"):
        raise VoxflowError(f"{where}.subdir: applies to files only (the catalogue says where archives go)")
    names = [block["catalog"]] if isinstance(block["catalog"], str) else list(block["catalog"])
    data = catalog if isinstance(catalog, dict) else load_catalog(catalog)
    corpora = [resolve(n, data, mirrors=block.get("mirrors") or None, env=env) for n in names]
    if not block.get("extract", True):
        corpora = [dataclasses.replace(c, extract={}) for c in corpora]
    seen: dict[str, str] = {}
    for c in corpora:
        for f in (*c.files, *([c.combine] if c.combine else [])):
            if f.filename in seen:
                raise VoxflowError(f"{where}.catalog: {c.name} and {seen[f.filename]} both download {f.filename}")
            seen[f.filename] = c.name
    return corpora


def fetch_download(name: str, block: Mapping, dest: str | os.PathLike, catalog=None, retries: int = 5,
                   progress: bool = True) -> dict:
    """Download (resuming, verifying) and extract what ``block`` names into ``dest``; return a JSON-able record.

    Each file's entry says how it was verified: ``"published"`` (the config's or catalogue's checksum) or
    ``"first-use"`` (no checksum published: the sha256 recorded on its first download, printed so the
    config can pin it).
    """
    dest = Path(dest)
    record: dict = {"corpus": name, "files": {}, "extracted": {}}
    for corpus in plan_download(name, block, catalog):
        results = fetch_corpus(corpus, dest, extract=True, retries=retries, progress=progress)
        checks = {f.filename: f for f in (*corpus.files, *([corpus.combine] if corpus.combine else []))}
        for key, value in results.items():
            if isinstance(value, ExtractReport):
                record["extracted"][key] = {"archive": value.archive.name, "files": value.files,
                                            "refused": [list(r) for r in value.refused]}
                continue
            f = checks.get(key)
            if f is not None and f.checksum:
                record["files"][key] = {"checksum": f.checksum, "verified": "published"}
            else:
                recorded = read_tofu_record(value)
                digest = recorded or file_digests(value)["sha256"]
                record["files"][key] = {"checksum": f"sha256:{digest}", "verified": "first-use" if recorded else False}
                if f is not None and f.no_checksum:
                    record["files"][key]["no_checksum"] = f.no_checksum
    return record


def convert_download(name: str, convert: Mapping, dest: str | os.PathLike, jobs: int | None = None) -> dict:
    """Convert the .m4a tree ``convert.src`` of a download directory into ``convert.dst`` (wav or flac)."""
    from voxflow.corpora.convert import convert_tree, find_ffmpeg

    where = f"corpora.{name}.download.convert"
    unknown = set(convert) - CONVERT_KEYS
    if unknown or "src" not in convert or "dst" not in convert:
        raise VoxflowError(f"{where}: needs src and dst, keys among {sorted(CONVERT_KEYS)}")
    src = Path(dest) / _inside(convert["src"], f"{where}.src")
    dst = Path(dest) / _inside(convert["dst"], f"{where}.dst")
    try:
        find_ffmpeg()
    except VoxflowError as exc:
        raise VoxflowError(f"{where}: converting {src} needs FFmpeg: {exc}; with Snakemake, add --use-conda "
                           "(the rule uses envs/ffmpeg.yaml)") from None
    report = convert_tree(src, dst, fmt=convert.get("format", "wav"), sample_rate=int(convert.get("sample_rate", 16000)),
                          jobs=jobs)
    return {"corpus": name, "src": str(src), "dst": str(dst), "converted": report.converted,
            "already_present": report.skipped}
