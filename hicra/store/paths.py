"""Paths: the repository root, how a relative path is read, and the cache (the lowest floor of the config layers).

Notebooks run from ``notebooks/``, CLIs from anywhere: a relative path in a config is taken from the repository
root, so both mean the same folder. ``weight_files`` keys a cache by a model folder's weights; ``cache_dir``
holds fetched models and sandbox builds.

    from hicra.store.paths import REPO_ROOT, resolve
    resolve("runs/demo")        # <repo>/runs/demo
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve(path) -> Path:
    """Relative paths are taken from the repository root, so notebooks and CLIs agree."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def weight_files(folder) -> list[list]:
    """``[name, size, mtime (s)]`` of a model folder's ``*.safetensors``: what a cached result computed from the
    model is keyed by, so a retrained or rebuilt model at the same path is a new model ([] if no folder)."""
    folder = Path(folder)
    return (
        sorted([f.name, f.stat().st_size, int(f.stat().st_mtime)] for f in folder.glob("*.safetensors"))
        if folder.is_dir()
        else []
    )


def cache_dir() -> Path:
    """``$HICRA_CACHE`` or ``~/.cache/hicra``: where fetched models and built sandboxes live."""
    d = Path(os.environ.get("HICRA_CACHE", Path.home() / ".cache" / "hicra"))
    d.mkdir(parents=True, exist_ok=True)
    return d
