"""Real corpora in the DAG: a local VoxCeleb-layout evaluation corpus with its own trials, RTTMs and UEM, and
corpora the workflow downloads from a loopback HTTP server (checksums, extraction, m4a conversion, reruns)."""

import hashlib
import io
import itertools
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from test_download import FileServer  # pytest puts tests/ on sys.path
from test_workflow import REPO, snakemake, tiny_config, write_config
from voxflow.corpora.fetch import plan_download
from voxflow.demo.corpus import make_demo_corpus
from voxflow.errors import VoxflowError

pytestmark = pytest.mark.workflow


def nothing_to_do(workdir: Path, *targets: str) -> bool:
    return "Nothing to be done" in snakemake(workdir, "-n", *targets).stdout


def eval_config(cfg: dict) -> dict:
    """tiny_config() trimmed to what these tests look at: one system, cosine scoring, no cleaning."""
    cfg["cleaning"]["enabled"] = False
    cfg["experiments"]["xvector_aam"]["untrained_baseline"] = False
    cfg["backends"] = {"cosine": {"type": "cosine"}}
    cfg["calibration"]["enabled"] = False
    return cfg


# ---------------------------------------------------------------- a local evaluation corpus, end to end


def make_local_corpus(root: Path) -> dict:
    """A VoxCeleb-layout FLAC corpus of 4 speakers (own ids), a Kaldi trial list, a meeting with RTTM and UEM."""
    synth = root / "synth"
    make_demo_corpus(synth, seed=7, n_dev_speakers=2, n_test_speakers=4, sessions_per_speaker=2,
                     utts_per_session=3, n_mislabeled=0, n_conversations=1, n_noises=1, n_rirs=1)
    wav_root = root / "myvox" / "wav"
    utts = []
    for src in sorted((synth / "test/wav").rglob("*.wav")):
        spk, session, utt = src.relative_to(synth / "test/wav").with_suffix("").parts
        rel = Path(f"spk_{spk}", session, utt)
        (wav_root / rel).parent.mkdir(parents=True, exist_ok=True)
        audio, sr = sf.read(src)
        sf.write(wav_root / rel.with_suffix(".flac"), audio, sr)
        utts.append(rel)
    lines = [f"{a} {b} {'target' if a.parts[0] == b.parts[0] else 'nontarget'}"
             for a, b in itertools.combinations(utts, 2) if a.parts[:2] != b.parts[:2]]
    trials = root / "myvox" / "trials_kaldi.txt"
    trials.write_text("\n".join(lines) + "\n")
    meet = root / "meetings"
    shutil.copytree(synth / "diar/wav", meet / "audio")
    shutil.copytree(synth / "diar/rttm", meet / "rttm")
    uem = meet / "all.uem"
    uem.write_text("".join(f"{p.stem} 1 2.000 {sf.info(p).duration - 2:.3f}\n" for p in (meet / "audio").glob("*.wav")))
    shutil.rmtree(synth)
    return {"wav": wav_root, "trials": trials, "n_trials": len(lines), "audio": meet / "audio", "rttm": meet / "rttm",
            "uem": uem}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("local")
    local = make_local_corpus(workdir / "corpora")
    cfg = eval_config(tiny_config())
    cfg["corpora"]["myvox"] = {"format": "voxceleb", "path": str(local["wav"])}
    cfg["trial_sets"] = {"myvox_all": {"corpus": "myvox", "path": str(local["trials"]), "format": "kaldi"}}
    cfg["diarization_sets"] = {"meetings": {"audio_dir": str(local["audio"]), "rttm_dir": str(local["rttm"]),
                                            "uem_dir": str(local["uem"])}}
    write_config(workdir, cfg)
    snakemake(workdir)
    return workdir, local


def test_local_corpus_trials_and_diarization_set_in_summary(local_run):
    workdir, local = local_run
    summary = pd.read_csv(workdir / "results/summary.csv")
    ver = summary[summary.task == "verification"]
    assert list(ver.set) == ["myvox_all"] and ver["eer_%"].between(0, 100).all()
    dia = summary[summary.task == "diarization"]
    assert list(dia.set) == ["meetings"] and (dia["der_%"] >= 0).all()
    manifest = pd.read_parquet(workdir / "data/manifests/myvox.parquet")
    assert len(manifest) == 24 and manifest.spk_id.str.startswith("spk_").all()
    assert manifest.path.str.endswith(".flac").all()
    scores = pd.read_parquet(workdir / "exp/xvector_aam/scores/myvox_all/cosine.parquet")
    assert len(scores) == local["n_trials"]
    der = json.loads((workdir / "exp/xvector_aam/diarization/meetings/der.json").read_text())
    assert der["uem"] == str(local["uem"])
    spans = sum(float(e) - float(s) for _, _, s, e in (line.split() for line in local["uem"].read_text().splitlines()))
    assert 0 < der["scored_time_s"] <= spans + 1e-6  # scoring stayed inside the UEM regions
    assert nothing_to_do(workdir)


def test_recording_without_rttm_is_named(local_run, tmp_path):
    workdir, local = local_run
    audio = tmp_path / "audio"
    shutil.copytree(local["audio"], audio)
    shutil.copy(next(audio.glob("*.wav")), audio / "lonely_meeting.wav")
    hyp = workdir / "exp/xvector_aam/diarization/meetings/hyp.rttm"
    proc = subprocess.run([sys.executable, str(REPO / "scripts/der.py"), "--hyp", str(hyp), "--ref-dir",
                           str(local["rttm"]), "--audio-dir", str(audio), "--out", str(tmp_path / "der.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "lonely_meeting" in proc.stderr and "no RTTM" in proc.stderr
    assert not (tmp_path / "der.json").exists()


# ---------------------------------------------------------------- corpora fetched by the workflow


def tone_wav(seed: int, fmt: str = "WAV") -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(1.3 * 16000)) / 16000
    audio = 0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), 16000, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def voxceleb_members(prefix: str, suffix: str, make) -> dict[str, bytes]:
    return {f"{prefix}/id9{s}/sess{k}/0000{u}{suffix}": make(10 * s + 3 * k + u)
            for s in range(2) for k in range(2) for u in range(1, 3)}


def m4a(seed: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "a.m4a")
        proc = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "wav", "-i", "pipe:0", "-c:a", "aac",
                               str(out)], input=tone_wav(seed), capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode()
        return out.read_bytes()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def download_config(workdir: Path, corpora: dict) -> None:
    cfg = eval_config(tiny_config())
    cfg["corpora"].update(corpora)
    write_config(workdir, cfg)


def test_fetch_extract_manifest_and_reruns(server, tmp_path, monkeypatch):
    archive = tar_gz(voxceleb_members("webvox/wav", ".wav", tone_wav))
    server.files["/dl/webvox.tar.gz"] = server.files["/other/webvox.tar.gz"] = archive
    server.auth = ("reader", "s3cret-pw")
    monkeypatch.setenv("VOXFLOW_DOWNLOAD_USER", "reader")
    monkeypatch.setenv("VOXFLOW_DOWNLOAD_PASSWORD", "s3cret-pw")
    sha = hashlib.sha256(archive).hexdigest()
    block = {"files": [{"url": server.url("/dl/webvox.tar.gz"), "sha256": sha}], "subdir": "unpacked"}
    web = {"format": "voxceleb", "path": "data/corpora/web/unpacked/webvox/wav", "download": block}
    download_config(tmp_path, {"web": web})
    target = "data/manifests/web.parquet"
    out = snakemake(tmp_path, target).stdout + (tmp_path / "logs/fetch_corpus/web.log").read_text()
    assert "s3cret-pw" not in out
    manifest = pd.read_parquet(tmp_path / target)
    assert len(manifest) == 8 and set(manifest.spk_id) == {"id90", "id91"}
    fetched = json.loads((tmp_path / "data/corpora/web/.fetched").read_text())
    assert fetched["files"]["webvox.tar.gz"] == {"checksum": f"sha256:{sha}", "verified": "published"}
    assert fetched["extracted"]["unpacked"]["files"] == 8
    assert server.count("/dl/webvox.tar.gz") >= 1

    requests = len(server.requests)
    assert nothing_to_do(tmp_path, target)
    # Another mirror of the same (checksummed) file is no reason to fetch, import and retrain again.
    block["files"][0]["url"] = server.url("/other/webvox.tar.gz")
    download_config(tmp_path, {"web": web})
    assert nothing_to_do(tmp_path, target)
    assert len(server.requests) == requests

    # A wrong checksum fails the fetch, naming the file; nothing downstream runs.
    bad = {"files": [{"url": server.url("/dl/webvox.tar.gz"), "filename": "bad.tar.gz", "sha256": "0" * 64}]}
    download_config(tmp_path, {"web": web, "broken": {"format": "voxceleb", "path": "data/corpora/broken/bad",
                                                      "download": bad}})
    proc = snakemake(tmp_path, "data/manifests/broken.parquet", check=False)
    log = (tmp_path / "logs/fetch_corpus/broken.log").read_text()
    assert proc.returncode != 0 and "data/corpora/broken/bad.tar.gz: checksum mismatch" in proc.stdout + proc.stderr
    assert "data/corpora/broken/bad.tar.gz: checksum mismatch" in log and sha in log
    assert not (tmp_path / "data/corpora/broken/.fetched").exists()
    assert (tmp_path / "data/corpora/broken/bad.tar.gz.bad").exists()
    assert not (tmp_path / "data/manifests/broken.parquet").exists()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_fetch_and_convert_m4a(server, tmp_path, monkeypatch):
    archive = tar_gz(voxceleb_members("aac", ".m4a", m4a))
    server.files["/vox2/vox2_aac.tar.gz"] = archive
    monkeypatch.setenv("VOXFLOW_MIRROR_TEST", server.url("/vox2/"))  # the host stays out of the config
    block = {"files": [{"url": "${VOXFLOW_MIRROR_TEST}/vox2_aac.tar.gz", "md5": hashlib.md5(archive).hexdigest()}],
             "convert": {"src": "vox2_aac/aac", "dst": "wav", "format": "flac"}}
    download_config(tmp_path, {"vox2": {"format": "voxceleb", "path": "data/corpora/vox2/wav", "download": block}})
    target = "data/manifests/vox2.parquet"
    monkeypatch.setenv("VOXFLOW_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    proc = snakemake(tmp_path, target, check=False)
    log = (tmp_path / "logs/convert_corpus/vox2.log").read_text()
    assert proc.returncode != 0 and "needs FFmpeg" in log and "--use-conda" in log
    assert (tmp_path / "data/corpora/vox2/.fetched").exists()

    monkeypatch.delenv("VOXFLOW_FFMPEG")
    snakemake(tmp_path, target)
    assert server.count("/vox2/vox2_aac.tar.gz") == 1  # the fetch was not repeated
    manifest = pd.read_parquet(tmp_path / target)
    assert len(manifest) == 8 and manifest.path.str.endswith(".flac").all()
    assert (manifest.sample_rate == 16000).all() and manifest.duration_s.between(1.2, 1.45).all()
    assert nothing_to_do(tmp_path, target)


# ---------------------------------------------------------------- download blocks (library)


def test_plan_download_catalog_mirrors_and_errors(tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({
        "sources": {"vox": {"base_url": "https://official.example/vox"}},
        "corpora": {"set_a": {"source": "vox", "files": [{"path": "a.zip", "md5": "1" * 32}],
                              "extract": {"a.zip": "set_a"}},
                    "lists": {"source": "vox", "files": [{"path": "trials.txt", "no_checksum": "none published"}]}}}))
    both = plan_download("v", {"catalog": ["set_a", "lists"]}, catalog, env={"VOXFLOW_MIRROR_VOX": "https://env.example"})
    assert [f.url for c in both for f in c.files] == ["https://env.example/a.zip", "https://env.example/trials.txt"]
    assert both[0].files[0].mirrors == ("https://official.example/vox/a.zip",) and both[0].extract == {"a.zip": "set_a"}
    cfg = plan_download("v", {"catalog": "set_a", "mirrors": {"vox": "https://cfg.example"}, "extract": False},
                        catalog, env={"VOXFLOW_MIRROR_VOX": "https://env.example"})
    assert cfg[0].files[0].url == "https://cfg.example/a.zip" and cfg[0].extract == {}
    files = plan_download("v", {"files": [{"url": "$HOST/x/y.tar.gz?token=1", "md5": "2" * 32},
                                          {"url": "https://h/t.txt", "no_checksum": "lab list, no digest kept"}]},
                          None, env={"HOST": "https://h"})
    assert files[0].files[0].filename == "y.tar.gz" and files[0].extract == {"y.tar.gz": "y"}
    assert files[0].files[1].no_checksum == "lab list, no digest kept" and files[0].files[1].checksum is None
    for block, message in [
        ({"files": [{"url": "https://h/a.zip"}]}, "needs sha256 or md5, or no_checksum"),
        ({"files": [{"url": "https://h/a.zip", "md5": "1" * 32, "no_checksum": "x"}]}, "both a checksum and"),
        ({"files": [{"url": "https://h/a.zip", "no_checksum": " "}]}, "files[0].no_checksum: must say why"),
        ({"files": [{"url": "https://h/a.zip"}], "catalog": "set_a"}, "exactly one of"),
        ({"files": [{"url": "$UNSET_VAR/a.zip", "no_checksum": "r"}]}, "$UNSET_VAR"),
        ({"files": [{"url": "ftp://h/a.zip", "no_checksum": "r"}]}, "http(s)"),
        ({"files": [{"url": "https://h/a.zip", "sha256": "xyz"}]}, "files[0]"),
        ({"files": [{"url": "https://h/a.zip", "no_checksum": "r"}, {"url": "https://h/b.zip", "no_checksum": "r"}],
          "subdir": "d"}, "exactly one archive"),
        ({"files": [{"url": "https://h/a.zip", "no_checksum": "r"}], "subdir": "../out"},
         "inside the download directory"),
        ({"catalog": "nope"}, "unknown corpus 'nope'"),
        ({"files": [{"url": "https://h/a.zip"}], "extrakt": True}, "extrakt"),
    ]:
        with pytest.raises(VoxflowError) as err:
            plan_download("v", block, catalog, env={})
        assert message in str(err.value)
        assert "nope" in str(err.value) or "corpora.v.download" in str(err.value)  # names the config key


def test_fetch_download_trusts_a_file_without_checksum_on_first_use(server, tmp_path):
    from voxflow.corpora.fetch import fetch_download

    server.files["/lab/list.txt"] = b"1 a.wav b.wav\n"
    block = {"files": [{"url": server.url("/lab/list.txt"), "no_checksum": "the lab keeps no digests"}]}
    record = fetch_download("lab", block, tmp_path / "lab", progress=False)
    sha = hashlib.sha256(b"1 a.wav b.wav\n").hexdigest()
    assert record["files"]["list.txt"] == {"checksum": f"sha256:{sha}", "verified": "first-use",
                                           "no_checksum": "the lab keeps no digests"}
    assert (tmp_path / "lab/list.txt.sha256").read_text() == f"{sha}  list.txt\n"
    (tmp_path / "lab/list.txt").unlink()
    server.files["/lab/list.txt"] = b"0 a.wav b.wav\n"
    with pytest.raises(VoxflowError, match="list.txt: checksum mismatch"):
        fetch_download("lab", block, tmp_path / "lab", progress=False, retries=0)


# ---------------------------------------------------------------- the example config


def test_example_config_plans_local_sets_and_downloads(tmp_path):
    text = (REPO / "config/local_corpus.yaml").read_text()
    cfg = yaml.safe_load(text)
    commented = text.split("# corpora:\n", 1)[1]
    commented = commented.replace("<64 hex digits>", "a" * 64)
    extra = yaml.safe_load("corpora:\n" + "\n".join(line[2:] for line in commented.splitlines()))
    cfg["corpora"].update(extra["corpora"])
    cfg["trial_sets"].update(extra["trial_sets"])
    cfg["train_corpora"] = ["demo_dev", "vox2_dev"]
    write_config(tmp_path, cfg)
    out = snakemake(tmp_path, "-n", "-p").stdout
    for expected in ("--corpus my_corpus", "/data/my_corpus/trials.txt", "--uem=/data/my_meetings/all.uem",
                     "fetch_corpus.py download --corpus vox1_test", "fetch_corpus.py download --corpus vox2_dev",
                     "fetch_corpus.py convert --corpus vox2_dev", "fetch_corpus.py download --corpus vox1_all",
                     "fetch_corpus.py download --corpus cn1_eval", "--format cnceleb"):
        assert expected in out, expected
    assert "fetch_corpus.py download --corpus lab_corpus" not in out  # declared, but nothing uses it


# ---------------------------------------------------------------- CN-Celeb through the rules


def test_cnceleb_training_and_evaluation_sets_through_the_rules(tmp_path):
    from test_cnceleb import make_cnceleb

    root = make_cnceleb(tmp_path / "corpora")
    cfg = eval_config(tiny_config())
    cfg["audio"]["min_duration_s"] = 0.2  # the miniature's files are short
    cfg["corpora"]["cn_train"] = {"format": "cnceleb", "path": str(root / "data"),
                                  "speaker_list": str(root / "dev/dev.lst")}
    cfg["corpora"]["cn_eval"] = {"format": "cnceleb", "path": str(root / "eval")}
    cfg["corpora"]["cn_all"] = {"format": "cnceleb", "path": str(root / "data"), "extra_paths": [str(root / "eval")]}
    shutil.copytree(root / "eval", tmp_path / "eval_copy")
    cfg["corpora"]["cn_twice"] = {"format": "cnceleb", "path": str(root / "eval"),
                                  "extra_paths": [str(tmp_path / "eval_copy")]}
    cfg["trial_sets"] = {"cn": {"corpus": "cn_eval", "path": str(root / "eval/lists/trials.lst"), "format": "cnceleb"}}
    write_config(tmp_path, cfg)
    snakemake(tmp_path, "data/manifests/cn_train.parquet", "data/trials/cn.parquet", "data/manifests/cn_all.parquet")
    both = pd.read_parquet(tmp_path / "data/manifests/cn_all.parquet")
    assert len(both) == 6 + 5 and (both.corpus == "cn_all").all() and both.utt_id.is_unique
    train = pd.read_parquet(tmp_path / "data/manifests/cn_train.parquet")
    assert sorted(train.spk_id.unique()) == ["id00000", "id00001"] and train.session_id.nunique() == 4
    trials = pd.read_parquet(tmp_path / "data/trials/cn.parquet")
    assert len(trials) == 6 and trials.enroll_id.str.startswith("enroll/").all()
    # A trial naming an utterance the evaluation set lacks stops the rule, naming the list's line; an id found
    # in both directories of one corpus stops its manifest.
    lst = root / "eval/lists/trials.lst"
    lst.write_text(lst.read_text() + "id00801-enroll test/id00801-movie-01-001.wav 0\n")
    proc = snakemake(tmp_path, "data/trials/cn.parquet", "data/manifests/cn_twice.parquet", "--forcerun", "trials",
                     "--keep-going", check=False)
    log = (tmp_path / "logs/trials/cn.log").read_text()
    assert proc.returncode != 0 and f"{lst}:7:" in log and "test/id00801-movie-01-001" in log
    log = (tmp_path / "logs/manifest/cn_twice.log").read_text()
    assert "duplicate utterance id 'enroll/id00800-enroll'" in log


def test_documented_voxceleb_recipe_plans_fetches_conversion_and_all_three_lists(tmp_path):
    page = (REPO / "docs/corpora.md").read_text()  # the block the README's SLURM recipe links to
    block = page.split("## VoxCeleb, start to finish", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = eval_config(tiny_config())
    recipe = yaml.safe_load(block)
    cfg["corpora"].update(recipe["corpora"])
    cfg["train_corpora"], cfg["augmentation"], cfg["trial_sets"] = (recipe["train_corpora"], recipe["augmentation"],
                                                                    recipe["trial_sets"])
    cfg["diarization_sets"] = {}
    write_config(tmp_path, cfg)
    out = snakemake(tmp_path, "-n", "-p").stdout
    for expected in ("fetch_corpus.py download --corpus vox2_dev", "fetch_corpus.py convert --corpus vox2_dev",
                     "fetch_corpus.py download --corpus vox1", "fetch_corpus.py download --corpus musan",
                     "list_test_all2.txt", "list_test_hard2.txt", "veri_test2.txt",
                     "voxceleb1/test/wav",
                     "augmentation_manifest.py --kind noise --dir data/corpora/musan/musan/musan"):
        assert expected in out, expected
    plan = plan_download("musan", recipe["corpora"]["musan"]["download"], env={})
    assert [c.name for c in plan] == ["musan", "rirs_noises"] and plan[1].extract == {"rirs_noises.zip": "rirs_noises"}
