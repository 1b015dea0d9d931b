# hicra: `make demo` (main job on the CPU default) and `make test` (whole suite) set everything up.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-v2
RUN     ?= demo
export PYTHONUNBUFFERED := 1

.PHONY: demo figures smollm study test test-fast lint lab bench sandbox venv clean-runs strip

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0          # CPU build; a bare `torch` pulls multi-GB CUDA
	$(BIN)/pip install -q -e ".[dev,lab,embed]"
	touch $(STAMP)

venv: $(STAMP)

## demo: the sandbox pipeline (build, strategic grams, GRPO / HICRA / entropy_reg training, Fig 3/4/5/9, Table 1)
demo: venv
	$(BIN)/python -m hicra.pipeline --profile sandbox

## figures: regenerate every figure and table of the sandbox profile (skips steps whose inputs did not change)
figures: venv
	$(BIN)/python -m hicra.pipeline --profile sandbox

## smollm: the real-model analyses on CPU (SmolLM2-135M-Instruct: strategic grams, fork tokens, GSM8K/MATH500 eval)
smollm: venv
	$(BIN)/python -m hicra.pipeline --profile smollm-cpu

METHODS ?= grpo hicra
STEPS   ?= 100
NB      := $(BIN)/papermill --cwd notebooks --log-output

## study: GRPO and HICRA (add METHODS="grpo hicra entropy_reg"), 5 seeds, 100 steps, final validation accuracy with 95% CIs (figures/$(STUDY)_final_accuracy.csv)
## (STUDY_JOBS runs at once, one thread each; each run's log is runs/$(STUDY)/train-<method>-s<seed>.log)
## the first sandbox: make study RECIPE=configs/sandbox_v1.yaml STUDY=study_v1 STEPS=60
SEEDS ?= 0 1 2 3 4
STUDY_JOBS ?= 2
RECIPE ?= configs/sandbox.yaml
STUDY ?= study
study: venv
	$(BIN)/python -m hicra.sandbox
	mkdir -p runs/$(STUDY)/executed
	for s in $(SEEDS); do for m in $(METHODS); do echo $$m $$s; done; done | OMP_NUM_THREADS=1 xargs -P $(STUDY_JOBS) -n 2 \
	  sh -c 'd=runs/$(STUDY)/train-$$0-s$$1; [ -f $$d/final/config.json ] && exit 0; \
	    $(BIN)/python -m hicra.train $(RECIPE) --method $$0 --seed $$1 --max_steps $(STEPS) --run_dir $$d --resume true \
	      > $$d.log 2>&1 && echo "[study] $$0 seed $$1: $$(tail -n 1 $$d.log)" || { echo "[study] $$0 seed $$1 FAILED, see $$d.log"; exit 1; }'
	$(NB) notebooks/03_dynamics.ipynb runs/$(STUDY)/executed/03_dynamics.ipynb -p run_dir runs/$(STUDY) -p tag $(STUDY) \
	  -y "runs: [$(foreach s,$(SEEDS),$(foreach m,$(METHODS),runs/$(STUDY)/train-$(m)-s$(s),))]"
	cp runs/$(STUDY)/final_accuracy.csv figures/$(STUDY)_final_accuracy.csv

## lint: ruff (rules and line length 120 in pyproject.toml); `.ci/run` runs it before the tests
lint: venv
	$(BIN)/ruff check hicra tests bench

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
	$(BIN)/python bench/bench_overhead.py
	$(BIN)/python bench/bench_mining.py
	$(BIN)/python bench/bench_rl.py

sandbox: venv
	$(BIN)/python -m hicra.sandbox

strip: venv
	$(BIN)/nbstripout --keep-output=false notebooks/*.ipynb

clean-runs:
	rm -rf runs/
