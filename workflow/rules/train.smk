# Training stages (softmax warm-up, margin stage, large-margin fine-tune), imported models, averaging and export.

# Experiment keys that say how the engine runs; every stage gets them.
ENGINE_KEYS = ["gpus", "nproc", "checkpoint_every_steps", "log_every_steps", "channels_last", "compile", "tensorboard"]


def exclusions_input(wildcards):
    return [f"{DATA}/cleaning/exclusions.parquet"] if config["cleaning"]["enabled"] else []


def train_processes(exp):
    """(processes, GPUs) of an experiment: `gpus` GPUs (1 on cuda by default), else `nproc` CPU processes."""
    cfg = config["experiments"][exp]
    device, gpus = cfg["device"], cfg.get("gpus")
    if gpus is not None and gpus > 0:
        if device == "cpu":
            raise ValueError(f"config: experiments.{exp}.gpus: {gpus} with device: cpu; set device: cuda "
                             "(or use nproc for several CPU processes)")
        return gpus, gpus
    if device.startswith("cuda"):
        if gpus == 0:
            raise ValueError(f"config: experiments.{exp}.gpus: must be at least 1 with device: {device}")
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


def _check_init(exp, cfg):
    """An experiment's init section against the rest of its config (README "Pretrained models in the workflow")."""
    where = f"config: experiments.{exp}"
    init = cfg.get("init")
    if init is None:
        if not exp_stages(exp):
            raise ValueError(f"{where}: no training stage with epochs > 0 and no init: nothing makes its model")
        return
    if "model" in cfg:
        raise ValueError(f"{where}.model: with init the network is the imported model's; remove model")
    if cfg["untrained_baseline"]:
        raise ValueError(f"{where}.untrained_baseline: an experiment with init starts from pretrained weights and "
                         "has no untrained baseline; set it false")
    if not init["path"] and init["from"] != "resemblyzer":
        raise ValueError(f"{where}.init.path: init from {init['from']} needs the model's path")


if "init" in config["cleaning"].get("seed_model", {}):
    raise ValueError("config: cleaning.seed_model.init: the seed model is trained from scratch; remove init")
for _e, _cfg in config["experiments"].items():
    _check_init(_e, _cfg)
    train_processes(_e)
    _best = [f"experiments.{_e}.select"] if _cfg["select"] == "best" else []
    _best += [f"experiments.{_e}.{s}.select" for s in STAGES if _cfg.get(s, {}).get("select") == "best"]
    if _best and not config["validation"]["corpus"]:
        raise ValueError(f"config: {_best[0]}: best picks the epoch of lowest validation EER; set validation.corpus")


rule train_stage:
    input:
        unpack(lambda w: training_inputs()),
        unpack(lambda w: validation_inputs()),
        previous=previous_stage_checkpoint,
        exclusions=exclusions_input,
    output:
        f"{EXP}/{{exp}}/{{stage}}/final.pt",
    params:
        cfg=lambda w: as_json(train_stage_config(w.exp, w.stage)),
        exclusions=lambda w, input: f"--exclusions {input.exclusions}" if input.exclusions else "",
        init=lambda w, input: f"--init {input.previous}" if input.previous else "",
        validation=lambda w, input: (
            f"--validation-segments {input.val_segments} --validation-pairs {input.val_pairs}"
            if "val_segments" in input.keys()
            else ""
        ),
        launch=lambda w: train_launcher(w.exp),
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
        stage="|".join(STAGES),
    threads: lambda w: max(job_cpus("train_stage"), train_processes(w.exp)[0])
    resources:
        gpu=lambda w: train_processes(w.exp)[1],
        nodes=1,  # torchrun --standalone: every process of a job on one node
        **job_resources("train_stage"),
    log:
        "logs/train/{exp}_{stage}.log",
    benchmark:
        "logs/bench/train_{exp}_{stage}.tsv"
    shell:
        "{params.launch} {SCRIPTS}/train.py --config {params.cfg:q} --stages {wildcards.stage} {params.init}"
        " --utterances {input.utts} --shards {input.shards} --noise {input.noise} --rirs {input.rirs}"
        " {params.exclusions} {params.validation} --out-dir $(dirname {output}) > {log} 2>&1"


rule import_model:
    input:
        lambda w: [exp_init(w.exp)["path"]] if exp_init(w.exp)["path"] else [],
    output:
        model=f"{EXP}/{{exp}}/imported/model.pt",
        meta=f"{EXP}/{{exp}}/imported/meta.json",
    params:
        kind=lambda w: exp_init(w.exp)["from"],
        source=lambda w: exp_init(w.exp)["path"],
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    log:
        "logs/import_model/{exp}.log",
    benchmark:
        "logs/bench/import_model_{exp}.tsv"
    shell:
        "python {SCRIPTS}/import_model.py --from {params.kind} --source={params.source:q}"
        " --out $(dirname {output.model}) > {log} 2>&1"


def export_inputs(wildcards):
    """The checkpoint to export (averaged training, or the import itself with no stages) and the import's meta."""
    exp = wildcards.exp
    out = {"checkpoint": f"{EXP}/{exp}/avg_model.pt" if exp_stages(exp) else imported_model(exp)}
    if exp_init(exp):
        out["meta"] = f"{EXP}/{exp}/imported/meta.json"
    return out


rule average:
    input:
        final_stage_checkpoint,
    output:
        f"{EXP}/{{exp}}/avg_model.pt",
    params:
        n=lambda w: average_count(w.exp),
        select=lambda w: config["experiments"][w.exp]["select"],
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    log:
        "logs/average/{exp}.log",
    benchmark:
        "logs/bench/average_{exp}.tsv"
    shell:
        "python {SCRIPTS}/average.py --stage-dir $(dirname {input}) --average {params.n} --select {params.select}"
        " --out {output} > {log} 2>&1"


rule export:
    input:
        unpack(export_inputs),
    output:
        torchscript=f"{EXP}/{{exp}}/model.ts",
        onnx=f"{EXP}/{{exp}}/model.onnx",
    params:
        meta=lambda w, input: f"--meta {input.meta}" if "meta" in input.keys() else "",
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    log:
        "logs/export/{exp}.log",
    benchmark:
        "logs/bench/export_{exp}.tsv"
    shell:
        "python {SCRIPTS}/export.py --checkpoint {input.checkpoint} {params.meta} --torchscript {output.torchscript}"
        " --onnx {output.onnx} > {log} 2>&1"


rule export_untrained:
    output:
        f"{EXP}/{{exp}}_untrained/model.ts",
    params:
        cfg=lambda w: as_json(network_config(w.exp)),
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    log:
        "logs/export/{exp}_untrained.log",
    benchmark:
        "logs/bench/export_{exp}_untrained.tsv"
    shell:
        "python {SCRIPTS}/export.py --untrained-config {params.cfg:q} --torchscript {output} > {log} 2>&1"
