"""Notebook parameters are a contract: an unknown name is refused before any work, with the nearest declared one.

papermill injects ``-p name value`` / ``-y`` / a pipeline step's ``params`` as a cell tagged ``injected-parameters``
right after the notebook's ``parameters`` cell, and only *warns* about names the notebook does not declare, so
``papermill 02_train.ipynb out.ipynb -p seeed 3`` would run seed 0 and exit 0. A notebook builds its config with
``from_params(Config, globals())`` from this module: it reads the kernel's own input history (IPython's ``In``),
finds papermill's injected cell and the parameters cell before it, and raises one line naming each unknown
parameter and the declared name nearest to it, then builds the config as ``hicra.stepkit.steps.from_params`` does.

    from hicra.stepkit.nbparams import from_params
    cfg = from_params(TrainStepConfig, globals())   # UnknownParameter: notebook parameter 'seeed' ... 'seed'?

Stepping through in JupyterLab (no injected cell) checks nothing: the parameters cell is edited in place.
"""

from __future__ import annotations

import ast

from hicra.stepkit.steps import from_params as _from_params
from hicra.store.names import nearest

INJECTED_HEADER = "# Parameters"  # papermill's comment on the cell it injects (its default ``comment``)


class UnknownParameter(ValueError):
    """A parameter the notebook does not declare; IPython shows only this line, not a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook: the lines shown instead of the traceback
        return [f"UnknownParameter: {self}"]


def refuse_unknown(given, declared, where: str = "this notebook") -> None:
    """Raise UnknownParameter (one line) if ``given`` names anything ``declared`` lacks."""
    unknown = [n for n in given if n not in set(declared)]
    if not unknown:
        return
    said = []
    for n in unknown:
        near = nearest(n, declared)
        said.append(f"'{n}'" + (f" (did you mean '{near}'?)" if near else ""))
    raise UnknownParameter(
        f"unknown parameter{'s' if len(said) > 1 else ''} {', '.join(said)}: {where} declares "
        f"{', '.join(sorted(declared))}"
    )


def _assigned(source: str) -> list[str] | None:
    """Names assigned at the top level of a cell (None when the cell is not valid Python)."""

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)]


def injected(history: list[str]) -> tuple[list[str], list[str]] | None:
    """(injected names, declared names) from a kernel's input history: papermill's last injected cell and the cell
    run just before it (the ``parameters`` cell); None when nothing was injected."""
    for k in range(len(history) - 1, 0, -1):
        src = history[k]
        if src.lstrip().splitlines()[:1] == [INJECTED_HEADER]:
            given, declared = _assigned(src), _assigned(history[k - 1])
            if given is not None and declared:
                return given, declared
    return None


def check(namespace: dict, where: str = "this notebook") -> None:
    """Refuse the names papermill injected into the kernel whose globals are ``namespace`` and that its
    parameters cell does not declare."""
    found = injected(list(namespace.get("In") or []))
    if found:
        refuse_unknown(*found, where=where)


def from_params(cls, namespace: dict):
    """``hicra.stepkit.steps.from_params`` after the unknown-parameter check: a notebook's config from its globals."""
    check(namespace)
    return _from_params(cls, namespace)
