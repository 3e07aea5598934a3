# Training stages (softmax warm-up, margin stage, large-margin fine-tune), imported models, averaging and export.


rule train_stage:
    input:
        unpack(lambda w: training_inputs()),
        unpack(lambda w: validation_inputs()),
        previous=previous_stage_checkpoint,
        exclusions=exclusions_input,
    output:
        f"{EXP}/{{exp}}/{{stage}}/final.pt",
    log:
        "logs/train/{exp}_{stage}.log",
    benchmark:
        "logs/bench/train_{exp}_{stage}.tsv"
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
        stage="|".join(STAGES),
    conda:
        "../../envs/voxflow.yaml"
    threads: lambda w: max(job_cpus("train_stage"), train_processes(w.exp)[0])
    resources:
        **job_resources("train_stage"),
        gpu=lambda w: train_processes(w.exp)[1],
        nodes=1,  # torchrun --standalone: every process of a job on one node
    params:
        cfg=lambda w: as_json(train_stage_config(w.exp, w.stage)),
        exclusions=lambda w, input: (
            f"--exclusions {input.exclusions}" if input.exclusions else ""
        ),
        init=lambda w, input: f"--init {input.previous}" if input.previous else "",
        validation=lambda w, input: (
            f"--validation-segments {input.val_segments} --validation-pairs {input.val_pairs}"
            if "val_segments" in input.keys()
            else ""
        ),
        launch=lambda w: train_launcher(w.exp),
        scripts=untracked(SCRIPTS),
    shell:
        "{params.launch} {params.scripts}/train.py --config {params.cfg:q} --stages {wildcards.stage} {params.init}"
        " --utterances {input.utts} --shards {input.shards} --noise {input.noise} --rirs {input.rirs}"
        " {params.exclusions} {params.validation} --out-dir $(dirname {output}) > {log} 2>&1"


rule import_model:
    input:
        lambda w: init_source(exp_init(w.exp)),
    output:
        model=f"{EXP}/{{exp}}/imported/model.pt",
        meta=f"{EXP}/{{exp}}/imported/meta.json",
    log:
        "logs/import_model/{exp}.log",
    benchmark:
        "logs/bench/import_model_{exp}.tsv"
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    conda:
        "../../envs/voxflow.yaml"
    params:
        kind=lambda w: exp_init(w.exp)["from"],
        source=lambda w: exp_init(w.exp)["path"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/import_model.py --from {params.kind} --source={params.source:q}"
        " --out $(dirname {output.model}) > {log} 2>&1"


# The cleaning seed model's import (cleaning.seed_model.init): the same rule, another directory.
use rule import_model as import_seed_model with:
    input:
        init_source(SEED_CFG.get("init")),
    output:
        model=f"{SEED_DIR}/imported/model.pt",
        meta=f"{SEED_DIR}/imported/meta.json",
    log:
        "logs/import_model/seed_model.log",
    benchmark:
        "logs/bench/import_seed_model.tsv"
    params:
        kind=SEED_CFG.get("init", {}).get("from"),
        source=SEED_CFG.get("init", {}).get("path"),
        scripts=untracked(SCRIPTS),


rule average:
    input:
        final_stage_checkpoint,
    output:
        f"{EXP}/{{exp}}/avg_model.pt",
    log:
        "logs/average/{exp}.log",
    benchmark:
        "logs/bench/average_{exp}.tsv"
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    conda:
        "../../envs/voxflow.yaml"
    params:
        n=lambda w: average_count(w.exp),
        select=lambda w: config["experiments"][w.exp]["select"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/average.py --stage-dir $(dirname {input}) --average {params.n} --select {params.select}"
        " --out {output} > {log} 2>&1"


rule export:
    input:
        unpack(export_inputs),
    output:
        torchscript=f"{EXP}/{{exp}}/model.ts",
        onnx=f"{EXP}/{{exp}}/model.onnx",
    log:
        "logs/export/{exp}.log",
    benchmark:
        "logs/bench/export_{exp}.tsv"
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    conda:
        "../../envs/voxflow.yaml"
    params:
        meta=lambda w, input: f"--meta {input.meta}" if "meta" in input.keys() else "",
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/export.py --checkpoint {input.checkpoint} {params.meta} --torchscript {output.torchscript}"
        " --onnx {output.onnx} > {log} 2>&1"


rule export_untrained:
    output:
        torchscript=f"{EXP}/{{exp}}_untrained/model.ts",
        onnx=f"{EXP}/{{exp}}_untrained/model.onnx",
    log:
        "logs/export/{exp}_untrained.log",
    benchmark:
        "logs/bench/export_{exp}_untrained.tsv"
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    conda:
        "../../envs/voxflow.yaml"
    params:
        cfg=lambda w: as_json(network_config(w.exp)),
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/export.py --untrained-config {params.cfg:q} --torchscript {output.torchscript}"
        " --onnx {output.onnx} > {log} 2>&1"
