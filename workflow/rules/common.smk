# Config lookups and input functions shared by the rules; nothing else.
import json
import os

DATA = config["data_dir"]
EXP = config["exp_dir"]
RESULTS = config["results_dir"]
DEMO_DIR = f"{DATA}/demo"
EXPERIMENTS = list(config["experiments"])
STAGES = ["warmup", "margin", "finetune"]
SCRIPTS = os.path.join(workflow.basedir, "scripts")


def _known(kind, name, names):
    if name not in names:
        raise ValueError(f"config: {kind} {name!r} is not defined; defined: {sorted(names)}")
    return name


for _c in config["train_corpora"]:
    _known("train_corpora entry", _c, config["corpora"])
for _t, _spec in config["trial_sets"].items():
    _known(f"trial_sets.{_t}.corpus", _spec["corpus"], config["corpora"])


def systems():
    """Experiments, plus their untrained baselines where asked for."""
    out = list(EXPERIMENTS)
    out += [f"{e}_untrained" for e in EXPERIMENTS if config["experiments"][e]["untrained_baseline"]]
    return out


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def _under(path, root):
    path, root = os.path.abspath(path), os.path.abspath(root)
    return path == root or path.startswith(root + os.sep)


def source_input(path, corpus=None):
    """What makes a config path: the demo corpus rule, or the fetch of each downloaded corpus whose directory
    ({data_dir}/corpora/<name>) holds it; ``corpus``'s own fetch when it has a download block."""
    out = [DEMO_DIR] if config["demo"]["enabled"] and path and _under(path, DEMO_DIR) else []
    for name, spec in config["corpora"].items():
        if spec.get("download") and (name == corpus or (path and _under(path, f"{DATA}/corpora/{name}"))):
            out.append(f"{DATA}/corpora/{name}/" + (".converted" if spec["download"].get("convert") else ".fetched"))
    return out


SHARED_TRAINING_KEYS = ["device", "seed", "model", "data", "optimizer", "scheduler", "clip_grad_norm", "amp"]


def stage_config(exp, stage):
    """The part of an experiment's config a training stage depends on (so other edits do not retrain it)."""
    cfg = config["experiments"][exp]
    return {k: v for k, v in cfg.items() if k in SHARED_TRAINING_KEYS or k == stage}


def network_config(exp):
    """The part of an experiment's config that defines its (untrained) network."""
    cfg = config["experiments"][exp]
    return {k: cfg[k] for k in ("seed", "model", "data") if k in cfg}


def exp_stages(exp):
    """The training stages an experiment runs, in order (a stage with 0 epochs or absent is skipped)."""
    cfg = config["experiments"][exp]
    return [s for s in STAGES if s in cfg and cfg[s]["epochs"] > 0]


def previous_stage_checkpoint(wildcards):
    stages = exp_stages(wildcards.exp)
    i = stages.index(wildcards.stage)
    return [f"{EXP}/{wildcards.exp}/{stages[i - 1]}/final.pt"] if i > 0 else []


def final_stage_checkpoint(wildcards):
    return f"{EXP}/{wildcards.exp}/{exp_stages(wildcards.exp)[-1]}/final.pt"


def training_inputs():
    inputs = {
        "utts": f"{DATA}/train/utterances.parquet",
        "shards": f"{DATA}/shards/train",
        "noise": f"{DATA}/augment/noise.parquet",
        "rirs": f"{DATA}/augment/rir.parquet",
    }
    return inputs


def backend_corpus():
    return config["backend_training"]["corpus"] or config["train_corpora"][0]


def final_outputs():
    out = [f"{RESULTS}/summary.csv", f"{RESULTS}/summary.md", f"{RESULTS}/training_curves.png"]
    out += [f"{RESULTS}/det_{t}.png" for t in config["trial_sets"]]
    out += [f"{RESULTS}/diarization_{d}.png" for d, spec in config["diarization_sets"].items() if spec["rttm_dir"]]
    out += [f"{EXP}/{e}/diarization/{d}/hyp.rttm" for e in EXPERIMENTS for d in config["diarization_sets"]]
    out += [f"{EXP}/{e}/model.onnx" for e in EXPERIMENTS]
    if config["cleaning"]["enabled"]:
        out.append(f"{RESULTS}/cleaning.md")
    return out
