"""Old import names of the modules grouped by floor (issue #36 item 6): ``hicra.tagger`` is ``hicra.method.tagger``.

Code written before the move keeps working: importing an old name (``import hicra.tagger``, ``from hicra import
tagger``, ``from hicra.tagger import PlanningTagger``, a pickle that names ``hicra.train_config``) returns the very
module object of the new name, so ``monkeypatch.setattr(hicra.tagger, ...)`` patches the real module, and says once
per process, with a ``DeprecationWarning``, where the module lives now. The old names go in 0.7.0 (``REMOVED_IN``).

One ``sys.meta_path`` finder does it (installed by ``hicra/__init__.py``), so the top level holds no shim files: the
modules there are the ones a user runs (``python -m hicra.<step>``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

REMOVED_IN = "0.7.0"

_FLOORS = {
    "store": "io llm paths runfolder sgfile",
    "method": "advantage alpha dynamics knobs methods metrics stats tagger",
    "training": "decode dynamic_sampling finite generate ranges resume rewards run_dir sft speed step_stats "
    "train_config trainer",
    "stepkit": "cli config nbclean nbparams plotting steps",
    "analysis": "inside show study_figures tour",
    "orchestration": "profiles rehearsal report runner",
}
MOVED = {f"hicra.{m}": f"hicra.{floor}.{m}" for floor, names in _FLOORS.items() for m in names.split()}
# names a module offered before it was split, now in a module above its floor: reached by name through here, so
# the module itself imports nothing above its floor (``hicra.stepkit.config.SandboxStepConfig``)
OLD_ATTRIBUTES = {"hicra.stepkit.config": {"SandboxStepConfig": "hicra.sandbox.config"}}


def old_attribute(module: str, name: str):
    """``module``'s old attribute ``name`` from the module it lives in now (OLD_ATTRIBUTES), said once with a
    ``DeprecationWarning``; an AttributeError for any other name."""
    new = OLD_ATTRIBUTES.get(module, {}).get(name)
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(
        f"{module}.{name} is now {new}.{name}: import it from there (the old name goes in hicra {REMOVED_IN})",
        DeprecationWarning,
        stacklevel=3,  # the line that asked for it
    )
    return getattr(importlib.import_module(new), name)


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and loads it as the module of its new name (the same object, never a second copy)."""

    def __init__(self):
        self._specs = {}  # old name -> the real module's own spec, put back after the import machinery sets ours

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} is now {new}: import it by its new name (the old one goes in hicra {REMOVED_IN})",
            DeprecationWarning,
            stacklevel=2,  # the importer's line: the warnings module skips importlib's own frames
        )
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._specs.pop(module.__spec__.name)  # the module ran already, under its new name


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once: an old name is always the new module, even where a stale
    ``hicra/tagger.py`` is still on the path (an editable install of an older checkout, a copied-over tree)."""
    if not any(isinstance(f, _OldNames) for f in sys.meta_path):
        sys.meta_path.insert(0, _OldNames())
