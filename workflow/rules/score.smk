# Back-ends: fit on training embeddings, score trial lists, compute EER/minDCF, plot DET curves.


rule fit_backend:
    input:
        f"{EXP}/{{system}}/embeddings/{backend_corpus()}.parquet",
    output:
        f"{EXP}/{{system}}/backend/{{backend}}.npz",
    params:
        cfg=lambda w: as_json(config["backends"][w.backend]),
        max_utts=config["backend_training"]["max_utts"],
        seed=config["seed"],
    log:
        "logs/fit_backend/{system}_{backend}.log",
    benchmark:
        "logs/bench/fit_backend_{system}_{backend}.tsv"
    shell:
        "python {SCRIPTS}/backend.py fit --embeddings {input} --config {params.cfg:q}"
        " --max-utts {params.max_utts} --seed {params.seed} --out {output} > {log} 2>&1"


rule score:
    input:
        trials=f"{DATA}/trials/{{trials}}.parquet",
        embeddings=lambda w: f"{EXP}/{w.system}/embeddings/{config['trial_sets'][w.trials]['corpus']}.parquet",
        backend=f"{EXP}/{{system}}/backend/{{backend}}.npz",
    output:
        scores=f"{EXP}/{{system}}/scores/{{trials}}/{{backend}}.parquet",
        metrics=f"{EXP}/{{system}}/scores/{{trials}}/{{backend}}.json",
    params:
        cfg=lambda w: as_json(config["backends"][w.backend]),
    log:
        "logs/score/{system}_{trials}_{backend}.log",
    benchmark:
        "logs/bench/score_{system}_{trials}_{backend}.tsv"
    shell:
        "python {SCRIPTS}/backend.py score --trials {input.trials} --embeddings {input.embeddings}"
        " --model {input.backend} --config {params.cfg:q} --name {wildcards.backend}"
        " --scores {output.scores} --metrics {output.metrics} > {log} 2>&1"


rule det_plot:
    input:
        lambda w: [f"{EXP}/{s}/scores/{w.trials}/{b}.parquet" for s in systems() for b in config["backends"]],
    output:
        report(f"{RESULTS}/det_{{trials}}.png", caption="../report/det.rst", category="Verification"),
    log:
        "logs/det_plot/{trials}.log",
    benchmark:
        "logs/bench/det_plot_{trials}.tsv"
    shell:
        "python {SCRIPTS}/det_plot.py --out {output} {input} > {log} 2>&1"
