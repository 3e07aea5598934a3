# Summary tables (papers' layout), training curves and the cleaning summary; the HTML report comes from
# `snakemake --report results/report.html`.


rule summary:
    input:
        unpack(lambda w: summary_lib.summary_inputs(config)),
    output:
        csv=report(
            f"{RESULTS}/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
            subcategory="Results table",
        ),
        md=f"{RESULTS}/summary.md",
    log:
        "logs/summary.log",
    benchmark:
        "logs/bench/summary.tsv"
    conda:
        "../../envs/scoring.yaml"
    params:
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/summary.py --metrics {input.metrics} --der {input.der}"
        " --csv {output.csv} --md {output.md} > {log} 2>&1 && cat {output.md}"


rule training_curves:
    input:
        lambda w: [
            f"{EXP}/{e}/{s}/final.pt" for e in EXPERIMENTS for s in exp_stages(e)
        ],
    output:
        report(
            f"{RESULTS}/training_curves.png",
            caption="../report/training.rst",
            category="Training",
            subcategory="Curves",
        ),
    log:
        "logs/training_curves.log",
    benchmark:
        "logs/bench/training_curves.tsv"
    conda:
        "../../envs/scoring.yaml"
    params:
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/training_curves.py --out {output} {input} > {log} 2>&1"


rule cleaning_report:
    input:
        summary=f"{DATA}/cleaning/summary.json",
        speakers=f"{DATA}/cleaning/speakers.parquet",
    output:
        report(
            f"{RESULTS}/cleaning.md",
            caption="../report/cleaning.rst",
            category="Cleaning",
            subcategory="Speaker cleaning",
        ),
    log:
        "logs/cleaning_report.log",
    benchmark:
        "logs/bench/cleaning_report.tsv"
    conda:
        "../../envs/scoring.yaml"
    params:
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/cleaning_report.py --summary {input.summary} --speakers {input.speakers}"
        " --out {output} > {log} 2>&1"
