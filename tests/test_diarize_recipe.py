"""config/voxconverse.yaml plans VoxConverse dev and test with Silero VAD and with oracle VAD (a real
``snakemake -n``, the model path pointed at a stand-in directory)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_voxconverse_recipe_plans_system_and_oracle_vad(tmp_path):
    cfg = yaml.safe_load((REPO / "config/voxconverse.yaml").read_text())
    model = tmp_path / "voxceleb_resnet34_LM"
    model.mkdir()
    cfg["experiments"]["resnet34_wespeaker"]["init"]["path"] = str(model)
    (tmp_path / "vc.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(tmp_path / "vc.yaml"), "--cores", "2", "-n", "-p"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("Job stats:")[1]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    assert jobs["diarize"] == 4 and jobs["der"] == 4 and jobs["import_model"] == 1 and "train_stage" not in jobs
    vads = {}
    for m in re.finditer(r"scripts/diarize\.py .*?--config '(\{.*?\})' .*?--set-name (\S+)", proc.stdout):
        vads[m.group(2)] = json.loads(m.group(1))["vad"]["name"]
    assert vads == {"voxconverse_dev": "silero", "voxconverse_dev_oracle_vad": "oracle",
                    "voxconverse_test": "silero", "voxconverse_test_oracle_vad": "oracle"}
    assert "summary.py" in proc.stdout and proc.stdout.count("diarization/voxconverse_") >= 8
