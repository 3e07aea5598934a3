# Embedding extraction with an exported model (split-embed-average by default).


rule embed:
    input:
        model=f"{EXP}/{{system}}/model.ts",
        utts=f"{DATA}/manifests/{{corpus}}.parquet",
    output:
        f"{EXP}/{{system}}/embeddings/{{corpus}}.parquet",
    params:
        cfg=as_json(config["embedding"]),
    threads: job_cpus("embed")
    resources:
        gpu=int(config["embedding"]["device"].startswith("cuda")),
        **job_resources("embed"),
    log:
        "logs/embed/{system}_{corpus}.log",
    benchmark:
        "logs/bench/embed_{system}_{corpus}.tsv"
    shell:
        "python {SCRIPTS}/embed.py utterances --model {input.model} --utterances {input.utts}"
        " --config {params.cfg:q} --out {output} > {log} 2>&1"
