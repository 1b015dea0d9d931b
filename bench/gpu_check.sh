#!/usr/bin/env bash
# The device check, one script (issue #29): on a lent GPU machine (the `device` tool's run), or any CUDA box with
# this checkout. It runs the trainer's real code path on the sandbox model in bf16: a few GRPO and HICRA steps with
# dynamic sampling, the HICRA advantage check on the GPU, throughput against the CPU bench, peak memory; it writes
# one JSON file. No downloads: the shipped warm start (data/sandbox/) travels with the tree, and Python packages the
# machine lacks travel as wheels in .whl/ (carry it), made here beforehand with:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl trl==1.16.0 datasets math-verify latex2sympy2_extended antlr4-python3-runtime==4.13.2 \
#     pyahocorasick gguf reasoning-gym dill multiprocess xxhash pyarrow
# Usage: bash bench/gpu_check.sh [OUT_DIR]      (default: $OUT on the device machine, else runs/gpu_check); <= 8 min.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu_check}}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export HICRA_CACHE="${HICRA_CACHE:-/tmp/hicra-cache}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
timeout 480 python3 bench/gpu_check.py "$out/gpu_check.json"
