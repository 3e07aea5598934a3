# Embedding extraction with an exported model (split-embed-average by default), in PyTorch or ONNX Runtime.


rule embed:
    input:
        unpack(embed_inputs),
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
        onnx=lambda w, input: f"--onnx {input.onnx}" if "onnx" in input.keys() else "",
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/embed.py utterances --model {input.model} --utterances {input.utts} {params.onnx}"
        " --config {params.cfg:q} --out {output} > {log} 2>&1"
