# Kaseva & Kurimo's speaker cleaning: a seed model, 2 s segment embeddings, K=2 spherical K-means + silhouette.


rule train_seed_model:
    input:
        **training_inputs(),
    output:
        f"{DATA}/cleaning/seed_model/final.pt",
    params:
        cfg=as_json(config["cleaning"].get("seed_model", {})),
        stages=lambda w: " ".join(s for s in STAGES if s in config["cleaning"].get("seed_model", {})),
    threads: job_cpus("train_seed_model")
    resources:
        gpu=lambda w: int(config["cleaning"].get("seed_model", {}).get("device", "cpu").startswith("cuda")),
        **job_resources("train_seed_model"),
    log:
        "logs/train_seed_model.log",
    benchmark:
        "logs/bench/train_seed_model.tsv"
    shell:
        "python {SCRIPTS}/train.py --config {params.cfg:q} --stages {params.stages}"
        " --utterances {input.utts} --shards {input.shards} --noise {input.noise} --rirs {input.rirs}"
        " --out-dir $(dirname {output}) > {log} 2>&1"


rule embed_segments:
    input:
        model=f"{DATA}/cleaning/seed_model/final.pt",
        utts=f"{DATA}/train/utterances.parquet",
    output:
        f"{DATA}/cleaning/segment_embeddings.parquet",
    threads: job_cpus("embed_segments")
    resources:
        gpu=int(config["embedding"]["device"].startswith("cuda")),
        **job_resources("embed_segments"),
    params:
        window=config["cleaning"]["window_s"],
        hop=config["cleaning"]["hop_s"],
        device=config["embedding"]["device"],
    log:
        "logs/embed_segments.log",
    benchmark:
        "logs/bench/embed_segments.tsv"
    shell:
        "python {SCRIPTS}/embed.py segments --checkpoint {input.model} --utterances {input.utts}"
        " --window {params.window} --hop {params.hop} --device {params.device} --out {output} > {log} 2>&1"


rule clean_speakers:
    input:
        segments=f"{DATA}/cleaning/segment_embeddings.parquet",
        truth=lambda w: source_input(config["cleaning"]["ground_truth"]),
    output:
        exclusions=f"{DATA}/cleaning/exclusions.parquet",
        speakers=f"{DATA}/cleaning/speakers.parquet",
        summary=f"{DATA}/cleaning/summary.json",
    params:
        majority=config["cleaning"]["majority"],
        silhouette=config["cleaning"]["min_silhouette"],
        truth=config["cleaning"]["ground_truth"],
        seed=config["seed"],
    log:
        "logs/clean_speakers.log",
    benchmark:
        "logs/bench/clean_speakers.tsv"
    shell:
        "python {SCRIPTS}/clean_speakers.py --segments {input.segments} --majority {params.majority}"
        " --min-silhouette {params.silhouette} --ground-truth {params.truth:q} --seed {params.seed}"
        " --exclusions {output.exclusions} --speakers {output.speakers} --summary {output.summary} > {log} 2>&1"
