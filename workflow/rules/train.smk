# Training stages (softmax warm-up, margin stage, large-margin fine-tune), averaging and export.


def exclusions_input(wildcards):
    return [f"{DATA}/cleaning/exclusions.parquet"] if config["cleaning"]["enabled"] else []


rule train_stage:
    input:
        unpack(lambda w: training_inputs()),
        previous=previous_stage_checkpoint,
        exclusions=exclusions_input,
    output:
        f"{EXP}/{{exp}}/{{stage}}/final.pt",
    params:
        cfg=lambda w: as_json(stage_config(w.exp, w.stage)),
        exclusions=lambda w, input: f"--exclusions {input.exclusions}" if input.exclusions else "",
        init=lambda w, input: f"--init {input.previous}" if input.previous else "",
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
        stage="|".join(STAGES),
    threads: 2
    resources:
        gpu=lambda w: int(config["experiments"][w.exp]["device"].startswith("cuda")),
    log:
        "logs/train/{exp}_{stage}.log",
    benchmark:
        "logs/bench/train_{exp}_{stage}.tsv"
    shell:
        "python {SCRIPTS}/train.py --config {params.cfg:q} --stages {wildcards.stage} {params.init}"
        " --utterances {input.utts} --shards {input.shards} --noise {input.noise} --rirs {input.rirs}"
        " {params.exclusions} --out-dir $(dirname {output}) > {log} 2>&1"


rule average:
    input:
        final_stage_checkpoint,
    output:
        f"{EXP}/{{exp}}/avg_model.pt",
    params:
        last=lambda w: config["experiments"][w.exp]["average_last"],
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    log:
        "logs/average/{exp}.log",
    benchmark:
        "logs/bench/average_{exp}.tsv"
    shell:
        "python {SCRIPTS}/average.py --stage-dir $(dirname {input}) --last {params.last} --out {output} > {log} 2>&1"


rule export:
    input:
        f"{EXP}/{{exp}}/avg_model.pt",
    output:
        torchscript=f"{EXP}/{{exp}}/model.ts",
        onnx=f"{EXP}/{{exp}}/model.onnx",
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    log:
        "logs/export/{exp}.log",
    benchmark:
        "logs/bench/export_{exp}.tsv"
    shell:
        "python {SCRIPTS}/export.py --checkpoint {input} --torchscript {output.torchscript}"
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
