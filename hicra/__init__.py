"""hicra: planning tokens, hierarchy dynamics and hierarchy-aware RL (HICRA, arXiv 2509.03646).

The top level holds what a user runs, ``python -m hicra.<step> CONFIG`` (or its notebook, ``notebooks/``): ``train``,
``evaluate`` (Table 1), ``figures`` (Fig 3, 5/6/8), ``error_analysis`` (Fig 4), ``forks`` (Fig 9), ``grams``
(strategic-gram construction), ``sandbox``, ``study``, ``regimes``, ``heldout``, ``pipeline`` (every figure), ``serve``,
``models``, ``data``, ... The internals are grouped by floor, each floor importing only the ones below it:
``hicra.store`` (files), ``hicra.method`` (tagger, advantage, registry, metrics), ``hicra.training`` (the trainer),
``hicra.stepkit`` (what every step is made of), ``hicra.orchestration`` (the pipeline's internals) and
``hicra.analysis`` (looking at results); docs/library.md draws them. The old flat names (``hicra.tagger``) still
import, with a DeprecationWarning (``hicra._moved``).
"""

import importlib

from hicra import _moved

__version__ = "0.5.0"  # the last release in CHANGELOG.md (git tag v0.5.0); pyproject.toml says the same

_moved.install()


def __getattr__(name: str):
    """``hicra.tagger`` as an attribute, where old code reached it after ``import hicra`` alone: the moved module."""
    if f"hicra.{name}" in _moved.MOVED:
        return importlib.import_module(f"hicra.{name}")
    raise AttributeError(f"module 'hicra' has no attribute {name!r}")
