# Embedding extraction with an exported model (split-embed-average by default).


rule embed:
    input:
        model=f"{EXP}/{{system}}/model.ts",
        utts=f"{DATA}/manifests/{{corpus}}.parquet",
    output:
        f"{EXP}/{{system}}/embeddings/{{corpus}}.parquet",
    log:
        "logs/embed/{system}_{corpus}.log",
    benchmark:
        "logs/bench/embed_{system}_{corpus}.tsv"
    conda:
        "../../envs/voxflow.yaml"
    threads: job_cpus("embed")
    resources:
        **job_resources("embed"),
        gpu=int(config["embedding"]["device"].startswith("cuda")),
    params:
        cfg=as_json(config["embedding"]),
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/embed.py utterances --model {input.model} --utterances {input.utts}"
        " --config {params.cfg:q} --out {output} > {log} 2>&1"
