# hpsteer: `make demo` runs the main job locally, `make test` sets up and runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
# Stand-ins for the Google services without an official emulator. Each lives in a venv of its
# own: they pin protobuf and duckdb versions that clash with the project's.
TASKS_EMULATOR := gcloud-tasks-emulator==0.6.2
# bqemulator needs numpy at start but does not declare it.
BQ_EMULATOR := bqemulator==1.4.0 duckdb-extension-spatial==1.5.5 numpy==2.4.6
# Infrastructure checks, each in a venv of its own: checkov ships an `hcl2` module of its own
# (bc-python-hcl2) that clashes with python-hcl2's.
HCL_PARSER := python-hcl2==8.1.4
CHECKOV := checkov==3.3.30

.PHONY: help install tools browser lint typecheck test test-fast stage demo benchmark clean

help:
	@echo "make demo       set up and run the main job on the local runtime (no cloud account)"
	@echo "make test       set up everything and run lint, type checks and all tests (emulators included)"
	@echo "make test-fast  unit, service and local-backend tests only (no emulators)"
	@echo "make benchmark  run the benchmarks in benchmarks/"
	@echo "make stage      build each function's deployable folder under build/stage/"
	@echo "make browser    install Debian's chromium (the report's rendering test opens it headless)"

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(TOOLS)/%/bin/uv:
	$(PYTHON) -m venv $(TOOLS)/$*
	$(TOOLS)/$*/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(TOOLS)/tasks/.installed: Makefile $(TOOLS)/tasks/bin/uv
	$(TOOLS)/tasks/bin/uv pip install --quiet --python $(TOOLS)/tasks/bin/python $(TASKS_EMULATOR)
	touch $@

$(TOOLS)/bq/.installed: Makefile $(TOOLS)/bq/bin/uv
	$(TOOLS)/bq/bin/uv pip install --quiet --python $(TOOLS)/bq/bin/python $(BQ_EMULATOR)
	touch $@

$(TOOLS)/hcl/.installed: Makefile $(TOOLS)/hcl/bin/uv
	$(TOOLS)/hcl/bin/uv pip install --quiet --python $(TOOLS)/hcl/bin/python $(HCL_PARSER)
	touch $@

$(TOOLS)/checkov/.installed: Makefile $(TOOLS)/checkov/bin/uv
	$(TOOLS)/checkov/bin/uv pip install --quiet --python $(TOOLS)/checkov/bin/python $(CHECKOV)
	touch $@

tools: $(TOOLS)/tasks/.installed $(TOOLS)/bq/.installed $(TOOLS)/hcl/.installed \
	$(TOOLS)/checkov/.installed

# The report test renders report.html in headless Chromium. Debian's package is installed when
# missing and this user may (root, apt-get); otherwise the test says what to install.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get install -y -q chromium >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null; }; \
		else echo "chromium not found: install Debian's chromium package for the report test"; fi; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy shared deploy $(wildcard functions/*/main.py)

test: install tools browser lint typecheck
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not emulator"

# Each function's deployable folder under build/stage/ (main.py, the hpsteer package, pinned
# requirements.txt); terraform zips these folders.
stage: install
	$(BIN)/python -m deploy.stage

demo: install
	$(BIN)/hpsteer simulate

benchmark: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache hpsteer-report
