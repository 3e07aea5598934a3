# voxflow: the whole speaker-embedding recipe as one DAG. See README.md.
import os

from snakemake.utils import min_version, validate

min_version("9.0")


# A --configfile given on the command line is a whole config; otherwise the demo config is used.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config/config.yaml")


validate(config, os.path.join(workflow.basedir, "config/schema.yaml"))


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/clean.smk"
include: "workflow/rules/validation.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/diarize.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),


# After a failed run (e.g. one back-end under --keep-going), the summary of what finished, the rest marked missing.
onerror:
    import sys

    try:
        print(
            f"voxflow: a job failed; {summary_lib.summarize(config)[1]}. Rerun Snakemake once it is fixed "
            "(`voxflow summarize` rebuilds the summary from what exists).",
            file=sys.stderr,
        )
    except Exception as exc:  # never hide the failure being reported
        print(f"voxflow: no summary after the failure: {exc}", file=sys.stderr)
