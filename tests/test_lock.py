"""The locked environments: the venv is the CPU lock, package for package; the GPU lock is what environment.yml
installs and holds the combination TRL 1.16 supports. Issue: exact reruns need one environment, not a resolution
of open ranges on the day."""

import re
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _pins(path: Path) -> dict:
    """{name: version} of a compiled lock, and every pin's hashes (a pin without one would be installed unchecked)."""
    text = path.read_text()
    pins = {}
    for block in re.split(r"\n(?=\S)", text):
        m = re.match(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", block)
        if m:
            assert "--hash=sha256:" in block, f"{path.name}: {m.group(1)} has no hash"
            pins[re.sub(r"\[.*\]", "", m.group(1)).lower().replace("_", "-")] = m.group(2)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_venv_is_the_cpu_lock():
    """pip freeze of the interpreter running the suite equals requirements/cpu.txt, package for package (the project
    itself, installed editable, aside): two venvs built from one commit compute alike."""
    lock = {_norm(k): v for k, v in _pins(ROOT / "requirements" / "cpu.txt").items()}
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True)
    frozen = {}
    for line in out.stdout.splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            frozen[_norm(name)] = version
    frozen = {k: v for k, v in frozen.items() if k not in ("hicra", "pip")}  # pip: the venv's own
    missing = sorted(set(lock) - set(frozen))
    extra = sorted(set(frozen) - set(lock))
    changed = sorted(f"{k} {frozen[k]} (lock {lock[k]})" for k in set(lock) & set(frozen) if lock[k] != frozen[k])
    assert not (missing or extra or changed), (
        f"the venv is not the lock (make venv installs it; make lock refreshes it): "
        f"missing {missing}, not in the lock {extra}, other versions {changed}"
    )


def _declared(extras) -> list[Requirement]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for e in extras:
        reqs += project["optional-dependencies"][e]
    return [Requirement(r) for r in reqs]


def test_each_lock_satisfies_pyproject():
    """Every dependency pyproject.toml declares (and the extras each lock carries) is pinned in the lock at a version
    inside the declared range: a floor raised in pyproject without `make lock` fails here."""
    for lock, extras in (("cpu.txt", ("dev", "embed", "lab")), ("gpu.txt", ("gpu", "dev", "embed", "lab"))):
        pins = {_norm(k): v for k, v in _pins(ROOT / "requirements" / lock).items()}
        for req in _declared(extras):
            name = _norm(req.name)
            assert name in pins, f"{lock}: {req.name} is declared but not locked (make lock)"
            version = pins[name].split("+")[0]
            assert req.specifier.contains(version, prereleases=True), f"{lock}: {name} {pins[name]} not in {req}"


def test_the_locks_hold_the_two_stacks():
    """CPU: torch's CPU build; GPU: CUDA torch 2.13.0, vLLM 0.31.0, TRL 1.16, transformers below 5.18 (vLLM's pin),
    deepspeed; environment.yml installs exactly the GPU lock, hash-checked."""
    cpu, gpu = _pins(ROOT / "requirements" / "cpu.txt"), _pins(ROOT / "requirements" / "gpu.txt")
    assert cpu["torch"] == "2.13.0+cpu" and not any(k.startswith("nvidia") for k in cpu)
    assert gpu["torch"] == "2.13.0" and gpu["vllm"] == "0.31.0" and gpu["trl"].startswith("1.16.")
    major, minor = map(int, gpu["transformers"].split(".")[:2])
    assert (major, minor) < (5, 18) and "deepspeed" in gpu and any(k.startswith("nvidia-") for k in gpu)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pip == ["--require-hashes", "-r requirements/gpu.txt"]
    assert "python=3.11" in env["dependencies"]
