# Embedding extraction with an exported model (split-embed-average by default), in PyTorch or ONNX Runtime.
# embedding.parts > 1: each corpus in that many embed jobs (one GPU each), joined by merge_embeddings.


rule embed:
    input:
        unpack(embed_inputs),
    output:
        embed_output()[0],
    log:
        f"logs/embed/{embed_output()[1]}.log",
    benchmark:
        f"logs/bench/embed_{embed_output()[1]}.tsv"
    conda:
        "../../envs/voxflow.yaml"
    threads: job_cpus("embed")
    resources:
        **job_resources("embed"),
        gpu=int(config["embedding"]["device"].startswith("cuda")),
    params:
        cfg=lambda w: as_json(embedding_job_config(w)),
        onnx=lambda w, input: f"--onnx {input.onnx}" if "onnx" in input.keys() else "",
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/embed.py utterances --model {input.model} --utterances {input.utts} {params.onnx}"
        " --config {params.cfg:q} --out {output} > {log} 2>&1"


if EMBED_PARTS > 1:

    rule split_manifest:
        input:
            f"{DATA}/manifests/{{corpus}}.parquet",
        output:
            part_files(SPLIT_MANIFEST, corpus="{corpus}"),
        log:
            "logs/split_manifest/{corpus}.log",
        localrule: True  # 1.5 s, 0.43 GB for VoxCeleb2 dev's 1.09 M rows
        conda:
            "../../envs/voxflow.yaml"
        params:
            scripts=untracked(SCRIPTS),
        shell:
            "python {params.scripts}/embed.py split --utterances {input} --out {output} > {log} 2>&1"

    rule merge_embeddings:
        input:
            parts=embedding_parts,
            utts=f"{DATA}/manifests/{{corpus}}.parquet",
        output:
            EMBEDDINGS,
        log:
            "logs/merge_embeddings/{system}_{corpus}.log",
        wildcard_constraints:
            corpus=one_of(config["corpora"]),
        localrule: True  # streams the parts: 9 s, 0.93 GB for 1.09 M x 256-d
        conda:
            "../../envs/voxflow.yaml"
        params:
            scripts=untracked(SCRIPTS),
        shell:
            "python {params.scripts}/embed.py merge --utterances {input.utts} --parts {input.parts}"
            " --out {output} > {log} 2>&1"
