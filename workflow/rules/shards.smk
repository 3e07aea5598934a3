# Tar shards of the training set (Wespeaker's UIO format) and their shard list.


rule shards:
    input:
        f"{DATA}/train/utterances.parquet",
    output:
        directory(f"{DATA}/shards/train"),
    log:
        "logs/shards.log",
    benchmark:
        "logs/bench/shards.tsv"
    conda:
        "../../envs/voxflow.yaml"
    threads: config["shards"]["jobs"]
    resources:
        **job_resources("shards"),
    params:
        cfg=as_json(config["shards"]),
        seed=config["seed"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/make_shards.py --utterances {input} --out {output} --config {params.cfg:q}"
        " --seed {params.seed} > {log} 2>&1"
