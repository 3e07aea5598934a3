"""Safe extraction of real zip/tar archives built here, malicious members included; joining split parts."""

import hashlib
import io
import os
import stat
import tarfile
import zipfile

import pytest

from voxflow.corpus_cli import main as corpus_main
from voxflow.corpora.archive import MARKER, concat_parts, safe_extract
from voxflow.errors import VoxflowError


def snapshot(root):
    """Every path under ``root`` (links not followed)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def add_file(tf, name, data=b"", mode=0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_600_000_000
    tf.addfile(info, io.BytesIO(data))


def add_special(tf, name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, linkname, 1_600_000_000
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    tf.addfile(info)


@pytest.fixture
def layout(tmp_path):
    """tmp/outside/secret.txt (must stay untouched), tmp/work/ (where archives are extracted)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("keep me")
    work = tmp_path / "work"
    work.mkdir()
    return tmp_path, outside, work


def evil_tar(path, outside, compression=""):
    with tarfile.open(path, f"w:{compression}") as tf:
        add_special(tf, "data", tarfile.DIRTYPE)
        add_file(tf, "data/a.txt", b"hello")
        add_file(tf, "data/run.sh", b"#!/bin/sh\n", mode=0o4755)  # setuid bit must be dropped
        add_special(tf, "data/link_ok", tarfile.SYMTYPE, "a.txt")
        add_special(tf, "data/hard_ok", tarfile.LNKTYPE, "data/a.txt")
        add_file(tf, str(outside / "abs.txt"), b"absolute")
        add_file(tf, "../escape.txt", b"dotdot")
        add_file(tf, "data/../../escape2.txt", b"dotdot")
        add_special(tf, "up", tarfile.SYMTYPE, "../outside")
        add_file(tf, "up/pwned.txt", b"through the link")
        add_special(tf, "inner", tarfile.SYMTYPE, "data")
        add_file(tf, "inner/a.txt", b"overwrite through an inside link")
        add_special(tf, "abs_link", tarfile.SYMTYPE, str(outside / "secret.txt"))
        add_special(tf, "hard_escape", tarfile.LNKTYPE, "../outside/secret.txt")
        add_special(tf, "hard_abs", tarfile.LNKTYPE, str(outside / "secret.txt"))
        add_special(tf, "dev/null0", tarfile.CHRTYPE)
        add_special(tf, "dev/disk", tarfile.BLKTYPE)
        add_special(tf, "fifo", tarfile.FIFOTYPE)
        # a chain: each link stays inside on its own, together s1 resolves above the root
        add_special(tf, "r", tarfile.DIRTYPE)
        add_special(tf, "x", tarfile.DIRTYPE)
        add_special(tf, "s1", tarfile.SYMTYPE, "r/s2/../..")
        add_special(tf, "r/s2", tarfile.SYMTYPE, "../x")


@pytest.mark.parametrize("compression, suffix", [("", ".tar"), ("gz", ".tar.gz"), ("gz", ".tgz")])
def test_malicious_tar_members_are_refused_and_nothing_escapes(layout, compression, suffix):
    tmp, outside, work = layout
    archive = tmp / f"evil{suffix}"
    evil_tar(archive, outside, compression)
    before = snapshot(tmp)
    target = work / "out"
    report = safe_extract(archive, target)
    refused = dict(report.refused)
    assert refused[str(outside / "abs.txt")] == "absolute path"
    assert refused["../escape.txt"] == refused["data/../../escape2.txt"] == "path contains '..'"
    assert "leaves the target directory" in refused["up"]
    assert refused["up/pwned.txt"] == "parent up was refused"
    assert refused["inner/a.txt"] == "parent inner is a symlink, not a directory"
    assert "absolute path" in refused["abs_link"]
    assert "hard link" in refused["hard_escape"] and "hard link" in refused["hard_abs"]
    assert refused["dev/null0"] == "character device" and refused["dev/disk"] == "block device"
    assert refused["fifo"] == "fifo"
    assert "via other links" in refused["s1"]
    assert len(report.refused) == 13
    # nothing appeared outside the target, the secret is intact
    assert snapshot(tmp) - before == {str((target / p).relative_to(tmp)) for p in snapshot(target)} | {
        "work/out"}
    assert (outside / "secret.txt").read_text() == "keep me"
    # the safe members are there, with sanitised modes
    assert (target / "data/a.txt").read_bytes() == b"hello"
    assert os.readlink(target / "data/link_ok") == "a.txt"
    assert (target / "data/hard_ok").read_bytes() == b"hello"
    assert not stat.S_IMODE((target / "data/run.sh").stat().st_mode) & stat.S_ISUID
    assert os.path.islink(target / "r/s2") and not os.path.lexists(target / "s1")
    assert not (target / "dev").exists() and not (target / "fifo").exists()
    assert (target / "data/a.txt").read_bytes() == b"hello" and os.readlink(target / "inner") == "data"
    assert report.files == 3 and report.links == 3


def test_strict_mode_fails_and_leaves_nothing(layout):
    tmp, outside, work = layout
    archive = tmp / "evil.tar"
    evil_tar(archive, outside)
    with pytest.raises(VoxflowError, match=r"evil.tar: unsafe member"):
        safe_extract(archive, work / "out", on_refused="error")
    assert os.listdir(work) == []  # neither the target nor a temporary directory


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 2, 3, 4, 6))
            info.external_attr = mode << 16
            zf.writestr(info, data)


def test_malicious_zip_members_are_refused_and_nothing_escapes(layout):
    tmp, outside, work = layout
    archive = tmp / "evil.zip"
    make_zip(archive, [
        ("wav/id1/s1/00001.wav", b"RIFF", stat.S_IFREG | 0o644),
        ("wav/id1/s1/00002.wav", b"RIFF2", 0),  # no unix mode (zip made on Windows)
        ("wav/link", b"id1/s1/00001.wav", stat.S_IFLNK | 0o777),
        ("/abs.txt", b"x", stat.S_IFREG | 0o644),
        ("../evil.txt", b"x", stat.S_IFREG | 0o644),
        ("..\\evil2.txt", b"x", stat.S_IFREG | 0o644),
        ("escape_link", b"../../outside/secret.txt", stat.S_IFLNK | 0o777),
        ("escape_link/x", b"x", stat.S_IFREG | 0o644),
        ("chardev", b"", stat.S_IFCHR | 0o644),
        ("pipe", b"", stat.S_IFIFO | 0o644),
    ])
    before = snapshot(tmp)
    report = safe_extract(archive, work / "out")
    refused = dict(report.refused)
    assert set(refused) == {"/abs.txt", "../evil.txt", "..\\evil2.txt", "escape_link", "escape_link/x",
                            "chardev", "pipe"}
    assert "backslash" in refused["..\\evil2.txt"] and refused["chardev"] == "character device"
    assert (work / "out/wav/id1/s1/00002.wav").read_bytes() == b"RIFF2"
    assert (work / "out/wav/link").read_bytes() == b"RIFF"
    assert snapshot(tmp) - before == {f"work/out/{p}" for p in snapshot(work / "out")} | {"work/out"}
    assert (outside / "secret.txt").read_text() == "keep me"
    assert not (tmp / "evil.txt").exists() and not (tmp / "abs.txt").exists()


def test_rerun_does_nothing_even_without_the_archive(layout):
    tmp, _, work = layout
    archive = tmp / "ok.zip"
    make_zip(archive, [("a/b.txt", b"data", stat.S_IFREG | 0o644)])
    first = safe_extract(archive, work / "out")
    assert not first.skipped and first.files == 1 and (work / "out" / MARKER).is_file()
    (work / "out/a/b.txt").write_bytes(b"edited")
    second = safe_extract(archive, work / "out")
    assert second.skipped and second.files == 1
    assert (work / "out/a/b.txt").read_bytes() == b"edited"
    archive.unlink()
    assert safe_extract(archive, work / "out").skipped


def test_marker_from_another_archive_or_foreign_directory_is_an_error(layout):
    tmp, _, work = layout
    a, b = tmp / "a.zip", tmp / "b.zip"
    make_zip(a, [("x.txt", b"1", stat.S_IFREG | 0o644)])
    make_zip(b, [("x.txt", b"22222", stat.S_IFREG | 0o644), ("y.txt", b"3", stat.S_IFREG | 0o644)])
    safe_extract(a, work / "out")
    with pytest.raises(VoxflowError, match=r"different 'a.zip'"):
        safe_extract(b, work / "out")
    (work / "mine").mkdir()
    with pytest.raises(VoxflowError, match=r"mine: exists but was not extracted by voxflow"):
        safe_extract(a, work / "mine")


def test_corrupt_archives_are_errors_naming_the_file(layout):
    tmp, outside, work = layout
    good = tmp / "good.tar.gz"
    evil_tar(good, outside, "gz")
    truncated = tmp / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VoxflowError, match=r"truncated.tar.gz: corrupt or truncated"):
        safe_extract(truncated, work / "t")
    junk = tmp / "junk.zip"
    junk.write_bytes(b"this is not an archive at all" * 10)
    with pytest.raises(VoxflowError, match=r"junk.zip: not a zip or tar archive"):
        safe_extract(junk, work / "j")
    assert os.listdir(work) == []


def test_extract_cli_reports_refused_members(layout, capsys):
    tmp, outside, work = layout
    archive = tmp / "evil.tar"
    evil_tar(archive, outside)
    corpus_main(["extract", str(archive), str(work / "cli")])
    captured = capsys.readouterr()
    assert "3 files" in captured.out and "refused '../escape.txt': path contains '..'" in captured.err
    with pytest.raises(SystemExit) as exit_info:
        corpus_main(["extract", str(archive), str(work / "strict"), "--strict"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "unsafe member" in err[-1]


def test_concat_parts_joins_verifies_and_keeps_a_bad_result(tmp_path):
    data = os.urandom(10_000)
    parts = []
    for i, chunk in enumerate((data[:3000], data[3000:7000], data[7000:])):
        parts.append(tmp_path / f"set_parta{'abc'[i]}")
        parts[-1].write_bytes(chunk)
    good = hashlib.md5(data).hexdigest()
    out = concat_parts(parts, tmp_path / "set.zip", md5=good)
    assert out.read_bytes() == data
    mtime = out.stat().st_mtime_ns
    concat_parts(parts, tmp_path / "set.zip", md5=good)  # present and verified: untouched
    assert out.stat().st_mtime_ns == mtime
    with pytest.raises(VoxflowError) as err:
        concat_parts(parts[::-1], tmp_path / "other.zip", md5=good)
    assert good in str(err.value) and "other.zip" in str(err.value)
    assert not (tmp_path / "other.zip").exists() and (tmp_path / "other.zip.bad").is_file()
    with pytest.raises(VoxflowError, match="part.s. missing"):
        concat_parts([tmp_path / "nope"], tmp_path / "x.zip")
