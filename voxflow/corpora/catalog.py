"""The catalogue of known corpora (config/corpora.yaml): load, validate, resolve a name to its files, fetch it.

Every file either has a published checksum (md5/sha256) or says why it has none (``no_checksum:
<reason>``); the latter are fetched under trust on first use (voxflow.corpora.download): the first
download's sha256 is recorded next to the file and checked on every later run. A file with neither
is a catalogue error, so an unverified download is always an explicit, documented choice.

A source's base URL can be replaced by a mirror from the workflow config (``mirrors``) or the
environment (``VOXFLOW_MIRROR_<SOURCE>``); credentials never live in the catalogue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from voxflow.corpora.archive import ExtractReport, concat_parts, safe_extract
from voxflow.corpora.checksums import expected_digests
from voxflow.corpora.download import download
from voxflow.errors import VoxflowError

DEFAULT_CATALOG = Path(__file__).resolve().parents[2] / "config" / "corpora.yaml"
IMPORT_FORMATS = ("voxceleb", "kaldi", "wespeaker", "cnceleb", "diarization", "augmentation")
_CORPUS_KEYS = {"description", "source", "files", "combine", "extract", "import", "notes"}
_FILE_KEYS = {"path", "url", "name", "md5", "sha256", "no_checksum"}
_SOURCE_KEYS = {"base_url", "mirrors"}


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: its URL, alternative URLs (mirrors) to try next, local name and checksums.

    ``no_checksum`` (the reason none is published) marks a file fetched under trust on first use.
    """

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    mirrors: tuple[str, ...] = ()
    no_checksum: str | None = None

    @property
    def checksum(self) -> str | None:
        """``sha256:<hex>`` or ``md5:<hex>`` (the stronger one given), or None when unknown."""
        return f"sha256:{self.sha256}" if self.sha256 else f"md5:{self.md5}" if self.md5 else None


@dataclass(frozen=True)
class Corpus:
    """A catalogue entry with its files resolved against the (possibly mirrored) sources."""

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    combine: RemoteFile | None = None  # url empty: the joined archive of all files, with its checksum
    extract: Mapping[str, str] = field(default_factory=dict)
    import_format: str | None = None
    import_path: str | None = None
    notes: str = ""


def _fail(where: str, message: str) -> VoxflowError:
    return VoxflowError(f"{where}: {message}")


def _checksums(entry: dict, where: str) -> tuple[str | None, str | None]:
    try:
        digests = expected_digests(entry.get("sha256"), entry.get("md5"))
    except VoxflowError as exc:
        raise _fail(where, str(exc)) from None
    return digests.get("md5"), digests.get("sha256")


def _no_checksum(entry: dict, where: str) -> str | None:
    """The file's ``no_checksum`` reason; a file needs exactly one of a checksum and that reason."""
    has_digest = entry.get("md5") is not None or entry.get("sha256") is not None
    reason = entry.get("no_checksum")
    if reason is not None and (not isinstance(reason, str) or not reason.strip()):
        raise _fail(where, "no_checksum must say why no checksum is published (a non-empty string)")
    if has_digest and reason is not None:
        raise _fail(where, "has both a checksum and no_checksum; keep the checksum")
    if not has_digest and reason is None:
        raise _fail(where, "needs md5 or sha256, or no_checksum: <why none is published> (the file is then "
                           "trusted on first download and its recorded sha256 checked on every later run)")
    return reason


def _relative_name(name: str, where: str) -> str:
    if not name or "/" in name or name in (".", "..") or "\\" in name:
        raise _fail(where, f"file name {name!r} must be a plain name without directories")
    return name


def _relative_dir(path: str, where: str) -> str:
    parts = str(path).split("/")
    if not path or str(path).startswith("/") or ".." in parts:
        raise _fail(where, f"directory {path!r} must be relative and stay inside the destination")
    return str(path)


def load_catalog(path: str | os.PathLike | None = None) -> dict:
    """The raw catalogue (``sources`` and ``corpora`` mappings), checked for unknown keys and bad values."""
    p = Path(path) if path is not None else DEFAULT_CATALOG
    if not p.is_file():
        raise VoxflowError(f"{p}: corpus catalogue not found")
    try:
        import yaml
    except ImportError:
        raise VoxflowError(f"{p}: reading the catalogue needs PyYAML (pip install pyyaml)") from None
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise VoxflowError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("corpora"), dict):
        raise VoxflowError(f"{p}: expected a mapping with a 'corpora' mapping")
    unknown = set(data) - {"sources", "corpora"}
    if unknown:
        raise VoxflowError(f"{p}: unknown top-level key(s) {sorted(unknown)}")
    sources = data.get("sources") or {}
    for name, src in sources.items():
        where = f"{p}: sources.{name}"
        if not isinstance(src, dict) or not isinstance(src.get("base_url"), str):
            raise _fail(where, "needs a base_url string")
        if set(src) - _SOURCE_KEYS:
            raise _fail(where, f"unknown key(s) {sorted(set(src) - _SOURCE_KEYS)}")
    for name, entry in data["corpora"].items():
        _check_entry(p, name, entry, sources)
    return data


def _check_entry(p: Path, name: str, entry, sources: dict) -> None:
    where = f"{p}: corpora.{name}"
    if not isinstance(entry, dict):
        raise _fail(where, "must be a mapping")
    if set(entry) - _CORPUS_KEYS:
        raise _fail(where, f"unknown key(s) {sorted(set(entry) - _CORPUS_KEYS)}")
    if entry.get("source") is not None and entry["source"] not in sources:
        raise _fail(f"{where}.source", f"unknown source {entry['source']!r}; known: {sorted(sources)}")
    files = entry.get("files")
    if not isinstance(files, list) or not files:
        raise _fail(f"{where}.files", "must be a non-empty list")
    names = []
    for i, f in enumerate(files):
        fw = f"{where}.files[{i}]"
        if not isinstance(f, dict) or set(f) - _FILE_KEYS:
            raise _fail(fw, f"must be a mapping with keys among {sorted(_FILE_KEYS)}")
        if ("path" in f) == ("url" in f):
            raise _fail(fw, "needs exactly one of 'path' (relative to the source) or 'url'")
        if "path" in f and entry.get("source") is None:
            raise _fail(fw, "a relative 'path' needs the corpus to name a 'source'")
        _checksums(f, fw)
        _no_checksum(f, fw)
        names.append(_relative_name(f.get("name") or str(f.get("path") or f.get("url")).rstrip("/").split("/")[-1], fw))
    if len(set(names)) != len(names):
        raise _fail(f"{where}.files", f"file names repeat: {names}")
    combine = entry.get("combine")
    if combine is not None:
        if not isinstance(combine, dict) or "name" not in combine or set(combine) - {"name", "md5", "sha256"}:
            raise _fail(f"{where}.combine", "must be {name, md5, sha256}")
        _relative_name(combine["name"], f"{where}.combine")
        _checksums(combine, f"{where}.combine")
        names.append(combine["name"])
    extract = entry.get("extract") or {}
    if not isinstance(extract, dict):
        raise _fail(f"{where}.extract", "must map archive file names to directories")
    for archive, target in extract.items():
        if archive not in names:
            raise _fail(f"{where}.extract", f"{archive!r} is not one of this corpus's files {names}")
        _relative_dir(str(target), f"{where}.extract.{archive}")
    imp = entry.get("import")
    if imp is not None:
        if not isinstance(imp, dict) or imp.get("format") not in IMPORT_FORMATS or "path" not in imp:
            raise _fail(f"{where}.import", f"must be {{format: one of {list(IMPORT_FORMATS)}, path: directory}}")
        _relative_dir(str(imp["path"]), f"{where}.import.path")


def _bases(source: str, sources: dict, mirrors: Mapping[str, str] | None, env: Mapping[str, str]) -> list[str]:
    """Base URLs of a source, in the order to try: config mirror, environment mirror, then the catalogue's."""
    src = sources[source]
    override = (mirrors or {}).get(source) or env.get(f"VOXFLOW_MIRROR_{source.upper()}")
    bases = [override] if override else []
    bases += [src["base_url"], *(src.get("mirrors") or [])]
    return [b.rstrip("/") for b in dict.fromkeys(bases)]


def corpus_names(catalog: dict | None = None) -> list[str]:
    """Names of the catalogued corpora."""
    return sorted((catalog or load_catalog())["corpora"])


def resolve(name: str, catalog: dict | str | os.PathLike | None = None, mirrors: Mapping[str, str] | None = None,
            env: Mapping[str, str] | None = None) -> Corpus:
    """The corpus ``name`` with every file's URL (mirrors applied), local file name and checksums."""
    data = catalog if isinstance(catalog, dict) else load_catalog(catalog)
    corpora = data["corpora"]
    if name not in corpora:
        raise VoxflowError(f"unknown corpus {name!r}; the catalogue has {sorted(corpora)}")
    entry, sources = corpora[name], data.get("sources") or {}
    env = os.environ if env is None else env
    files = []
    for f in entry["files"]:
        md5, sha256 = _checksums(f, f"corpora.{name}")
        if "url" in f:
            urls = [f["url"]]
        else:
            urls = [f"{base}/{str(f['path']).lstrip('/')}" for base in _bases(entry["source"], sources, mirrors, env)]
        filename = f.get("name") or urls[0].rstrip("/").split("/")[-1].split("?")[0]
        files.append(RemoteFile(urls[0], filename, md5, sha256, tuple(urls[1:]),
                                _no_checksum(f, f"corpora.{name}") if not (md5 or sha256) else None))
    combine = None
    if entry.get("combine"):
        md5, sha256 = _checksums(entry["combine"], f"corpora.{name}.combine")
        combine = RemoteFile("", entry["combine"]["name"], md5, sha256)
    imp = entry.get("import") or {}
    return Corpus(name, str(entry.get("description", "")), tuple(files), combine, dict(entry.get("extract") or {}),
                  imp.get("format"), imp.get("path"), str(entry.get("notes") or ""))


def resolve_files(name: str, catalog: dict | str | os.PathLike | None = None,
                  mirrors: Mapping[str, str] | None = None) -> list[tuple[str, str, str | None]]:
    """``[(url, filename, checksum)]`` of a corpus, checksum as ``sha256:<hex>``/``md5:<hex>`` or None."""
    return [(f.url, f.filename, f.checksum) for f in resolve(name, catalog, mirrors).files]


def fetch_corpus(corpus: Corpus, dest: str | os.PathLike, extract: bool = True, retries: int = 5,
                 backoff_s: float = 1.0, progress: bool = True) -> dict[str, Path | ExtractReport]:
    """Download a resolved corpus into ``dest`` (trying each file's mirrors in turn), join split parts,
    and (``extract``) safely extract its archives; every step is skipped when already complete.

    Returns {file name: local path} plus {target directory: ExtractReport} for the extractions.
    """
    dest = Path(dest)
    out: dict[str, Path | ExtractReport] = {}
    for f in corpus.files:
        errors = []
        for url in (f.url, *f.mirrors):
            try:
                out[f.filename] = download(url, dest / f.filename, sha256=f.sha256, md5=f.md5, retries=retries,
                                           backoff_s=backoff_s, progress=progress,
                                           trust_on_first_use=f.no_checksum is not None)
                break
            except VoxflowError as exc:
                if "checksum mismatch" in str(exc) or ".sha256:" in str(exc):
                    raise
                errors.append(str(exc))
        else:
            raise VoxflowError(f"{corpus.name}: could not download {f.filename} from any of "
                               f"{1 + len(f.mirrors)} location(s): {' | '.join(errors)}")
    if corpus.combine is not None:
        out[corpus.combine.filename] = concat_parts([dest / f.filename for f in corpus.files],
                                                    dest / corpus.combine.filename, sha256=corpus.combine.sha256,
                                                    md5=corpus.combine.md5)
    if extract:
        for archive, target in corpus.extract.items():
            out[target] = safe_extract(dest / archive, dest / target)
    return out
