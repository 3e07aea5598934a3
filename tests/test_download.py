"""Downloads against a real HTTP server on 127.0.0.1 (Range support, scripted failures, request log)."""

import base64
import hashlib
import io
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from voxflow.corpus_cli import main as corpus_main
from voxflow.corpora.catalog import fetch_corpus, load_catalog, resolve, resolve_files
from voxflow.corpora.checksums import tofu_record_path
from voxflow.corpora.download import download, redact_url
from voxflow.errors import VoxflowError


class FileServer:
    """Serves ``files`` over HTTP/1.1 with byte ranges; failures are scripted per path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, dict]] = []
        self.fail_503: dict[str, int] = {}  # path -> number of 503 answers still to give
        self.cut_after: dict[str, int] = {}  # path -> bytes to send before dropping the connection (once)
        self.ignore_range: set[str] = set()
        self.auth: tuple[str, str] | None = None
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with server.lock:
                    server.requests.append((self.path, dict(self.headers)))
                    fail = server.fail_503.get(self.path, 0)
                    if fail:
                        server.fail_503[self.path] = fail - 1
                    cut = server.cut_after.pop(self.path, None)
                if server.auth is not None:
                    token = base64.b64encode(":".join(server.auth).encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {token}":
                        return self._empty(401, {"WWW-Authenticate": 'Basic realm="test"'})
                if fail:
                    return self._empty(503, {"Retry-After": "0"})
                data = server.files.get(self.path)
                if data is None:
                    return self._empty(404)
                start, status, extra = 0, 200, {}
                m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if m and self.path not in server.ignore_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        return self._empty(416, {"Content-Range": f"bytes */{len(data)}"})
                    status, extra = 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _empty(self, status, headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _no_env_credentials(monkeypatch):
    for name in ("VOXFLOW_DOWNLOAD_USER", "VOXFLOW_DOWNLOAD_PASSWORD", "VOXFLOW_DOWNLOAD_HEADERS"):
        monkeypatch.delenv(name, raising=False)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def payload(n: int = 300_000, seed: int = 0) -> bytes:
    return bytes((i * 7919 + seed * 31 + (i >> 9)) % 251 for i in range(n))


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    data = payload()
    server.files["/a.bin"] = data
    server.cut_after["/a.bin"] = 100_000  # first answer dies after 100 kB
    dest = tmp_path / "dl" / "a.bin"
    out = download(server.url("/a.bin"), dest, sha256=sha256(data), backoff_s=0.01, chunk_bytes=8192,
                   progress=False)
    assert out == dest and dest.read_bytes() == data
    assert server.count("/a.bin") == 2
    assert "Range" not in server.requests[0][1]
    assert server.requests[1][1]["Range"] == "bytes=100000-"
    assert not (tmp_path / "dl" / "a.bin.part").exists()


def test_partial_file_left_by_an_earlier_run_is_resumed(server, tmp_path):
    data = payload(seed=1)
    server.files["/b.bin"] = data
    dest = tmp_path / "b.bin"
    (tmp_path / "b.bin.part").write_bytes(data[:123_456])
    download(server.url("/b.bin"), dest, md5=md5(data), backoff_s=0.01, progress=False)
    assert dest.read_bytes() == data
    assert [h.get("Range") for _, h in server.requests] == ["bytes=123456-"]


def test_server_without_range_support_restarts_from_zero(server, tmp_path):
    data = payload(seed=2)
    server.files["/c.bin"] = data
    server.ignore_range.add("/c.bin")
    dest = tmp_path / "c.bin"
    (tmp_path / "c.bin.part").write_bytes(b"stale bytes from another file" * 100)
    download(server.url("/c.bin"), dest, sha256=sha256(data), progress=False)
    assert dest.read_bytes() == data
    assert server.requests[0][1]["Range"] == "bytes=2900-"  # asked to resume, got a 200 with the whole file


def test_complete_part_answered_416_is_finished_without_a_body(server, tmp_path):
    data = payload(5000, seed=3)
    server.files["/d.bin"] = data
    (tmp_path / "d.bin.part").write_bytes(data)
    download(server.url("/d.bin"), tmp_path / "d.bin", sha256=sha256(data), progress=False)
    assert (tmp_path / "d.bin").read_bytes() == data
    assert server.count("/d.bin") == 1


def test_checksum_mismatch_names_file_and_both_digests_and_keeps_bad_file(server, tmp_path):
    data = payload(seed=4)
    server.files["/e.bin"] = data
    dest = tmp_path / "e.bin"
    wrong = "0" * 64
    with pytest.raises(VoxflowError) as err:
        download(server.url("/e.bin"), dest, sha256=wrong, progress=False)
    msg = str(err.value)
    assert str(dest) in msg and wrong in msg and sha256(data) in msg
    assert not dest.exists() and not (tmp_path / "e.bin.part").exists()
    assert (tmp_path / "e.bin.bad").read_bytes() == data


def test_rerun_with_verified_file_present_makes_no_request(server, tmp_path):
    data = payload(seed=5)
    server.files["/f.bin"] = data
    dest = tmp_path / "f.bin"
    download(server.url("/f.bin"), dest, sha256=sha256(data), md5=md5(data), progress=False)
    assert server.count("/f.bin") == 1
    download(server.url("/f.bin"), dest, sha256=sha256(data), md5=md5(data), progress=False)
    download(server.url("/f.bin"), dest, progress=False)  # no checksum: presence is enough
    assert server.count("/f.bin") == 1


def test_present_file_failing_its_checksum_is_moved_aside_and_fetched_again(server, tmp_path):
    data = payload(seed=6)
    server.files["/g.bin"] = data
    dest = tmp_path / "g.bin"
    dest.write_bytes(b"corrupted")
    download(server.url("/g.bin"), dest, sha256=sha256(data), progress=False)
    assert dest.read_bytes() == data
    assert (tmp_path / "g.bin.bad").read_bytes() == b"corrupted"
    assert server.count("/g.bin") == 1


def test_503_is_retried_with_backoff(server, tmp_path):
    data = payload(2000, seed=7)
    server.files["/h.bin"] = data
    server.fail_503["/h.bin"] = 2
    download(server.url("/h.bin"), tmp_path / "h.bin", sha256=sha256(data), backoff_s=0.01, progress=False)
    assert (tmp_path / "h.bin").read_bytes() == data
    assert server.count("/h.bin") == 3


def test_persistent_503_gives_up_after_the_retries(server, tmp_path):
    server.files["/i.bin"] = b"x"
    server.fail_503["/i.bin"] = 100
    with pytest.raises(VoxflowError, match=r"failed after 2 retries: HTTP 503"):
        download(server.url("/i.bin"), tmp_path / "i.bin", retries=2, backoff_s=0.001, progress=False)
    assert server.count("/i.bin") == 3
    assert not (tmp_path / "i.bin").exists()


def test_404_is_not_retried(server, tmp_path):
    with pytest.raises(VoxflowError, match=r"HTTP 404"):
        download(server.url("/missing.bin"), tmp_path / "m.bin", backoff_s=0.001, progress=False)
    assert server.count("/missing.bin") == 1


def test_unreachable_host_is_retried_then_reported(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(VoxflowError, match=r"failed after 1 retries"):
        download(f"http://127.0.0.1:{port}/x", tmp_path / "x", retries=1, backoff_s=0.001, progress=False)


def test_basic_auth_from_environment_is_sent_but_never_shown(server, tmp_path, monkeypatch, capsys, caplog):
    data = payload(4000, seed=8)
    server.files["/j.bin"] = data
    server.auth = ("alice", "s3cret-pw")
    with pytest.raises(VoxflowError, match="HTTP 401") as err:
        download(server.url("/j.bin"), tmp_path / "j.bin", progress=False)
    assert "s3cret" not in str(err.value)
    monkeypatch.setenv("VOXFLOW_DOWNLOAD_USER", "alice")
    monkeypatch.setenv("VOXFLOW_DOWNLOAD_PASSWORD", "s3cret-pw")
    caplog.set_level("DEBUG")
    download(server.url("/j.bin"), tmp_path / "j.bin", sha256=sha256(data), progress=True)
    assert (tmp_path / "j.bin").read_bytes() == data
    shown = capsys.readouterr().err + caplog.text
    assert "s3cret" not in shown and base64.b64encode(b"alice:s3cret-pw").decode() not in shown


def test_credentials_in_url_are_used_and_redacted(server, tmp_path):
    data = payload(1000, seed=9)
    server.files["/k.bin"] = data
    server.auth = ("bob", "pa ss")
    url = server.url("/k.bin").replace("http://", "http://bob:pa%20ss@")
    download(url, tmp_path / "k.bin", progress=False)
    assert (tmp_path / "k.bin").read_bytes() == data
    assert "pa" not in redact_url(url).split("@")[0] and "bob" not in redact_url(url)


def test_progress_lines_go_to_stderr(server, tmp_path, capsys):
    data = payload(200_000, seed=10)
    server.files["/l.bin"] = data
    download(server.url("/l.bin"), tmp_path / "l.bin", chunk_bytes=4096, progress=True)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("l.bin:")]
    assert 5 <= len(lines) <= 25
    assert "100%" in lines[-1]


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_catalogued_corpus_is_downloaded_joined_extracted_and_then_left_alone(server, tmp_path, capsys,
                                                                                monkeypatch):
    archive = _zip_bytes({"wav/id1/s1/00001.txt": b"one", "wav/id1/s1/00002.txt": b"two"})
    third = len(archive) // 3
    parts = [archive[:third], archive[third:2 * third], archive[2 * third:]]
    for i, part in enumerate(parts):
        server.files[f"/base/set_part{i}"] = part
    server.cut_after["/base/set_part1"] = 10
    catalog = tmp_path / "corpora.yaml"
    catalog.write_text(
        "sources:\n  local: {base_url: 'http://unused.invalid/x'}\n"
        "corpora:\n  toy:\n    description: toy set\n    source: local\n    files:\n"
        + "".join(f"      - {{path: set_part{i}, md5: {md5(p)}}}\n" for i, p in enumerate(parts))
        + f"    combine: {{name: set.zip, sha256: {sha256(archive)}}}\n"
        "    extract: {set.zip: toy/dev}\n    import: {format: voxceleb, path: toy/dev/wav}\n"
    )
    mirrors = {"local": server.url("/base")}
    assert resolve_files("toy", catalog, mirrors)[0] == (server.url("/base/set_part0"), "set_part0",
                                                          f"md5:{md5(parts[0])}")
    corpus = resolve("toy", catalog, mirrors)
    dest = tmp_path / "downloads"
    out = fetch_corpus(corpus, dest, backoff_s=0.01, progress=False)
    assert (dest / "set.zip").read_bytes() == archive
    assert (dest / "toy/dev/wav/id1/s1/00002.txt").read_bytes() == b"two"
    assert out["toy/dev"].files == 2 and not out["toy/dev"].skipped
    n = len(server.requests)
    # the CLI, through the environment mirror: everything present, so no request at all
    monkeypatch.setenv("VOXFLOW_MIRROR_LOCAL", server.url("/base"))
    corpus_main(["download", "toy", "--dest", str(dest), "--catalog", str(catalog), "--no-progress"])
    assert len(server.requests) == n
    stdout = capsys.readouterr().out
    assert "already extracted" in stdout and "toy/dev/wav" in stdout


def test_mirrors_are_tried_in_turn(server, tmp_path):
    data = payload(3000, seed=11)
    server.files["/good/f.bin"] = data
    catalog = tmp_path / "c.yaml"
    catalog.write_text(
        f"sources:\n  s: {{base_url: '{server.url('/dead')}', mirrors: ['{server.url('/good')}']}}\n"
        f"corpora:\n  c:\n    source: s\n    files: [{{path: f.bin, sha256: {sha256(data)}}}]\n"
    )
    fetch_corpus(resolve("c", catalog), tmp_path / "d", backoff_s=0.001, progress=False)
    assert (tmp_path / "d" / "f.bin").read_bytes() == data
    assert server.count("/dead/f.bin") == 1 and server.count("/good/f.bin") == 1


@pytest.mark.parametrize("body, message", [
    ("corpora:\n  x:\n    files: [{path: a}]\n", "needs the corpus to name a 'source'"),
    ("corpora:\n  x:\n    files: [{url: 'http://h/a', md5: xyz}]\n", "corpora.x.files[0]: md5 checksum 'xyz'"),
    ("corpora:\n  x:\n    files: [{url: 'http://h/a', md5: null}]\n", "needs md5 or sha256, or no_checksum"),
    ("corpora:\n  x:\n    files: [{url: 'http://h/a', md5: %s, no_checksum: why}]\n" % ("a" * 32),
     "has both a checksum and no_checksum"),
    ("corpora:\n  x:\n    files: [{url: 'http://h/a', no_checksum: ''}]\n", "no_checksum must say why"),
    ("corpora:\n  x:\n    files: [{url: 'http://h/a', no_checksum: r}]\n    extract: {b.zip: d}\n",
     "'b.zip' is not one of"),
    ("corpora:\n  x:\n    files: [{url: 'http://h/a', no_checksum: r}]\n    extract: {a: ../up}\n",
     "stay inside the destination"),
    ("corpora:\n  x:\n    files: [{url: 'http://h/a', no_checksum: r}]\n    colour: red\n",
     "unknown key(s) ['colour']"),
])
def test_bad_catalogue_entries_are_named(tmp_path, body, message):
    p = tmp_path / "c.yaml"
    p.write_text(body)
    with pytest.raises(VoxflowError) as err:
        load_catalog(p)
    assert message in str(err.value) and str(p) in str(err.value)


def test_shipped_catalogue_resolves_every_corpus():
    catalog = load_catalog()
    names = set(catalog["corpora"])
    assert {"voxceleb1_dev", "voxceleb1_test", "voxceleb1_trials", "voxceleb2_dev", "voxceleb2_test", "musan",
            "rirs_noises", "voxconverse_dev", "voxconverse_test", "voxconverse_rttm", "cnceleb1",
            "cnceleb2"} <= names
    vox1 = resolve("voxceleb1_dev", catalog, env={})
    assert [f.filename for f in vox1.files] == [f"vox1_dev_wav_parta{c}" for c in "abcd"]
    assert vox1.combine.filename == "vox1_dev_wav.zip" and vox1.combine.md5 == "ae63e55b951748cc486645f532ba230b"
    mirrored = resolve("musan", catalog, env={"VOXFLOW_MIRROR_OPENSLR": "https://mirror.example/slr/"})
    assert mirrored.files[0].url == "https://mirror.example/slr/17/musan.tar.gz"
    assert "https://www.openslr.org/resources/17/musan.tar.gz" in mirrored.files[0].mirrors


def test_trust_on_first_use_records_the_digest_and_checks_every_later_run(server, tmp_path):
    v1, v2 = payload(5000, seed=3), payload(5000, seed=4)
    server.files["/list.txt"] = v1
    dest = tmp_path / "list.txt"
    record = tofu_record_path(dest)
    download(server.url("/list.txt"), dest, progress=False, trust_on_first_use=True)
    assert dest.read_bytes() == v1 and record.read_text() == f"{sha256(v1)}  list.txt\n"
    n = len(server.requests)
    download(server.url("/list.txt"), dest, progress=False, trust_on_first_use=True)
    assert len(server.requests) == n  # present and matching its record: no request
    # Upstream changes and the file is fetched again: the recorded digest rejects it, naming both digests.
    dest.unlink()
    server.files["/list.txt"] = v2
    with pytest.raises(VoxflowError) as err:
        download(server.url("/list.txt"), dest, progress=False, trust_on_first_use=True, backoff_s=0.001)
    message = str(err.value)
    assert f"{dest}: checksum mismatch" in message and sha256(v1) in message and sha256(v2) in message
    assert str(record) in message and "recorded on the first download" in message
    assert not dest.exists() and (tmp_path / "list.txt.bad").read_bytes() == v2
    # A local file that was altered is moved aside and the (unchanged) upstream fetched again.
    server.files["/list.txt"] = v1
    dest.write_bytes(b"edited by hand")
    download(server.url("/list.txt"), dest, progress=False, trust_on_first_use=True)
    assert dest.read_bytes() == v1 and (tmp_path / "list.txt.bad").read_bytes() == b"edited by hand"
    # A published checksum wins over the record; a damaged record is an error naming it.
    download(server.url("/list.txt"), dest, md5=md5(v1), progress=False, trust_on_first_use=True)
    record.write_text("not-a-digest list.txt\n")
    with pytest.raises(VoxflowError, match=r"list\.txt\.sha256:1: expected '<sha256 hex> <file name>'"):
        download(server.url("/list.txt"), dest, progress=False, trust_on_first_use=True)


def test_catalogue_file_without_published_checksum_is_trusted_on_first_use(server, tmp_path, capsys):
    data = payload(4000, seed=9)
    server.files["/meta/trials.txt"] = data
    catalog = tmp_path / "c.yaml"
    catalog.write_text(
        f"sources:\n  m: {{base_url: '{server.url('/meta')}'}}\n"
        "corpora:\n  lists:\n    source: m\n    files: [{path: trials.txt, no_checksum: none is published}]\n")
    corpus = resolve("lists", catalog, env={})
    assert corpus.files[0].checksum is None and corpus.files[0].no_checksum == "none is published"
    fetch_corpus(corpus, tmp_path / "d", progress=False)
    assert tofu_record_path(tmp_path / "d/trials.txt").read_text().split()[0] == sha256(data)
    server.files["/meta/trials.txt"] = data[:-1] + b"!"
    (tmp_path / "d/trials.txt").unlink()
    with pytest.raises(VoxflowError, match="checksum mismatch"):
        fetch_corpus(corpus, tmp_path / "d", progress=False, backoff_s=0.001)
    assert server.count("/meta/trials.txt") == 2  # the mismatch is final: no mirror or retry hides it
    corpus_main(["list", "--catalog", str(catalog)])
    assert "lists:  (1 file(s)) [1 file(s) without published checksum: trusted on first use]" in capsys.readouterr().out


def test_shipped_catalogue_pins_voxconverse_and_has_no_silent_unverified_file():
    catalog = load_catalog()
    for name in catalog["corpora"]:
        for f in resolve(name, catalog, env={}).files:
            assert f.checksum or f.no_checksum, (name, f.filename)
    rttm = resolve("voxconverse_rttm", catalog, env={})
    url = rttm.files[0].url
    assert "/archive/24bf60be297701cd7e4ef18550c6d390c1b87365.zip" in url and "master" not in url
    trials = resolve("voxceleb1_trials", catalog, env={})
    assert [f.filename for f in trials.files if f.no_checksum] == ["veri_test2.txt", "list_test_all2.txt",
                                                                    "list_test_hard2.txt"]
