"""Bad input through the stage scripts, as the rules run them: one clear error line, no partial output."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from voxflow.data.manifests import write_table

REPO = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def voxceleb_dir(root: Path, rate: int = 16000, seconds: float = 1.5) -> Path:
    rng = np.random.default_rng(0)
    for spk in ("id1", "id2"):
        for utt in ("00001", "00002"):
            path = root / spk / "sessA" / f"{utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * rng.standard_normal(int(seconds * rate)).astype(np.float32), rate)
    return root


def test_corrupt_audio_names_the_file(tmp_path):
    root = voxceleb_dir(tmp_path / "corpus")
    bad = root / "id2" / "sessA" / "00002.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage" * 10)
    out = tmp_path / "m.parquet"
    proc = run_script("manifest.py", "--corpus", "c", "--source", '{"format": "voxceleb", "path": "%s"}' % root,
                      "--out", out)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_wrong_rate_is_resampled_or_refused_as_configured(tmp_path):
    root = voxceleb_dir(tmp_path / "corpus", rate=8000)
    out = tmp_path / "m.parquet"
    src = '{"format": "voxceleb", "path": "%s"}' % root
    proc = run_script("manifest.py", "--corpus", "c", "--source", src, "--audio", '{"on_other_rate": "error"}',
                      "--out", out)
    assert proc.returncode == 1 and "8000 Hz, expected 16000 Hz" in proc.stderr and not out.exists()
    proc = run_script("manifest.py", "--corpus", "c", "--source", src, "--audio", '{"on_other_rate": "resample"}',
                      "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (pd.read_parquet(out).sample_rate == 8000).all()  # resampled when read, at training/extraction


def test_too_short_and_empty_audio(tmp_path):
    root = voxceleb_dir(tmp_path / "corpus", seconds=0.4)
    proc = run_script("manifest.py", "--corpus", "c", "--source", '{"format": "voxceleb", "path": "%s"}' % root,
                      "--audio", '{"min_duration_s": 1.0}', "--out", tmp_path / "m.parquet")
    assert proc.returncode == 1 and "shorter than audio.min_duration_s" in proc.stderr
    root = voxceleb_dir(tmp_path / "corpus2")
    (root / "id1" / "sessA" / "00001.wav").write_bytes(b"")
    proc = run_script("manifest.py", "--corpus", "c", "--source", '{"format": "voxceleb", "path": "%s"}' % root,
                      "--out", tmp_path / "m2.parquet")
    assert proc.returncode == 1 and "00001.wav" in proc.stderr and not (tmp_path / "m2.parquet").exists()


def test_duplicate_utterance_ids_across_corpora(tmp_path):
    table = pd.DataFrame({"utt_id": ["a/s/1"], "spk_id": ["a"], "session_id": ["a/s"], "path": ["/x.wav"],
                          "sample_rate": [16000], "num_samples": [16000], "duration_s": [1.0]})
    write_table(table, tmp_path / "one.parquet", "utterances")
    write_table(table, tmp_path / "two.parquet", "utterances")
    out = tmp_path / "train.parquet"
    proc = run_script("merge_manifests.py", "--out", out, tmp_path / "one.parquet", tmp_path / "two.parquet")
    assert proc.returncode == 1 and "duplicate utterance id 'a/s/1'" in proc.stderr and not out.exists()


def test_trial_naming_an_unknown_utterance_names_the_line(tmp_path):
    root = voxceleb_dir(tmp_path / "corpus")
    manifest = tmp_path / "m.parquet"
    assert run_script("manifest.py", "--corpus", "c", "--source",
                      '{"format": "voxceleb", "path": "%s"}' % root, "--out", manifest).returncode == 0
    trials = tmp_path / "trials.txt"
    trials.write_text("1 id1/sessA/00001.wav id1/sessA/00002.wav\n0 id1/sessA/00001.wav id9/sessA/00001.wav\n")
    out = tmp_path / "t.parquet"
    proc = run_script("import_trials.py", "--trials", trials, "--utterances", manifest, "--out", out)
    assert proc.returncode == 1 and f"{trials}:2" in proc.stderr and "id9/sessA/00001" in proc.stderr
    assert not out.exists()
