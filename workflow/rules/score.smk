# Back-ends: fit on training embeddings, score trial lists, compute EER/minDCF, plot DET curves; calibration.


rule fit_backend:
    input:
        f"{EXP}/{{system}}/embeddings/{backend_corpus()}.parquet",
    output:
        f"{EXP}/{{system}}/backend/{{backend}}.npz",
    log:
        "logs/fit_backend/{system}_{backend}.log",
    benchmark:
        "logs/bench/fit_backend_{system}_{backend}.tsv"
    conda:
        "../../envs/scoring.yaml"
    threads: job_cpus("fit_backend")
    resources:
        **job_resources("fit_backend"),
    params:
        cfg=lambda w: as_json(config["backends"][w.backend]),
        max_utts=config["backend_training"]["max_utts"],
        seed=config["seed"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/backend.py fit --embeddings {input} --config {params.cfg:q}"
        " --max-utts {params.max_utts} --seed {params.seed} --out {output} > {log} 2>&1"


rule score:
    input:
        trials=trials_table,
        embeddings=lambda w: f"{EXP}/{w.system}/embeddings/{scored_corpus(w.trials)}.parquet",
        backend=f"{EXP}/{{system}}/backend/{{backend}}.npz",
    output:
        scores=f"{EXP}/{{system}}/scores/{{trials}}/{{backend}}.parquet",
        metrics=f"{EXP}/{{system}}/scores/{{trials}}/{{backend}}.json",
    log:
        "logs/score/{system}_{trials}_{backend}.log",
    benchmark:
        "logs/bench/score_{system}_{trials}_{backend}.tsv"
    conda:
        "../../envs/scoring.yaml"
    threads: job_cpus("score")
    resources:
        **job_resources("score"),
    params:
        cfg=lambda w: as_json(config["backends"][w.backend]),
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/backend.py score --trials {input.trials} --embeddings {input.embeddings}"
        " --model {input.backend} --config {params.cfg:q} --name {wildcards.backend}"
        " --scores {output.scores} --metrics {output.metrics} > {log} 2>&1"


rule det_plot:
    input:
        lambda w: [
            f"{EXP}/{s}/scores/{w.trials}/{b}.parquet"
            for s in systems()
            for b in config["backends"]
        ],
    output:
        report(
            f"{RESULTS}/det_{{trials}}.png",
            caption="../report/det.rst",
            category="Verification",
            subcategory="DET curves",
            labels={"trial set": "{trials}"},
        ),
    log:
        "logs/det_plot/{trials}.log",
    benchmark:
        "logs/bench/det_plot_{trials}.tsv"
    conda:
        "../../envs/scoring.yaml"
    params:
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/det_plot.py --out {output} {input} > {log} 2>&1"


rule calibration_trials:
    input:
        f"{DATA}/manifests/{calibration_corpus()}.parquet",
    output:
        f"{DATA}/calibration/trials.parquet",
    log:
        "logs/calibration_trials.log",
    benchmark:
        "logs/bench/calibration_trials.tsv"
    conda:
        "../../envs/scoring.yaml"
    params:
        targets=CAL["targets"],
        nontargets=CAL["nontargets"],
        seed=config["seed"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/calibration_trials.py --utterances {input} --targets {params.targets}"
        " --nontargets {params.nontargets} --seed {params.seed} --out {output} > {log} 2>&1"


rule calibrate:
    input:
        unpack(calibrate_inputs),
    output:
        scores=f"{EXP}/{{system}}/calibrated/{{trials}}/{{backend}}.parquet",
        metrics=f"{EXP}/{{system}}/calibrated/{{trials}}/{{backend}}.json",
    log:
        "logs/calibrate/{system}_{trials}_{backend}.log",
    benchmark:
        "logs/bench/calibrate_{system}_{trials}_{backend}.tsv"
    conda:
        "../../envs/scoring.yaml"
    params:
        p_target=CAL["p_target"],
        quality=quality_args,
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/calibrate.py --cal-scores {input.cal_scores} --scores {input.scores}"
        " --p-target {params.p_target} {params.quality}"
        " --out-scores {output.scores} --out-metrics {output.metrics} > {log} 2>&1"
