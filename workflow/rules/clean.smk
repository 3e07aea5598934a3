# Kaseva & Kurimo's speaker cleaning: a seed model, 2 s segment embeddings, K=2 spherical K-means + silhouette.
# The seed model is trained from scratch, or starts from an import (cleaning.seed_model.init, rule
# import_seed_model in train.smk): trained further with stages, used as is without.


rule train_seed_model:
    input:
        **training_inputs(),
        **seed_model_inputs(),
    output:
        f"{SEED_DIR}/final.pt",
    log:
        "logs/train_seed_model.log",
    benchmark:
        "logs/bench/train_seed_model.tsv"
    conda:
        "../../envs/voxflow.yaml"
    threads: job_cpus("train_seed_model")
    resources:
        **job_resources("train_seed_model"),
        gpu=lambda w: int(
            config["cleaning"]
            .get("seed_model", {})
            .get("device", "cpu")
            .startswith("cuda")
        ),
    params:
        cfg=as_json(SEED_CFG),
        stages=" ".join(model_stages(SEED_CFG)),
        init=lambda w, input: (
            f"--init {input.previous}" if "previous" in input.keys() else ""
        ),
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/train.py --config {params.cfg:q} --stages {params.stages} {params.init}"
        " --utterances {input.utts} --shards {input.shards} --noise {input.noise} --rirs {input.rirs}"
        " --out-dir $(dirname {output}) > {log} 2>&1"


rule embed_segments:
    input:
        model=seed_model_checkpoint(),
        utts=f"{DATA}/train/utterances.parquet",
    output:
        f"{DATA}/cleaning/segment_embeddings.parquet",
    log:
        "logs/embed_segments.log",
    benchmark:
        "logs/bench/embed_segments.tsv"
    conda:
        "../../envs/voxflow.yaml"
    threads: job_cpus("embed_segments")
    resources:
        **job_resources("embed_segments"),
        gpu=int(config["embedding"]["device"].startswith("cuda")),
    params:
        window=config["cleaning"]["window_s"],
        hop=config["cleaning"]["hop_s"],
        device=config["embedding"]["device"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/embed.py segments --checkpoint {input.model} --utterances {input.utts}"
        " --window {params.window} --hop {params.hop} --device {params.device} --out {output} > {log} 2>&1"


rule clean_speakers:
    input:
        segments=f"{DATA}/cleaning/segment_embeddings.parquet",
        truth=lambda w: source_input(config["cleaning"]["ground_truth"]),
    output:
        exclusions=f"{DATA}/cleaning/exclusions.parquet",
        speakers=f"{DATA}/cleaning/speakers.parquet",
        summary=f"{DATA}/cleaning/summary.json",
    log:
        "logs/clean_speakers.log",
    benchmark:
        "logs/bench/clean_speakers.tsv"
    conda:
        "../../envs/scoring.yaml"
    threads: job_cpus("clean_speakers")
    resources:
        **job_resources("clean_speakers"),
    params:
        majority=config["cleaning"]["majority"],
        silhouette=config["cleaning"]["min_silhouette"],
        truth=config["cleaning"]["ground_truth"],
        seed=config["seed"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/clean_speakers.py --segments {input.segments} --majority {params.majority}"
        " --min-silhouette {params.silhouette} --ground-truth {params.truth:q} --seed {params.seed}"
        " --threads {threads} --exclusions {output.exclusions} --speakers {output.speakers} --summary {output.summary} > {log} 2>&1"
