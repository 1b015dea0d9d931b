# hicra: `make demo` (main job on the CPU default) and `make test` (whole suite) set everything up.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-v1
RUN     ?= demo
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-fast lab bench sandbox venv clean-runs strip

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0          # CPU build; a bare `torch` pulls multi-GB CUDA
	$(BIN)/pip install -q -e ".[dev,lab]"
	touch $(STAMP)

venv: $(STAMP)

## demo: build/reuse the sandbox world + tiny model and run the sandbox notebook into runs/$(RUN)/
demo: venv
	$(BIN)/python -m hicra.sandbox
	$(BIN)/papermill notebooks/00_sandbox.ipynb runs/$(RUN)/executed/00_sandbox.ipynb -p run_dir runs/$(RUN) --cwd notebooks

## test: the whole suite (unit, real tokenizers, tiny models, notebooks under papermill)
test: venv
	$(BIN)/python -m pytest -q -ra

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

## lab: JupyterLab on the notebooks
lab: venv
	$(BIN)/jupyter lab notebooks/

## bench: speed figures recorded in the README
bench: venv
	$(BIN)/python bench/bench_tagger.py
	$(BIN)/python bench/bench_metrics.py

sandbox: venv
	$(BIN)/python -m hicra.sandbox

strip: venv
	$(BIN)/nbstripout --keep-output=false notebooks/*.ipynb

clean-runs:
	rm -rf runs/
