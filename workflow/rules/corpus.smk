# Corpora in: the built-in demo corpus, manifests, the training set, augmentation sets, trial lists.


rule demo_corpus:
    output:
        directory(DEMO_DIR),
    params:
        cfg=as_json(config["demo"]),
    log:
        "logs/demo_corpus.log",
    benchmark:
        "logs/bench/demo_corpus.tsv"
    shell:
        "python {SCRIPTS}/make_demo_corpus.py --out {output} --config {params.cfg:q} > {log} 2>&1"


rule manifest:
    input:
        lambda w: list(dict.fromkeys(x for p in [config["corpora"][w.corpus]["path"],
                                                   *config["corpora"][w.corpus].get("extra_paths", [])]
                                     for x in source_input(p, w.corpus))),
    output:
        f"{DATA}/manifests/{{corpus}}.parquet",
    params:
        source=lambda w: as_json({k: v for k, v in config["corpora"][w.corpus].items() if k != "download"}),
        audio=as_json(config["audio"]),
    threads: job_cpus("manifest")
    resources:
        **job_resources("manifest"),
    log:
        "logs/manifest/{corpus}.log",
    benchmark:
        "logs/bench/manifest_{corpus}.tsv"
    shell:
        "python {SCRIPTS}/manifest.py --corpus {wildcards.corpus} --source {params.source:q}"
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
    shell:
        "python {SCRIPTS}/merge_manifests.py --out {output} {input} > {log} 2>&1"


rule augmentation_set:
    input:
        lambda w: source_input(config["augmentation"][f"{w.kind}_dir"]),
    output:
        f"{DATA}/augment/{{kind}}.parquet",
    params:
        directory=lambda w: config["augmentation"][f"{w.kind}_dir"],
    wildcard_constraints:
        kind="noise|rir",
    log:
        "logs/augmentation_set/{kind}.log",
    benchmark:
        "logs/bench/augmentation_set_{kind}.tsv"
    shell:
        "python {SCRIPTS}/augmentation_manifest.py --kind {wildcards.kind} --dir {params.directory:q}"
        " --out {output} > {log} 2>&1"


rule trials:
    input:
        lists=lambda w: source_input(config["trial_sets"][w.trials]["path"]),
        utts=lambda w: f"{DATA}/manifests/{config['trial_sets'][w.trials]['corpus']}.parquet",
    output:
        f"{DATA}/trials/{{trials}}.parquet",
    params:
        path=lambda w: config["trial_sets"][w.trials]["path"],
        fmt=lambda w: config["trial_sets"][w.trials]["format"],
        enroll=lambda w: config["trial_sets"][w.trials].get("enroll_list", ""),
    log:
        "logs/trials/{trials}.log",
    benchmark:
        "logs/bench/trials_{trials}.tsv"
    shell:
        "python {SCRIPTS}/import_trials.py --trials {params.path:q} --format {params.fmt}"
        " --enroll-list={params.enroll:q} --utterances {input.utts} --out {output} > {log} 2>&1"
