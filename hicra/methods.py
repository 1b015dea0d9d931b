"""The method registry: every training method's name, colour and needs, without torch (paper §3-§4).

A method is one registration. This module holds what every floor reads: the trainer's method list and config
checks, the entropy pass, the study's arms, the figures' colours (``hicra.plotting.PALETTE``) and ``--help``.
It imports nothing heavy, so a figure, the study's analysis or a ``--help`` can list the methods without
loading torch. The token rules themselves (torch code) live in ``hicra.advantage`` and attach to their method
there (``register``), so ``REGISTRY[name].rule`` is set once ``hicra.advantage`` is imported.

    from hicra.methods import REGISTRY, METHOD_COLOURS
    REGISTRY["hicra"].needs_sg          # True: it needs a strategic-gram file
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method: its name, line colour, whether it needs a strategic-gram file (``needs_sg``), the
    top-entropy share its gate keeps (``gate_share``: it needs the completions' token entropies), whether it
    re-weights GRPO's advantage per token with an α (``token_rule``: known without torch, so a run's α is read
    right by code that never imports hicra.advantage), and that rule (None: GRPO's (B,) advantage as it is)."""

    name: str
    colour: str
    needs_sg: bool = False
    gate_share: float | None = None
    token_rule: bool = False
    rule: Callable | None = None


REGISTRY: dict[str, Method] = {}
DEFAULT_ALPHA = 0.2  # the paper's alpha: HICRAConfig.hicra_alpha's default, and the arm ``hicra`` (hicra.runinfo)


def declare(
    name: str, colour: str, needs_sg: bool = False, gate_share: float | None = None, token_rule: bool = False
) -> Method:
    """Declare method ``name`` (its token rule, if ``token_rule``, attaches later with ``hicra.advantage.register``)."""
    if name in REGISTRY:
        raise ValueError(f"method {name!r} is registered twice")
    REGISTRY[name] = Method(name, colour, needs_sg, gate_share, token_rule)
    return REGISTRY[name]


def attach_rule(name: str, rule: Callable) -> None:
    """Give a declared method its token rule ``fn(A, plan, completion_mask, gate, ctx) -> (advantages, selected)``."""
    if name not in REGISTRY:
        raise ValueError(f"method {name!r} is not declared; one of {', '.join(REGISTRY)}")
    if REGISTRY[name].rule is not None:
        raise ValueError(f"method {name!r} is registered twice")
    REGISTRY[name] = dataclasses.replace(REGISTRY[name], rule=rule, token_rule=True)


class _MethodColours(Mapping):
    """Each registered method's colour, read live from ``REGISTRY`` (a method registered later has its colour too)."""

    def __getitem__(self, name: str) -> str:
        return REGISTRY[name].colour

    def __iter__(self) -> Iterator[str]:
        return iter(list(REGISTRY))

    def __len__(self) -> int:
        return len(REGISTRY)


METHOD_COLOURS: Mapping[str, str] = _MethodColours()

# --------------------------------------------------------------------------
# the methods this project ships: GRPO's advantage for the first three, a token rule (hicra.advantage) for the rest

declare("grpo", "#1f77b4")
declare("entropy_reg", "#2ca02c")  # GRPO + TRL's entropy bonus (entropy_coef)
declare("fork_tokens", "#9467bd")  # GRPO on the top-20 % entropy tokens (TRL's top_entropy_quantile)
declare("hicra", "#d62728", needs_sg=True, token_rule=True)
declare("hicra_gated", "#ff7f0e", needs_sg=True, gate_share=0.2, token_rule=True)
declare("hicra_verl", "#8c564b", gate_share=0.3, token_rule=True)
declare("hicra_adaptive", "#e377c2", needs_sg=True, token_rule=True)
declare("hicra_pr4997", "#17becf", needs_sg=True, gate_share=0.3, token_rule=True)
