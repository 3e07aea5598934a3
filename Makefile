# make demo: the whole recipe on the built-in synthetic corpus; make test: the test suite.
# Both create .venv and install the pinned dependencies when missing or stale.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
CORES ?= all

.PHONY: demo test report clean-results

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.14.1 torchaudio==2.11.0 -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	snakemake --cores $(CORES)
	snakemake --report results/report.html
	@cat results/summary.md

test: $(STAMP)
	@command -v ffmpeg >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null; } || \
	  echo "ffmpeg missing: the m4a conversion test will be skipped"
	snakemake --lint  # exits non-zero on any finding
	snakefmt --check Snakefile workflow/rules/
	python -m pytest -q -n 2 --dist loadfile --durations=20  # 2 workers; a file's tests stay on one worker

clean-results:
	rm -rf results exp data logs .snakemake
