# labkd: a notebook lab for knowledge distillation.  `make help` lists the targets.
# Everything lives in .venv; nothing is registered in your home folder.

PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
LAB_ARGS ?=
PYTEST_ARGS ?=
# Test processes: pytest-xdist's `auto` is one per CPU core (TEST_WORKERS=0 runs them in this process).
TEST_WORKERS ?= auto
RUN_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install lab test test-browser report report-fast clean

help: ## list the targets
	@echo "labkd make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 22
	@echo "variables: PY=$(PY) (python used to create $(VENV)), LAB_ARGS, PYTEST_ARGS, TEST_WORKERS, RUN_ARGS"

install: $(STAMP) ## create .venv and install labkd with its dev tools (once; again after pyproject.toml changes)

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

lab: install ## start JupyterLab on notebooks/ (e.g. make lab LAB_ARGS=--no-browser)
	$(BIN)/jupyter lab notebooks/ $(LAB_ARGS)

test: install ## unit, notebook (fast mode) and browser tests; browser tests skip, saying why, without Chromium
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=10 $(PYTEST_ARGS)

test-browser: install ## install Debian's chromium if missing (needs root), then run the browser tests
	@command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

report: install ## run every notebook in full mode into reports/ (HTML + index.html)
	$(BIN)/labkd run $(RUN_ARGS)

report-fast: install ## the same in fast mode (small data, few epochs)
	$(BIN)/labkd run --fast $(RUN_ARGS)

clean: ## remove reports/ and executed notebooks (keeps .venv and the data)
	rm -rf reports notebooks/executed notebooks/.ipynb_checkpoints .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
