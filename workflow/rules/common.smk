# Config lookups, config checks and input/param functions shared by the rules: every helper of the workflow is here
# (snakemake --lint: no functions in the rule files).
import json
import os
import re

from voxflow.embed.runtime import resolve_runtime
from voxflow.report import summary as summary_lib

DATA = config["data_dir"]
EXP = config["exp_dir"]
RESULTS = config["results_dir"]
DEMO_DIR = f"{DATA}/demo"
EXPERIMENTS = list(config["experiments"])
STAGES = ["warmup", "margin", "finetune"]
SCRIPTS = os.path.join(VOXFLOW_ROOT, "scripts")
# Where the conda envs' post-deploy scripts install voxflow from (envs/*.post-deploy.sh).
os.environ.setdefault("VOXFLOW_SOURCE", VOXFLOW_ROOT)


def _known(kind, name, names):
    if name not in names:
        raise ValueError(
            f"config: {kind} {name!r} is not defined; defined: {sorted(names)}"
        )
    return name


for _c in config["train_corpora"]:
    _known("train_corpora entry", _c, config["corpora"])
for _t, _spec in config["trial_sets"].items():
    _known(f"trial_sets.{_t}.corpus", _spec["corpus"], config["corpora"])


def systems():
    """Experiments, plus their untrained baselines where asked for."""
    return summary_lib.systems(config)


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def untracked(value):
    """A param the job gets but Snakemake does not record (a function of the input is a derived param, so a change
    of it does not rerun the job): the scripts/ directory's absolute path, download URLs and mirrors.
    """
    return lambda wildcards, input: value


def _under(path, root):
    path, root = os.path.abspath(path), os.path.abspath(root)
    return path == root or path.startswith(root + os.sep)


def source_input(path, corpus=None):
    """What makes a config path: the demo corpus rule, or the fetch of each downloaded corpus whose directory
    ({data_dir}/corpora/<name>) holds it; ``corpus``'s own fetch when it has a download block.
    """
    out = (
        [DEMO_DIR]
        if config["demo"]["enabled"] and path and _under(path, DEMO_DIR)
        else []
    )
    for name, spec in config["corpora"].items():
        if spec.get("download") and (
            name == corpus or (path and _under(path, f"{DATA}/corpora/{name}"))
        ):
            out.append(
                f"{DATA}/corpora/{name}/"
                + (".converted" if spec["download"].get("convert") else ".fetched")
            )
    return out


SHARED_TRAINING_KEYS = [
    "device",
    "seed",
    "model",
    "data",
    "optimizer",
    "scheduler",
    "clip_grad_norm",
    "amp",
    "init",
]


def stage_config(exp, stage):
    """The part of an experiment's config a training stage depends on (so other edits do not retrain it)."""
    cfg = config["experiments"][exp]
    return {k: v for k, v in cfg.items() if k in SHARED_TRAINING_KEYS or k == stage}


def network_config(exp):
    """The part of an experiment's config that defines its (untrained) network."""
    cfg = config["experiments"][exp]
    return {k: cfg[k] for k in ("seed", "model", "data") if k in cfg}


def model_stages(cfg):
    """The training stages of an experiment's (or the seed model's) config, in order; 0 epochs or absent: none."""
    return [s for s in STAGES if s in cfg and cfg[s]["epochs"] > 0]


def exp_stages(exp):
    return model_stages(config["experiments"][exp])


def exp_init(exp):
    """The pretrained model an experiment starts from (its `init:` section), or None."""
    return config["experiments"][exp].get("init")


def imported_model(exp):
    return f"{EXP}/{exp}/imported/model.pt"


def init_source(init):
    """The import rule's input: the init path (a file or directory), none for resemblyzer's packaged weights."""
    return [init["path"]] if init and init["path"] else []


def previous_stage_checkpoint(wildcards):
    """What a stage starts from: the previous stage's final.pt; for the first, the imported model (if any)."""
    stages = exp_stages(wildcards.exp)
    i = stages.index(wildcards.stage)
    if i > 0:
        return [f"{EXP}/{wildcards.exp}/{stages[i - 1]}/final.pt"]
    return [imported_model(wildcards.exp)] if exp_init(wildcards.exp) else []


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
    out = [
        f"{RESULTS}/summary.csv",
        f"{RESULTS}/summary.md",
        f"{RESULTS}/training_curves.png",
    ]
    out += [f"{RESULTS}/det_{t}.png" for t in config["trial_sets"]]
    out += [
        f"{RESULTS}/diarization_{d}.png"
        for d, spec in config["diarization_sets"].items()
        if spec["rttm_dir"]
    ]
    out += [
        f"{EXP}/{e}/diarization/{d}/hyp.rttm"
        for e in EXPERIMENTS
        for d in config["diarization_sets"]
    ]
    out += [f"{EXP}/{e}/model.onnx" for e in EXPERIMENTS]
    if config["cleaning"]["enabled"]:
        out.append(f"{RESULTS}/cleaning.md")
    return out


# ---------------------------------------------------------------- cluster resources (config `resources:`)
# A rule's request = base + per_unit x its data size, x retry_scale per retry (Snakemake's `attempt`), capped by
# max_mem_mb / max_runtime. The sizes are read from the rule's input when the job is about to be submitted.
import errno
import functools
import math
import shutil
import subprocess

import pyarrow.parquet as pq

RES = config["resources"]


def _present(path, input):
    """`path`, or FileNotFoundError naming an input: Snakemake then asks again once that input is made."""
    if not os.path.exists(path):
        files = [input] if isinstance(input, str) else list(input)
        missing = next((f for f in files if not os.path.exists(f)), path)
        raise FileNotFoundError(errno.ENOENT, "not made yet", str(missing))
    return path


@functools.lru_cache(maxsize=64)
def _parquet_stat(path, mtime_ns, what):
    if what == "rows":
        return pq.ParquetFile(path).metadata.num_rows
    return (
        float(pq.read_table(path, columns=["duration_s"]).column(0).to_numpy().sum())
        / 3600.0
    )


def manifest_hours(path, input=()):
    """Hours of audio in a manifest (the sum of its duration_s column)."""
    path = _present(str(path), input)
    return _parquet_stat(path, os.stat(path).st_mtime_ns, "hours")


def table_rows(path, input=()):
    """Rows of a Parquet table (from its footer)."""
    path = _present(str(path), input)
    return _parquet_stat(path, os.stat(path).st_mtime_ns, "rows")


def directory_gb(path, input=()):
    """GB (1e9 bytes) of the files under a directory; 0 when it does not exist and nothing will make it."""
    if not os.path.isdir(path):
        files = [input] if isinstance(input, str) else list(input)
        if any(not os.path.exists(f) for f in files):
            _present(path, files)
        return 0.0
    return (
        sum(
            os.path.getsize(os.path.join(d, f))
            for d, _, fs in os.walk(path)
            for f in fs
        )
        / 1e9
    )


def _stage_epochs(cfg, stages):
    return sum(cfg[s]["epochs"] for s in stages if s in cfg)


# Rule -> (what one unit is, its size from (wildcards, input)); rules with None have no size.
RESOURCE_UNITS = {
    "manifest": None,
    "shards": (
        "hour of training audio",
        lambda w, input: manifest_hours(input[0], input),
    ),
    "train_seed_model": (
        "hour of training audio x seed-model epoch",
        lambda w, input: manifest_hours(input.utts, input)
        * _stage_epochs(config["cleaning"]["seed_model"], STAGES),
    ),
    "embed_segments": (
        "hour of training audio",
        lambda w, input: manifest_hours(input.utts, input),
    ),
    "clean_speakers": (
        "1000 segment embeddings",
        lambda w, input: table_rows(input.segments, input) / 1000.0,
    ),
    "train_stage": (
        "hour of training audio x epoch of the stage / training process",
        lambda w, input: manifest_hours(input.utts, input)
        * _stage_epochs(config["experiments"][w.exp], [w.stage])
        / train_processes(w.exp)[0],
    ),
    "embed": (
        "hour of the corpus's audio",
        lambda w, input: manifest_hours(input.utts, input),
    ),
    "fit_backend": (
        "1000 embeddings fitted on",
        lambda w, input: min(
            table_rows(input[0], input), config["backend_training"]["max_utts"]
        )
        / 1000.0,
    ),
    "score": (
        "1000 embeddings of the trial corpus",
        lambda w, input: table_rows(input.embeddings, input) / 1000.0,
    ),
    "diarize": (
        "GB of recordings",
        lambda w, input: directory_gb(
            config["diarization_sets"][w.dset]["audio_dir"], input.audio
        ),
    ),
}

for _rule, _unit in RESOURCE_UNITS.items():
    for _key in ("mem_mb_per_unit", "runtime_per_unit"):
        if _unit is None and RES[_rule][_key]:
            raise ValueError(
                f"config: resources.{_rule}.{_key}: rule {_rule} has no data size to scale with; "
                "set it to 0 and raise the base figure instead"
            )


def resource_request(rule, key, wildcards, input, attempt):
    """`mem_mb` (MB) or `runtime` (minutes) of a job of `rule`, from the config's resources section."""
    spec = RES[rule]
    per_unit = spec[f"{key}_per_unit"]
    size = RESOURCE_UNITS[rule][1](wildcards, input) if per_unit else 0.0
    value = (spec[key] + per_unit * size) * RES["retry_scale"] ** (attempt - 1)
    cap = RES[f"max_{key}"]
    return int(math.ceil(min(value, cap) if cap else value))


def job_cpus(rule):
    """CPUs of a job of `rule` (its threads: --cpus-per-task on SLURM, OMP_NUM_THREADS in the job)."""
    return RES[rule]["cpus"]


def job_resources(rule):
    """A rule's `resources:` (use as `resources: **job_resources("rule")`): mem_mb and runtime from the
    config, and slurm_partition when the config names one for the rule."""

    def request(key):
        def evaluate(wildcards, input, attempt):
            return resource_request(rule, key, wildcards, input, attempt)

        return evaluate

    out = {"mem_mb": request("mem_mb"), "runtime": request("runtime")}
    if RES[rule]["partition"]:
        out["slurm_partition"] = RES[rule]["partition"]
    return out


def _check_partitions():
    """Partitions named in resources: must exist where sinfo can see them (checked before anything runs)."""
    named = {r: RES[r]["partition"] for r in RESOURCE_UNITS if RES[r]["partition"]}
    if not named or shutil.which("sinfo") is None:
        return
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True)
    if out.returncode != 0:
        return
    known = [p.rstrip("*") for p in out.stdout.split()]
    for rule, name in named.items():
        if name not in known:
            raise ValueError(
                f"config: resources.{rule}.partition: {name!r}: no such partition on this cluster "
                f"(partitions: {', '.join(known) or 'none'})"
            )


_check_partitions()


# ---------------------------------------------------------------- downloads (fetch.smk)
DOWNLOADS = {
    c: s["download"] for c, s in config["corpora"].items() if s.get("download")
}
# The blocks reach the script as an untracked param: URLs and mirrors are no rerun trigger (checksums pin the
# data), so moving to another mirror does not refetch, re-import and retrain.
DOWNLOADS_JSON = as_json(DOWNLOADS)


def fetch_identity(corpus):
    """What the fetched files depend on: the block without mirrors, and without URLs a checksum pins."""
    block = {
        k: v for k, v in DOWNLOADS[corpus].items() if k not in ("mirrors", "convert")
    }
    if "files" in block:
        block["files"] = [
            {
                k: v
                for k, v in f.items()
                if k != "url" or not (f.get("sha256") or f.get("md5"))
            }
            for f in block["files"]
        ]
    return as_json(block)


def one_of(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


# ---------------------------------------------------------------- corpora (corpus.smk)
def manifest_sources(w):
    """What makes a corpus's path and extra_paths (the input of rule manifest)."""
    spec = config["corpora"][w.corpus]
    paths = [spec["path"], *spec.get("extra_paths", [])]
    return list(dict.fromkeys(x for p in paths for x in source_input(p, w.corpus)))


# ---------------------------------------------------------------- validation pairs (validation.smk)
VALIDATION = config["validation"]
if VALIDATION["corpus"]:
    _known("validation.corpus", VALIDATION["corpus"], config["corpora"])
    if VALIDATION["corpus"] in config["train_corpora"]:
        raise ValueError(
            f"config: validation.corpus {VALIDATION['corpus']!r} is a training corpus; "
            "validate on held-out speakers"
        )


def validation_inputs():
    """The validation set of the training rules ({} without validation)."""
    if not VALIDATION["corpus"]:
        return {}
    return {
        "val_segments": f"{DATA}/validation/segments.parquet",
        "val_pairs": f"{DATA}/validation/pairs.parquet",
    }


# ---------------------------------------------------------------- training, import, export (train.smk)
# Experiment keys that say how the engine runs; every stage gets them.
ENGINE_KEYS = [
    "gpus",
    "nproc",
    "checkpoint_every_steps",
    "log_every_steps",
    "channels_last",
    "compile",
    "tensorboard",
]


def exclusions_input(wildcards):
    return (
        [f"{DATA}/cleaning/exclusions.parquet"] if config["cleaning"]["enabled"] else []
    )


def train_processes(exp):
    """(processes, GPUs) of an experiment: `gpus` GPUs (1 on cuda by default), else `nproc` CPU processes."""
    cfg = config["experiments"][exp]
    device, gpus = cfg["device"], cfg.get("gpus")
    if gpus is not None and gpus > 0:
        if device == "cpu":
            raise ValueError(
                f"config: experiments.{exp}.gpus: {gpus} with device: cpu; set device: cuda "
                "(or use nproc for several CPU processes)"
            )
        return gpus, gpus
    if device.startswith("cuda"):
        if gpus == 0:
            raise ValueError(
                f"config: experiments.{exp}.gpus: must be at least 1 with device: {device}"
            )
        return 1, 1
    return cfg["nproc"], 0


def train_launcher(exp):
    n = train_processes(exp)[0]
    return "python" if n == 1 else f"torchrun --standalone --nproc_per_node={n}"


def train_stage_config(exp, stage):
    cfg = config["experiments"][exp]
    return {**stage_config(exp, stage), **{k: cfg[k] for k in ENGINE_KEYS if k in cfg}}


def average_count(exp):
    cfg = config["experiments"][exp]
    return cfg.get("average", cfg["average_last"])


def _check_init(where, cfg):
    """A model's init section against the rest of its config (docs/pretrained.md);
    ``where`` names the config section (experiments.<exp> or cleaning.seed_model) in the errors.
    """
    where = f"config: {where}"
    init = cfg.get("init")
    if init is None:
        if not model_stages(cfg):
            raise ValueError(
                f"{where}: no training stage with epochs > 0 and no init: nothing makes its model"
            )
        return
    if "model" in cfg:
        raise ValueError(
            f"{where}.model: with init the network is the imported model's; remove model"
        )
    if cfg.get("untrained_baseline"):
        raise ValueError(
            f"{where}.untrained_baseline: a model with init starts from pretrained weights and "
            "has no untrained baseline; set it false"
        )
    path = init["path"]
    if not path and init["from"] != "resemblyzer":
        raise ValueError(
            f"{where}.init.path: init from {init['from']} needs the model's path"
        )
    # a path the workflow may make (under data_dir or exp_dir) is left to the DAG
    if (
        path
        and not os.path.exists(path)
        and not (_under(path, DATA) or _under(path, EXP))
    ):
        raise ValueError(f"{where}.init.path: {path} does not exist")


SEED_DIR = f"{DATA}/cleaning/seed_model"
SEED_CFG = config["cleaning"].get("seed_model", {})


def seed_model_checkpoint():
    """The seed model the cleaning embeds 2 s segments with: trained (stages), or the import used as is."""
    return (
        f"{SEED_DIR}/final.pt"
        if model_stages(SEED_CFG)
        else f"{SEED_DIR}/imported/model.pt"
    )


def seed_model_inputs():
    """train_seed_model's starting point: the imported seed model with init, else none (random weights)."""
    return {"previous": f"{SEED_DIR}/imported/model.pt"} if SEED_CFG.get("init") else {}


if config["cleaning"]["enabled"]:
    _check_init("cleaning.seed_model", SEED_CFG)
for _e, _cfg in config["experiments"].items():
    _check_init(f"experiments.{_e}", _cfg)
    train_processes(_e)
    _best = [f"experiments.{_e}.select"] if _cfg["select"] == "best" else []
    _best += [
        f"experiments.{_e}.{s}.select"
        for s in STAGES
        if _cfg.get(s, {}).get("select") == "best"
    ]
    if _best and not config["validation"]["corpus"]:
        raise ValueError(
            f"config: {_best[0]}: best picks the epoch of lowest validation EER; set validation.corpus"
        )


def export_inputs(wildcards):
    """The checkpoint to export (averaged training, or the import itself with no stages) and the import's meta."""
    exp = wildcards.exp
    out = {
        "checkpoint": (
            f"{EXP}/{exp}/avg_model.pt" if exp_stages(exp) else imported_model(exp)
        )
    }
    if exp_init(exp):
        out["meta"] = f"{EXP}/{exp}/imported/meta.json"
    return out


# ---------------------------------------------------------------- back-ends and calibration (score.smk)
CAL = config["calibration"]
CAL_SET = "calibration"  # the calibration trial list's name under scores/


EMBED_ENGINE = resolve_runtime(
    config["embedding"]["runtime"], config["embedding"]["device"]
)


# embedding.parts > 1: the manifest cut into N parts (rule split_manifest), one embed job per part, the parts'
# tables joined (rule merge_embeddings) into the embeddings file one embed job writes with parts 1.
EMBED_PARTS = config["embedding"]["parts"]
EMBEDDINGS = f"{EXP}/{{system}}/embeddings/{{corpus}}.parquet"
SPLIT_MANIFEST = f"{DATA}/split{EMBED_PARTS}/{{corpus}}/{{part}}.parquet"
EMBEDDING_PART = (
    f"{EXP}/{{system}}/embeddings/split{EMBED_PARTS}/{{corpus}}/{{part}}.parquet"
)


def embed_output():
    """Rule embed's output, log and benchmark: the corpus's embeddings, or one part's (parts > 1)."""
    if EMBED_PARTS == 1:
        return EMBEDDINGS, "{system}_{corpus}"
    return EMBEDDING_PART.replace("{part}", "{part,[0-9]+}"), "{system}_{corpus}.{part}"


def part_files(pattern, **wildcards):
    """``pattern`` for parts 1..embedding.parts (Kaldi's split<N>/<k> numbering)."""
    return [pattern.format(part=k, **wildcards) for k in range(1, EMBED_PARTS + 1)]


def embedding_parts(wildcards):
    """Rule merge_embeddings: the parts of a system's embeddings of a corpus, in order."""
    return part_files(EMBEDDING_PART, system=wildcards.system, corpus=wildcards.corpus)


PART_DEVICES = config["embedding"]["part_devices"]
if PART_DEVICES and (
    EMBED_PARTS == 1 or not config["embedding"]["device"].startswith("cuda")
):
    raise ValueError(
        f"config: embedding.part_devices: {PART_DEVICES} spreads the parts of a corpus over GPUs; it needs "
        f"embedding.parts > 1 (is {EMBED_PARTS}) and embedding.device cuda (is {config['embedding']['device']!r})"
    )


def embedding_job_config(wildcards):
    """The embedding section as an embed job gets it: without `parts` and `part_devices` (so the params of the
    one-job embed rule are what they were before the keys existed); a part's device from part_devices.
    """
    cfg = {
        k: v
        for k, v in config["embedding"].items()
        if k not in ("parts", "part_devices")
    }
    if PART_DEVICES:
        cfg["device"] = PART_DEVICES[(int(wildcards.part) - 1) % len(PART_DEVICES)]
    return cfg


def embed_inputs(wildcards):
    """Rule embed: the exported model (its feature config inside), the utterances (the corpus's manifest, or
    its part), and model.onnx when embedding.runtime resolves to onnx (auto: on the CPU).
    """
    utts = f"{DATA}/manifests/{wildcards.corpus}.parquet"
    if EMBED_PARTS > 1:
        utts = SPLIT_MANIFEST.format(corpus=wildcards.corpus, part=wildcards.part)
    out = {"model": f"{EXP}/{wildcards.system}/model.ts", "utts": utts}
    if EMBED_ENGINE == "onnx":
        out["onnx"] = f"{EXP}/{wildcards.system}/model.onnx"
    return out


def calibration_corpus():
    return CAL["corpus"] or backend_corpus()


if CAL["enabled"]:
    _known("calibration.corpus", calibration_corpus(), config["corpora"])
    if CAL_SET in config["trial_sets"]:
        raise ValueError(
            f"config: trial_sets.{CAL_SET}: the name is reserved for the calibration trials; rename it"
        )


def scored_corpus(trials):
    """The corpus a trial set's ids refer to."""
    if CAL["enabled"] and trials == CAL_SET:
        return calibration_corpus()
    return config["trial_sets"][trials]["corpus"]


def trials_table(wildcards):
    if CAL["enabled"] and wildcards.trials == CAL_SET:
        return f"{DATA}/calibration/trials.parquet"
    return f"{DATA}/trials/{wildcards.trials}.parquet"


def calibrate_inputs(w):
    inputs = {
        "cal_scores": f"{EXP}/{w.system}/scores/{CAL_SET}/{w.backend}.parquet",
        "scores": f"{EXP}/{w.system}/scores/{w.trials}/{w.backend}.parquet",
    }
    corpora = {"cal_": calibration_corpus(), "": scored_corpus(w.trials)}
    for prefix, corpus in corpora.items():
        if "duration" in CAL["quality"]:
            inputs[f"{prefix}utterances"] = f"{DATA}/manifests/{corpus}.parquet"
        if "norm" in CAL["quality"]:
            inputs[f"{prefix}embeddings"] = (
                f"{EXP}/{w.system}/embeddings/{corpus}.parquet"
            )
    return inputs


def quality_args(w, input):
    import shlex

    args = [f"--quality {' '.join(CAL['quality'])}"] if CAL["quality"] else []
    args += [
        f"--{k.replace('_', '-')} {shlex.quote(str(v))}"
        for k, v in input.items()
        if k not in ("cal_scores", "scores")
    ]
    return " ".join(args)


# ---------------------------------------------------------------- diarization (diarize.smk)
def diarization_cfg(dset):
    """The diarization section as set ``dset`` uses it (its own diarization: entry applied)."""
    from voxflow.diarize.run import set_config

    spec = config["diarization_sets"][dset]
    return set_config(config["diarization"], spec.get("diarization"), dset)


def speaker_count_table(w):
    """What makes the table file of num_speakers (an input of rule diarize), else nothing."""
    n = diarization_cfg(w.dset).get("num_speakers")
    return [] if n is None or isinstance(n, int) or n == "oracle" else source_input(n)
