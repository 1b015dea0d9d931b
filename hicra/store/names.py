"""The valid name nearest to a mistyped one: the "did you mean" of every error that refuses a name.

Why here: errors on every floor suggest a name (the trainer's method and sampler, a notebook parameter, a step's
option, a dataset, a model), and one rule should decide what counts as near. The bottom floor is the one every floor
may import, so the rule lives here once instead of a difflib call in each module.

How: difflib's similarity ratio, the closest name at or above ``cutoff`` (0.6, difflib's default)::

    python -c "from hicra.store.names import hint; print(hint('hicar', ['grpo', 'hicra']))"   #  (did you mean 'hicra'?)
"""

from __future__ import annotations

import difflib


def nearest(name, valid, cutoff: float = 0.6) -> str | None:
    """The name of ``valid`` nearest to ``name`` (difflib's ratio >= ``cutoff``), or None when none is near."""
    near = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=cutoff)
    return near[0] if near else None


def hint(name, valid, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the nearest valid name, ``""`` where none is near: the tail of an error line."""
    near = nearest(name, valid, cutoff)
    return f" (did you mean {near!r}?)" if near else ""
