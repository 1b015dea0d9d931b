# hicra: `make demo` (main job on the CPU default) and `make test` (whole suite) set everything up.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-v5
RUN     ?= demo
export PYTHONUNBUFFERED := 1

.PHONY: lock demo figures smollm study replication regimes regimes-long rehearsal study-alpha test test-fast lint format lab bench sandbox venv clean-runs strip

# The venv installs from a lock: requirements/cpu.txt, every package at an exact version with its hashes (torch
# 2.13.0+cpu among them), compiled from pyproject.toml's dependencies and the dev, embed and lab extras for CPython
# 3.11 on linux x86_64. So two venvs built from one commit are the same, package for package (tested), and a rerun
# computes as the run it repeats did. `make lock` refreshes requirements/cpu.txt and requirements/gpu.txt (the GPU
# box's: CUDA torch as vLLM 0.31 pins it) on purpose; commit them with what they change. uv (pinned) installs in
# parallel, ~1 min. The CPU torch wheel comes from PIP_FIND_LINKS (a wheelhouse here; elsewhere see the README).
# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (this machine) Python never writes .pyc files itself, so
# every import in every test subprocess would recompile (suite 2x slower).
LOCK    := requirements/cpu.txt
UV_VER  := 0.13.9
UV_FL   = $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))
UV_PIP  = $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python $(UV_FL)

$(STAMP): $(LOCK) pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VER)
	$(BIN)/uv pip sync -q --compile-bytecode --require-hashes --python $(BIN)/python $(UV_FL) $(LOCK)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## lock: re-resolve requirements/cpu.txt and requirements/gpu.txt against the registry (exact versions, hashes)
LOCK_ARGS = --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-emit-find-links \
	    --custom-compile-command "make lock" -q
lock: venv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra embed --extra lab -c requirements/cpu.in $(UV_FL) \
	  $(LOCK_ARGS) -o requirements/cpu.txt
	$(BIN)/uv pip compile pyproject.toml requirements/gpu.in --extra gpu --extra dev --extra embed --extra lab \
	  $(LOCK_ARGS) -o requirements/gpu.txt

## demo: the sandbox pipeline (build, strategic grams, GRPO / HICRA / entropy_reg training, Fig 3/4/5/9, Table 1)
demo: venv
	$(BIN)/python -m hicra.pipeline --profile sandbox

## figures: regenerate every figure and table of the sandbox profile (skips steps whose inputs did not change)
figures: venv
	$(BIN)/python -m hicra.pipeline --profile sandbox

## smollm: the real-model analyses on CPU, ~43 min (SmolLM2-135M-Instruct, Gemma 3 270M: grams, claims a/b, 2-shot eval)
smollm: venv
	$(BIN)/python -m hicra.pipeline --profile smollm-cpu

STUDY_JOBS ?= 2
SIZE ?= full
TEST_JOBS ?= auto     # pytest-xdist workers (one per core), one thread each

## study: the pre-registered HICRA study (README), a profile of hicra.pipeline: grpo and hicra x 10 seeds,
## hicra_adaptive / hicra_gated / hicra_verl x 5, 100 steps each (~90 min on 2 cores, STUDY_JOBS runs at once);
## SIZE=quick: grpo, hicra x 2 seeds x 50 steps (~10 min). Ctrl-C stops cleanly; a rerun keeps finished runs and
## resumes the rest. Other designs, in their own folder: STUDY_RUN=mine PROFILE_ARGS='{"arms": {"grpo": 5}, "steps": 60}'
study: venv
	$(BIN)/python -m hicra.pipeline --profile $(if $(filter quick,$(SIZE)),study-quick,study) --jobs $(STUDY_JOBS) \
	  $(if $(PROFILE_ARGS),--profile_args '$(PROFILE_ARGS)') $(if $(STUDY_RUN),--run $(STUDY_RUN))

## replication: the confirmatory replication of study run 4 on fresh seeds 1000-1009 (grpo, hicra x 10; ~60 min)
replication: venv
	$(BIN)/python -m hicra.pipeline --profile study-replication --jobs $(STUDY_JOBS)

## regimes: the regime map (issue #26): warm starts from strategy- to execution-limited, GRPO and HICRA x 8 seeds x
## 300 steps each; SIZE=quick: 1 seed x 100 steps a regime (a look). Resumable: a rerun keeps finished runs.
regimes: venv
	$(BIN)/python -m hicra.pipeline --profile $(if $(filter quick,$(SIZE)),regimes-quick,regimes) --jobs $(STUDY_JOBS)

## regimes-long: the strategy regime's 16 runs continued from step 300 to 600 (after `make regimes`; ~80 min);
## FROM=scratch trains the same runs 0 -> 600 instead (~160 min), when the map's runs are not on this machine
regimes-long: venv
	$(BIN)/python -m hicra.pipeline --profile regimes-long$(if $(filter scratch,$(FROM)),-scratch) --jobs $(STUDY_JOBS)

## rehearsal: the GPU `paper` profile executed on CPU with SmolLM2-135M + its format adapter (2 CPU processes, tiny sizes, a learning signal; ~28 min, docs/performance.md)
rehearsal: venv
	$(BIN)/python -m hicra.pipeline --profile paper-rehearsal --jobs 1

## study-alpha: the alpha sweep {0, 0.05, 0.1, 0.2, 0.4, 0.8} x 5 seeds in the study's folder (~70 min more)
study-alpha: venv
	$(BIN)/python -m hicra.pipeline --profile study-alpha --jobs $(STUDY_JOBS)

## lint: ruff rules and ruff format (line length 120, pyproject.toml); `.ci/run` runs it before the tests;
## `make format` rewrites the files the format check names
lint: venv
	$(BIN)/ruff check hicra tests bench
	$(BIN)/ruff format --check hicra tests bench

format: venv
	$(BIN)/ruff format hicra tests bench
	$(BIN)/ruff check --fix hicra tests bench

## test: the whole suite (unit, real tokenizers, tiny models, notebooks under papermill), one worker per core
test: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra -n $(TEST_JOBS) --durations=10

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

## lab: JupyterLab on the notebooks (start with 00_tour). The venv carries the `lab` extra (the lock: JupyterLab, ipywidgets).
## PORT (8888), IP (127.0.0.1; 0.0.0.0 to listen on every interface of a remote box, or tunnel:
## ssh -L 8888:127.0.0.1:8888 box), TOKEN (empty: Jupyter makes one and prints the URL with it). No browser is
## opened on a headless box (no DISPLAY / WAYLAND_DISPLAY on Linux); as root it adds --allow-root.
PORT    ?= 8888
IP      ?= 127.0.0.1
TOKEN   ?=
HEADLESS ?= $(if $(or $(DISPLAY),$(WAYLAND_DISPLAY),$(filter Darwin,$(shell uname -s))),,1)
lab: venv
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=$(IP) --ServerApp.port=$(PORT) \
	  $(if $(TOKEN),--IdentityProvider.token=$(TOKEN)) $(if $(HEADLESS),--no-browser) \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

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
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb            # outputs and counts out, cell ids kept

clean-runs:
	rm -rf runs/
