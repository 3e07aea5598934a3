#!/usr/bin/env bash
# Snakemake runs this in the new conda env after creating it (from a copy under .snakemake/conda/, so a path
# relative to envs/ would not find the checkout): install voxflow from the checkout the Snakefile runs from
# ($VOXFLOW_SOURCE, set by workflow/rules/common.smk), without dependencies: the env file pins them.
set -euo pipefail
python -m pip install --no-deps -e "${VOXFLOW_SOURCE:?run through Snakemake (workflow/rules/common.smk sets it)}"
