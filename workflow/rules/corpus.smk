# Corpora in: the built-in demo corpus, manifests, the training set, augmentation sets, trial lists.


rule demo_corpus:
    output:
        directory(DEMO_DIR),
    log:
        "logs/demo_corpus.log",
    benchmark:
        "logs/bench/demo_corpus.tsv"
    conda:
        "../../envs/voxflow.yaml"
    params:
        cfg=as_json(config["demo"]),
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/make_demo_corpus.py --out {output} --config {params.cfg:q} > {log} 2>&1"


rule manifest:
    input:
        manifest_sources,
    output:
        f"{DATA}/manifests/{{corpus}}.parquet",
    log:
        "logs/manifest/{corpus}.log",
    benchmark:
        "logs/bench/manifest_{corpus}.tsv"
    conda:
        "../../envs/voxflow.yaml"
    threads: job_cpus("manifest")
    resources:
        **job_resources("manifest"),
    params:
        source=lambda w: as_json(
            {k: v for k, v in config["corpora"][w.corpus].items() if k != "download"}
        ),
        audio=as_json(config["audio"]),
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/manifest.py --corpus {wildcards.corpus} --source {params.source:q}"
        " --audio {params.audio:q} --out {output} > {log} 2>&1"


rule train_set:
    input:
        [f"{DATA}/manifests/{c}.parquet" for c in config["train_corpora"]],
    output:
        f"{DATA}/train/utterances.parquet",
    log:
        "logs/train_set.log",
    benchmark:
        "logs/bench/train_set.tsv"
    conda:
        "../../envs/voxflow.yaml"
    params:
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/merge_manifests.py --out {output} {input} > {log} 2>&1"


rule augmentation_set:
    input:
        lambda w: source_input(config["augmentation"][f"{w.kind}_dir"]),
    output:
        f"{DATA}/augment/{{kind}}.parquet",
    log:
        "logs/augmentation_set/{kind}.log",
    benchmark:
        "logs/bench/augmentation_set_{kind}.tsv"
    wildcard_constraints:
        kind="noise|rir",
    conda:
        "../../envs/voxflow.yaml"
    params:
        directory=lambda w: config["augmentation"][f"{w.kind}_dir"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/augmentation_manifest.py --kind {wildcards.kind} --dir {params.directory:q}"
        " --out {output} > {log} 2>&1"


rule trials:
    input:
        lists=lambda w: source_input(config["trial_sets"][w.trials]["path"]),
        utts=lambda w: f"{DATA}/manifests/{config['trial_sets'][w.trials]['corpus']}.parquet",
    output:
        f"{DATA}/trials/{{trials}}.parquet",
    log:
        "logs/trials/{trials}.log",
    benchmark:
        "logs/bench/trials_{trials}.tsv"
    conda:
        "../../envs/scoring.yaml"
    params:
        path=lambda w: config["trial_sets"][w.trials]["path"],
        fmt=lambda w: config["trial_sets"][w.trials]["format"],
        enroll=lambda w: config["trial_sets"][w.trials].get("enroll_list", ""),
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/import_trials.py --trials {params.path:q} --format {params.fmt}"
        " --enroll-list={params.enroll:q} --utterances {input.utts} --out {output} > {log} 2>&1"
