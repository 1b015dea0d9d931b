"""Shipped accelerate configs: each parses with accelerate's own loader and says what its header promises."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
EXPECT = {
    "single_gpu": ("NO", 1, 1, None),
    "ddp": ("MULTI_GPU", 8, 1, None),
    "zero2": ("DEEPSPEED", 8, 1, 2),
    "zero3": ("DEEPSPEED", 8, 1, 3),
    "multi_node": ("DEEPSPEED", 16, 2, 3),
    "cpu_2proc": ("MULTI_GPU", 2, 1, None),  # torchrun's launcher; the recipe's use_cpu makes it gloo (see file)
}


def test_every_scale_ships():
    assert {p.stem for p in CONFIGS} == set(EXPECT)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_parses_each_config(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    cfg = load_config_from_file(str(path))
    assert isinstance(cfg, ClusterConfig)
    kind, procs, machines, zero = EXPECT[path.stem]
    assert cfg.distributed_type.value == kind and cfg.num_processes == procs and cfg.num_machines == machines
    if zero is not None:
        assert cfg.deepspeed_config["zero_stage"] == zero
    assert not cfg.use_cpu  # use_cpu here would make accelerate start one process (cpu_2proc.yaml says why)
    # the usage line in the header names recipes that exist
    for recipe in re.findall(r"configs/[\w./]+\.yaml", path.read_text()):
        assert (ROOT / recipe).exists(), recipe


def test_the_gpu_environment_resolves_for_linux_x86_64(tmp_path):
    """The GPU lock's inputs (pyproject.toml with its gpu, dev, embed and lab extras, requirements/gpu.in: vLLM 0.31,
    TRL 1.16 with its vllm extra) still resolve together for a linux x86_64 GPU box against the registry, with uv's
    resolver, as `make lock` resolves them: a conflict fails here before a user's conda env create does."""
    import shutil
    import subprocess
    import sys

    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is installed by the Makefile's venv"
    res = subprocess.run(
        [uv, "pip", "compile", "pyproject.toml", "requirements/gpu.in", "--extra", "gpu", "--extra", "dev"]
        + ["--extra", "embed", "--extra", "lab", "--python-platform", "x86_64-manylinux_2_28"]
        + ["--python-version", "3.11", "-o", str(tmp_path / "gpu.txt"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    pins = dict(
        line.split("==", 1)
        for line in (tmp_path / "gpu.txt").read_text().splitlines()
        if "==" in line and not line.startswith(("#", " "))
    )
    assert pins["vllm"] == "0.31.0" and pins["trl"].startswith("1.16.")
    for name in ("torch", "transformers", "peft", "deepspeed", "accelerate"):
        assert name in pins, name
