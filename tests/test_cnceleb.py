"""CN-Celeb layout (two levels, session in the file name), its trial lists, and both wired through CLI and DAG."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voxflow.corpus_cli import main as corpus_main
from voxflow.corpora.catalog import load_catalog, resolve
from voxflow.corpora.importers import import_cnceleb_dir, import_corpus
from voxflow.data.manifests import read_table
from voxflow.corpora.trials import read_trial_list, write_trial_list
from voxflow.errors import VoxflowError

SR = 16000
REPO_SCRIPTS = __import__("pathlib").Path(__file__).resolve().parents[1] / "scripts"


def _flac(path, seconds, freq):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, format="FLAC")


DATA_FILES = {  # speaker -> utterance names <genre>-<session>-<utt>
    "id00000": ["singing-01-001", "singing-01-002", "interview-02-001"],
    "id00001": ["vlog-01-001", "live_broadcast-03-001"],
    "id00800": ["drama-01-001"],
}
TEST_FILES = ["id00800-singing-01-001", "id00800-drama-02-003", "id00801-vlog-01-001"]


@pytest.fixture
def cnceleb(tmp_path):
    return make_cnceleb(tmp_path)


def make_cnceleb(parent):
    """A miniature CN-Celeb_flac: data/, dev/dev.lst, eval/{enroll,test}, eval/lists/{enroll,trials}.lst."""
    root = parent / "CN-Celeb_flac"
    k = 0
    for spk, names in DATA_FILES.items():
        for name in names:
            _flac(root / "data" / spk / f"{name}.flac", 0.3 + 0.05 * k, 150 + 40 * k)
            k += 1
    (root / "dev").mkdir()
    (root / "dev" / "dev.lst").write_text("id00000\nid00001\n")
    for spk in ("id00800", "id00801"):
        _flac(root / "eval" / "enroll" / f"{spk}-enroll.flac", 0.6, 300 + k)
        k += 1
    for name in TEST_FILES:
        _flac(root / "eval" / "test" / f"{name}.flac", 0.4, 500 + 20 * k)
        k += 1
    lists = root / "eval" / "lists"
    lists.mkdir()
    # As in the real release, the lists name .wav files although the audio is FLAC.
    (lists / "enroll.lst").write_text("id00800-enroll enroll/id00800-enroll.wav\n"
                                      "id00801-enroll enroll/id00801-enroll.wav\n")
    trials = [f"{e}-enroll test/{t}.wav {int(t.startswith(e))}" for e in ("id00800", "id00801") for t in TEST_FILES]
    (lists / "trials.lst").write_text("\n".join(trials) + "\n")
    return root


def test_data_layout_speaker_from_directory_session_from_file_name(cnceleb):
    table = import_cnceleb_dir(cnceleb / "data", corpus="cn1")
    assert len(table) == 6 and sorted(table.spk_id.unique()) == ["id00000", "id00001", "id00800"]
    row = table.set_index("utt_id").loc["id00000/singing-01-002"]
    assert row.spk_id == "id00000" and row.session_id == "id00000/singing-01" and row.corpus == "cn1"
    assert row.num_samples == int((0.3 + 0.05) * SR) and row.sample_rate == SR
    sessions = table.groupby("spk_id").session_id.nunique().to_dict()
    assert sessions == {"id00000": 2, "id00001": 2, "id00800": 1}
    assert "id00001/live_broadcast-03" in set(table.session_id)


def test_speaker_list_keeps_the_training_speakers(cnceleb):
    table = import_corpus(cnceleb / "data", "cnceleb", speaker_list=cnceleb / "dev" / "dev.lst")
    assert sorted(table.spk_id.unique()) == ["id00000", "id00001"] and len(table) == 5
    bad = cnceleb / "dev" / "bad.lst"
    bad.write_text("id00000\n\nid00999\n")
    with pytest.raises(VoxflowError, match=r"bad\.lst:3: speaker 'id00999' has no audio"):
        import_cnceleb_dir(cnceleb / "data", speaker_list=bad)
    with pytest.raises(VoxflowError, match="cnceleb format only"):
        import_corpus(cnceleb / "data", "voxceleb", speaker_list=bad)


def test_eval_layout_and_trials_map_enrolment_ids(cnceleb):
    table = import_cnceleb_dir(cnceleb / "eval")
    assert sorted(table.utt_id) == sorted(["enroll/id00800-enroll", "enroll/id00801-enroll"]
                                          + [f"test/{t}" for t in TEST_FILES])
    by_id = table.set_index("utt_id")
    assert by_id.loc["enroll/id00801-enroll"].spk_id == "id00801"
    assert by_id.loc["test/id00800-drama-02-003"].session_id == "id00800/drama-02"
    trials = read_trial_list(cnceleb / "eval/lists/trials.lst", "cnceleb", known_ids=set(table.utt_id))
    assert len(trials) == 6 and int(trials.label.sum()) == 3
    assert trials.iloc[0].to_dict() == {"enroll_id": "enroll/id00800-enroll",
                                        "test_id": "test/id00800-singing-01-001", "label": 1}
    # every target trial pairs an enrolment and a test file of the same speaker
    spk = by_id.spk_id
    same = (spk.loc[trials.enroll_id].to_numpy() == spk.loc[trials.test_id].to_numpy()).astype(int)
    assert (same == trials.label.to_numpy()).all()


def test_trials_without_enroll_list_use_the_enroll_directory(tmp_path):
    lst = tmp_path / "trials.lst"
    lst.write_text("id00800-enroll test/id00800-vlog-01-001.flac 1\nid00801-enroll test/id00800-vlog-01-001.flac 0\n")
    trials = read_trial_list(lst, "cnceleb")
    assert trials.enroll_id.tolist() == ["enroll/id00800-enroll", "enroll/id00801-enroll"]
    assert trials.test_id.tolist() == ["test/id00800-vlog-01-001"] * 2 and trials.label.tolist() == [1, 0]
    with pytest.raises(VoxflowError, match="voxceleb or kaldi"):
        write_trial_list(trials, tmp_path / "out.lst", "cnceleb")


def test_trial_naming_an_unknown_utterance_names_file_and_line(cnceleb):
    known = set(import_cnceleb_dir(cnceleb / "eval").utt_id)
    lst = cnceleb / "eval/lists/trials.lst"
    lines = lst.read_text().splitlines()
    lines.insert(2, "id00800-enroll test/id00800-singing-09-999.wav 0")
    lst.write_text("\n".join(lines) + "\n")
    with pytest.raises(VoxflowError) as err:
        read_trial_list(lst, "cnceleb", known_ids=known)
    assert f"{lst}:3:" in str(err.value) and "test/id00800-singing-09-999" in str(err.value)


@pytest.mark.parametrize("line, message", [
    ("id00802-enroll test/id00800-singing-01-001.wav 1", "enrolment id 'id00802-enroll' is not in"),
    ("id00800-enroll test/id00800-singing-01-001.wav yes", "label must be 0 or 1"),
    ("id00800-enroll test/id00800-singing-01-001.wav", "expected 3 fields"),
])
def test_bad_trial_lines_name_file_and_line(cnceleb, line, message):
    lst = cnceleb / "eval/lists/trials.lst"
    lst.write_text("id00800-enroll test/id00800-drama-02-003.wav 1\n" + line + "\n")
    with pytest.raises(VoxflowError) as err:
        read_trial_list(lst, "cnceleb")
    assert f"{lst}:2:" in str(err.value) and message in str(err.value)


def test_bad_enroll_list_and_bad_layouts_are_named(cnceleb):
    enroll = cnceleb / "eval/lists/enroll.lst"
    enroll.write_text("id00800-enroll enroll/id00800-enroll.wav extra\n")
    with pytest.raises(VoxflowError, match=r"enroll\.lst:1: expected 2 fields \('<enrolment id> <audio path>'\)"):
        read_trial_list(cnceleb / "eval/lists/trials.lst", "cnceleb")
    with pytest.raises(VoxflowError, match="looks like a CN-Celeb root"):
        import_cnceleb_dir(cnceleb)
    odd = cnceleb / "data" / "id00001" / "vlog_001.flac"
    _flac(odd, 0.2, 440)
    with pytest.raises(VoxflowError) as err:
        import_cnceleb_dir(cnceleb / "data")
    assert str(odd) in str(err.value) and "<genre>-<session>-<utt>" in str(err.value)
    odd.unlink()
    deep = cnceleb / "data" / "id00001" / "sub" / "vlog-01-009.flac"
    _flac(deep, 0.2, 440)
    with pytest.raises(VoxflowError, match="not in CN-Celeb layout"):
        import_cnceleb_dir(cnceleb / "data")


def test_cli_import_with_speaker_list(cnceleb, tmp_path, capsys):
    out = tmp_path / "cn.parquet"
    corpus_main(["import", str(cnceleb / "data"), "--format", "cnceleb", "--out", str(out),
                 "--speaker-list", str(cnceleb / "dev/dev.lst")])
    table = read_table(out, "utterances")
    assert len(table) == 5 and set(table.corpus) == {"data"}
    assert "5 utterances, 2 speakers" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        corpus_main(["import", str(cnceleb / "eval"), "--format", "voxceleb", "--out", str(out),
                     "--speaker-list", str(cnceleb / "dev/dev.lst")])
    assert "--speaker-list applies to --format cnceleb only" in capsys.readouterr().err


def test_rule_scripts_import_eval_set_and_its_trials(cnceleb, tmp_path):
    """scripts/manifest.py and scripts/import_trials.py exactly as the manifest and trials rules call them."""
    utts, trials = tmp_path / "cn_eval.parquet", tmp_path / "cn_trials.parquet"
    source = '{"format": "cnceleb", "path": "%s", "speaker_list": ""}' % (cnceleb / "eval")
    run = [sys.executable, str(REPO_SCRIPTS / "manifest.py"), "--corpus", "cn_eval", "--source", source,
           "--audio", '{"sample_rate": 16000, "on_other_rate": "error", "min_duration_s": 0.1}', "--out", str(utts)]
    subprocess.run(run, check=True, capture_output=True)
    run = [sys.executable, str(REPO_SCRIPTS / "import_trials.py"), "--trials", str(cnceleb / "eval/lists/trials.lst"),
           "--format", "cnceleb", "--enroll-list=", "--utterances", str(utts), "--out", str(trials)]
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "6 trials, 3 targets" in proc.stdout
    table = pd.read_parquet(trials)
    assert set(table.enroll_id) == {"enroll/id00800-enroll", "enroll/id00801-enroll"}
    lst = cnceleb / "eval/lists/trials.lst"
    lst.write_text(lst.read_text() + "id00801-enroll test/id00801-vlog-01-002.wav 1\n")
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode != 0 and "trials.lst:7:" in proc.stderr and "id00801-vlog-01-002" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_catalogue_imports_cnceleb_with_published_part_checksums():
    catalog = load_catalog()
    cn1, cn2 = resolve("cnceleb1", catalog, env={}), resolve("cnceleb2", catalog, env={})
    assert (cn1.import_format, cn1.import_path) == ("cnceleb", "cnceleb1/CN-Celeb_flac/data")
    assert (cn2.import_format, cn2.import_path) == ("cnceleb", "cnceleb2/CN-Celeb2_flac/data")
    assert [f.md5 for f in cn2.files] == ["4cdf738cff565ce35ad34274848659c3", "4ff59a7009b79ef7043498ad3882b81b",
                                          "3aa8e6e7f7ec4382f9926b1b31498228"]
    assert cn2.combine.md5 == "55c47cf0b6d0bf793e88bf79d5dfc660"
