# Two commands (see README): `make run` (install + whole workflow) and `make test`.
# The virtual environment is built once; later calls reuse it (a stamp file tracks pyproject.toml).

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.xsyn-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export YOLO_OFFLINE := 1
export DVC_NO_ANALYTICS := 1

.PHONY: install run test lint repro

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# torch first, pinned: asking for ultralytics alone would pull whatever torch is newest.
	$(VENV)/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	snakemake --cores all
	$(MAKE) --no-print-directory results/report.html
	@echo; cat results/tables/main.md; echo; echo "Report: $(abspath results/report.html)"

results/report.html: results/metrics.json
	snakemake --cores all --report $@

repro: $(STAMP)
	dvc repro

test: $(STAMP)
	pytest

lint: $(STAMP)
	ruff check .
