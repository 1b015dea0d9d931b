"""A method's knob: one option with its name, type, default, help and range rule, declared once (issue #36).

Why: a method's options used to be written out in several places (a config field, its default, its help, a range
check in the config, another in the controller that reads it). A ``Knob`` says all of it once; the method registry
(``hicra.method.methods``) collects the knobs of every method, and the training config, the CLI, ``--help`` and the
controllers (``hicra.method.alpha``) read them from there. Pure Python: no torch, no other ``hicra`` module.

    from hicra.method.knobs import Knob, finite
    WIDTH = Knob("my_width", int, 3, "tokens per window", lambda v, cfg: isinstance(v, int) and v >= 1, ">= 1")
    WIDTH.check(0)      # ValueError: my_width must be >= 1; got 0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any


def finite(x) -> bool:
    """A real number (bool excluded) that is neither NaN nor infinite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def alpha_range(v, cfg) -> bool:
    """An amplification α: finite, ≥ 0 and < 1, unless the run sets ``allow_sign_flip`` (α ≥ 1 turns negative
    planning advantages positive). The rule of ``hicra_alpha`` and of the adaptive controller's ``alpha_max``."""
    return finite(v) and v >= 0 and (v < 1 or bool(getattr(cfg, "allow_sign_flip", False)))


@dataclasses.dataclass(frozen=True)
class Knob:
    """One option of a method: ``name`` (a recipe key and a ``--flag``), ``type``, ``default``, ``help``, and its
    range rule ``ok(value, config) -> bool`` (``config``: the run's settings, e.g. for ``allow_sign_flip``; may be
    None) with the allowed range in words (``allowed``)."""

    name: str
    type: Any
    default: Any
    help: str
    ok: Callable[[Any, Any], bool] | None = None
    allowed: str = ""

    def check(self, value, cfg=None) -> None:
        """Refuse ``value`` outside this knob's range, naming the knob, the range and the value (None: unset)."""
        if value is not None and self.ok is not None and not self.ok(value, cfg):
            raise ValueError(f"{self.name} must be {self.allowed}; got {value!r}")
