# The two README commands: `make figures` (main job) and `make test`.
# Each creates .venv from pyproject.toml on first use (only Python 3.11+ and pip needed).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dsrepro-installed
PROFILE ?= quick

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,hf,lab]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

.PHONY: install figures test lab notebooks benchmarks clean-runs
install: $(STAMP)

figures: $(STAMP)  ## regenerate every figure, table and figures/REPORT.md (PROFILE=quick|full)
	$(BIN)/dsrepro all --profile $(PROFILE)

test: $(STAMP)  ## the test suite (CPU, < 10 minutes)
	$(BIN)/pytest -q -n 2 --durations=15

lab: $(STAMP)  ## JupyterLab on notebooks/ (jupytext pairs each .py script with its .ipynb: edit either)
	$(BIN)/jupyter lab notebooks/

notebooks: $(STAMP)  ## bring each notebooks/*.ipynb in line with its edited .py script (or the other way round)
	$(BIN)/jupytext --sync notebooks/*.py

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/speculative.py

clean-runs:
	rm -rf runs
