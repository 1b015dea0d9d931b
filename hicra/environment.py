"""The environment a run computed in: python, library versions, threads, CPU, code commit.

Why: a run is exact only within one set of library versions (study run 4 on transformers 5.24 and a rerun on 5.25
differed by up to 4.3 points per seed in the same recipe), and the sandbox's SFT depends on torch's thread count.
So every run records where it ran (``params.json``'s ``environment``), and analyses that pair runs compare the
records' keys (``environment_key``) before they pair: a difference is named, not averaged over.

    python -m hicra.environment          # this interpreter's record, as JSON
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets", "numpy", "peft", "math-verify")
ROOT = Path(__file__).resolve().parent.parent
# what must match for two runs' numbers to be comparable to the digit (commit and CPU model are recorded, not keyed:
# the same code at another commit, or the same wheels on another CPU model, are reported as differences by `compare`)
KEYED = ("python", "packages", "torch_threads")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git() -> dict:
    """The checkout's commit and whether tracked files differ from it (None outside a git checkout)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def _threads() -> int | None:
    """torch's intra-op thread count, where torch is already imported (a record never imports it)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def record() -> dict:
    """This process's environment: python, the versions of PACKAGES, torch threads, CPU model, git commit and dirty
    flag, and ``key``, a short hash of the fields that decide whether two runs compute alike (KEYED)."""
    rec = {
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
        "torch_threads": _threads(),
        "cpu": _cpu_model(),
        **_git(),
    }
    rec["key"] = environment_key(rec)
    return rec


def environment_key(rec: dict) -> str:
    """A 12-hex hash of a record's KEYED fields (python, package versions, torch threads)."""
    blob = json.dumps({k: rec.get(k) for k in KEYED}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def differences(a: dict, b: dict) -> list[str]:
    """What differs between two records' KEYED fields, one phrase each (``transformers 5.24.0 vs 5.25.0``)."""
    out = []
    for k in KEYED:
        x, y = a.get(k), b.get(k)
        if k == "packages":
            x, y = x or {}, y or {}
            out += [f"{p} {x.get(p)} vs {y.get(p)}" for p in sorted(set(x) | set(y)) if x.get(p) != y.get(p)]
        elif x != y:
            out.append(f"{k} {x} vs {y}")
    return out


def main(argv=None):
    import argparse

    argparse.ArgumentParser(prog="python -m hicra.environment", description=__doc__.split("\n\n")[0]).parse_args(argv)
    print(json.dumps(record()), flush=True)


if __name__ == "__main__":
    main()
