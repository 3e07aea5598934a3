# Back-ends: fit on training embeddings, score trial lists, compute EER/minDCF, plot DET curves; calibration.

CAL = config["calibration"]
CAL_SET = "calibration"  # the calibration trial list's name under scores/


def calibration_corpus():
    return CAL["corpus"] or backend_corpus()


if CAL["enabled"]:
    _known("calibration.corpus", calibration_corpus(), config["corpora"])
    if CAL_SET in config["trial_sets"]:
        raise ValueError(f"config: trial_sets.{CAL_SET}: the name is reserved for the calibration trials; rename it")


def scored_corpus(trials):
    """The corpus a trial set's ids refer to."""
    if CAL["enabled"] and trials == CAL_SET:
        return calibration_corpus()
    return config["trial_sets"][trials]["corpus"]


def trials_table(wildcards):
    if CAL["enabled"] and wildcards.trials == CAL_SET:
        return f"{DATA}/calibration/trials.parquet"
    return f"{DATA}/trials/{wildcards.trials}.parquet"


rule fit_backend:
    input:
        f"{EXP}/{{system}}/embeddings/{backend_corpus()}.parquet",
    output:
        f"{EXP}/{{system}}/backend/{{backend}}.npz",
    params:
        cfg=lambda w: as_json(config["backends"][w.backend]),
        max_utts=config["backend_training"]["max_utts"],
        seed=config["seed"],
    threads: job_cpus("fit_backend")
    resources:
        **job_resources("fit_backend"),
    log:
        "logs/fit_backend/{system}_{backend}.log",
    benchmark:
        "logs/bench/fit_backend_{system}_{backend}.tsv"
    shell:
        "python {SCRIPTS}/backend.py fit --embeddings {input} --config {params.cfg:q}"
        " --max-utts {params.max_utts} --seed {params.seed} --out {output} > {log} 2>&1"


rule score:
    input:
        trials=trials_table,
        embeddings=lambda w: f"{EXP}/{w.system}/embeddings/{scored_corpus(w.trials)}.parquet",
        backend=f"{EXP}/{{system}}/backend/{{backend}}.npz",
    output:
        scores=f"{EXP}/{{system}}/scores/{{trials}}/{{backend}}.parquet",
        metrics=f"{EXP}/{{system}}/scores/{{trials}}/{{backend}}.json",
    params:
        cfg=lambda w: as_json(config["backends"][w.backend]),
    threads: job_cpus("score")
    resources:
        **job_resources("score"),
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


rule calibration_trials:
    input:
        f"{DATA}/manifests/{calibration_corpus()}.parquet",
    output:
        f"{DATA}/calibration/trials.parquet",
    params:
        targets=CAL["targets"],
        nontargets=CAL["nontargets"],
        seed=config["seed"],
    log:
        "logs/calibration_trials.log",
    benchmark:
        "logs/bench/calibration_trials.tsv"
    shell:
        "python {SCRIPTS}/calibration_trials.py --utterances {input} --targets {params.targets}"
        " --nontargets {params.nontargets} --seed {params.seed} --out {output} > {log} 2>&1"


def calibrate_inputs(w):
    inputs = {
        "cal_scores": f"{EXP}/{w.system}/scores/{CAL_SET}/{w.backend}.parquet",
        "scores": f"{EXP}/{w.system}/scores/{w.trials}/{w.backend}.parquet",
    }
    corpora = {"cal_": calibration_corpus(), "": scored_corpus(w.trials)}
    for prefix, corpus in corpora.items():
        if "duration" in CAL["quality"]:
            inputs[f"{prefix}utterances"] = f"{DATA}/manifests/{corpus}.parquet"
        if "norm" in CAL["quality"]:
            inputs[f"{prefix}embeddings"] = f"{EXP}/{w.system}/embeddings/{corpus}.parquet"
    return inputs


def quality_args(w, input):
    import shlex

    args = [f"--quality {' '.join(CAL['quality'])}"] if CAL["quality"] else []
    args += [f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in input.items()
             if k not in ("cal_scores", "scores")]
    return " ".join(args)


rule calibrate:
    input:
        unpack(calibrate_inputs),
    output:
        scores=f"{EXP}/{{system}}/calibrated/{{trials}}/{{backend}}.parquet",
        metrics=f"{EXP}/{{system}}/calibrated/{{trials}}/{{backend}}.json",
    params:
        p_target=CAL["p_target"],
        quality=quality_args,
    log:
        "logs/calibrate/{system}_{trials}_{backend}.log",
    benchmark:
        "logs/bench/calibrate_{system}_{trials}_{backend}.tsv"
    shell:
        "python {SCRIPTS}/calibrate.py --cal-scores {input.cal_scores} --scores {input.scores}"
        " --p-target {params.p_target} {params.quality}"
        " --out-scores {output.scores} --out-metrics {output.metrics} > {log} 2>&1"
