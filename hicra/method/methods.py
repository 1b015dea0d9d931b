"""The method registry: every training method's name, colour, knobs, per-step state and loss, without torch (§3-§4).

A method is one registration (``declare``). This module holds what every floor reads: the trainer's method list,
config fields and checks, the entropy pass, the per-step state the trainer updates, the TRL loss settings a method
implies, the study's arms (``study_arms``), Fig 5's methods (``fig5_methods``), the figures' colours
(``hicra.stepkit.plotting.PALETTE``), the docs' method table (``method_table``) and ``--help``. It imports nothing
heavy, so a figure, the study's analysis or a ``--help`` can list the methods without loading torch. The token rules
themselves (torch code) live in ``hicra.method.advantage`` and attach to their method there (``register``), so
``REGISTRY[name].rule`` is set once ``hicra.method.advantage`` is imported.

A method declares:

* ``knobs``: its own options (``Knob``: name, type, default, help, range rule). A knob is a recipe key and a
  ``--flag`` of ``python -m hicra.train``; its value reaches the token rule in ``ctx[name]``. The shipped knobs are
  also ``HICRAConfig`` fields (``knob_field``); a knob of a method registered later lives in ``HICRAConfig.knobs``.
* ``state``: a factory ``fn(config) -> object`` of its per-step state: the trainer calls ``obj.update(line)`` with
  each step's metrics line (and, on resume, with each line kept), logs ``obj.state()`` in the next line and hands
  it to the rule's ``ctx`` (``hicra_adaptive``'s α: ``hicra.method.alpha.AdaptiveAlpha``).
* ``loss``: TRL GRPOConfig fields it sets where the recipe leaves them unset (``entropy_reg``: ``entropy_coef``; the
  fields a method may set: ``hicra.training.train_config.LEFT_TO_METHOD``).

    from hicra.method.methods import REGISTRY, METHOD_COLOURS, study_arms, fig5_methods
    REGISTRY["hicra"].needs_sg          # True: it needs a strategic-gram file
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hicra.method.alpha import ADAPTIVE_KNOBS, AdaptiveAlpha
from hicra.method.knobs import Knob, alpha_range, finite

DEFAULT_ALPHA = 0.2  # the paper's alpha: the one default of hicra_alpha, and the arm ``hicra`` (hicra.runinfo)


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method: its name, line colour, whether it needs a strategic-gram file (``needs_sg``), the
    top-entropy share its gate keeps (``gate_share``: it needs the completions' token entropies), whether it
    re-weights GRPO's advantage per token with an α (``token_rule``: known without torch, so a run's α is read
    right by code that never imports hicra.method.advantage), that rule (None: GRPO's (B,) advantage as it is), its
    ``knobs``, its per-step ``state`` factory, its ``loss`` settings (TRL fields -> values), its seeds in the
    full study (``study_seeds``, 0: not a study arm), whether Fig 5 draws it (``fig5``), and its docs row
    (``what``, ``trl``)."""

    name: str
    colour: str
    needs_sg: bool = False
    gate_share: float | None = None
    token_rule: bool = False
    rule: Callable | None = None
    knobs: tuple[Knob, ...] = ()
    state: Callable[[Any], Any] | None = None
    loss: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    study_seeds: int = 0
    fig5: bool = False
    what: str = ""
    trl: str = ""


REGISTRY: dict[str, Method] = {}


def declare(
    name: str,
    colour: str,
    needs_sg: bool = False,
    gate_share: float | None = None,
    token_rule: bool = False,
    *,
    rule: Callable | None = None,
    knobs: tuple[Knob, ...] = (),
    state: Callable[[Any], Any] | None = None,
    loss: Mapping[str, Any] | None = None,
    study_seeds: int = 0,
    fig5: bool = False,
    what: str = "",
    trl: str = "",
) -> Method:
    """Declare method ``name``: one call gives it everything it needs (its token rule, if ``token_rule`` and not
    given here, attaches later with ``hicra.method.advantage.register``). A knob name another method declared already
    must be that same knob."""
    if name in REGISTRY:
        raise ValueError(f"method {name!r} is registered twice")
    have = all_knobs()
    for k in knobs:
        if k.name in have and have[k.name] != k:
            raise ValueError(f"method {name!r}: knob {k.name!r} is declared by another method with other settings")
    REGISTRY[name] = Method(
        name,
        colour,
        needs_sg,
        gate_share,
        token_rule or rule is not None,
        rule,
        tuple(knobs),
        state,
        dict(loss or {}),
        study_seeds,
        fig5,
        what,
        trl,
    )
    return REGISTRY[name]


def attach_rule(name: str, rule: Callable) -> None:
    """Give a declared method its token rule ``fn(A, plan, completion_mask, gate, ctx) -> (advantages, selected)``."""
    if name not in REGISTRY:
        raise ValueError(f"method {name!r} is not declared; one of {', '.join(REGISTRY)}")
    if REGISTRY[name].rule is not None:
        raise ValueError(f"method {name!r} is registered twice")
    REGISTRY[name] = dataclasses.replace(REGISTRY[name], rule=rule, token_rule=True)


def all_knobs() -> dict[str, Knob]:
    """Every registered method's knobs by name (a knob several methods share appears once)."""
    return {k.name: k for m in REGISTRY.values() for k in m.knobs}


def study_arms() -> dict[str, int]:
    """The full study's arms and their seed counts, in registration order (``study_seeds`` of each method)."""
    return {n: m.study_seeds for n, m in REGISTRY.items() if m.study_seeds}


def fig5_methods() -> tuple[str, ...]:
    """The methods Fig 5 compares (the paper's), in registration order."""
    return tuple(n for n, m in REGISTRY.items() if m.fig5)


def method_table() -> str:
    """The docs' method table (docs/training.md), one row per registered method with a ``what``."""
    rows = [f"| `{n}` | {m.what} | {m.trl} |" for n, m in REGISTRY.items() if m.what]
    return "\n".join(["| method | what | TRL knobs |", "|---|---|---|", *rows])


def knob_field(name: str):
    """A ``dataclasses.field`` for the shipped knob ``name`` (its default and help from its declaration): the
    config class states the knob's type only, never its default again."""
    k = all_knobs()[name]
    return dataclasses.field(default=k.default, metadata={"help": k.help})


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
# the knobs of the shipped methods (one declaration each: name, default, help, range)

ALPHA = Knob(
    "hicra_alpha",
    float,
    DEFAULT_ALPHA,
    "HICRA amplification alpha, in [0, 1)",
    alpha_range,
    "in [0, 1) (alpha >= 1 flips the sign of negative planning advantages; set allow_sign_flip true to permit it)",
)
SIGN_FLIP = Knob(
    "allow_sign_flip",
    bool,
    False,
    "permit hicra_alpha >= 1, where A + alpha|A| turns negative planning advantages positive",
)
GATE_SHARE = Knob(
    "gate_share",
    float | None,
    None,
    "top-entropy share gated by hicra_gated / hicra_verl (None: 0.2 / 0.3, their sources' values)",
    lambda v, c: finite(v) and 0 < v <= 1,
    "in (0, 1]",
)
VERL_FILTER = Knob(
    "verl_filter", bool, True, "hicra_verl: re-weight only correct responses longer than their group's mean"
)
# --------------------------------------------------------------------------
# the methods this project ships: GRPO's advantage for the first, a token rule (hicra.method.advantage) for the hicra
# family, a loss setting for entropy_reg and fork_tokens. Registration order is the order of figures' legends.

declare(
    "grpo",
    "#1f77b4",
    study_seeds=10,
    fig5=True,
    what="GRPO with DAPO clip-higher, token-level loss",
    trl="`epsilon 0.2`, `epsilon_high 0.28`, `loss_type dapo`",
)
declare(
    "hicra",
    "#d62728",
    needs_sg=True,
    token_rule=True,
    knobs=(ALPHA, SIGN_FLIP),
    study_seeds=10,
    fig5=True,
    what=f"+ planning-token advantage `A + α·|A|` (α = `hicra_alpha`, {DEFAULT_ALPHA:g}), planning mask from `sg_file`",
    trl="advantages of shape (B, T)",
)
declare(
    "entropy_reg",
    "#2ca02c",
    loss={"entropy_coef": 0.005},  # GRPO + TRL's entropy bonus
    fig5=True,
    what="+ entropy bonus",
    trl="`entropy_coef` (default 0.005)",
)
declare(
    "fork_tokens",
    "#9467bd",
    loss={"top_entropy_quantile": 0.2},  # GRPO on the top-20 % entropy tokens
    fig5=True,
    what="gradients on the top-20 % entropy tokens only (80/20)",
    trl="`top_entropy_quantile 0.2`",
)
declare(
    "hicra_gated",
    "#ff7f0e",
    needs_sg=True,
    gate_share=0.2,
    token_rule=True,
    knobs=(ALPHA, SIGN_FLIP, GATE_SHARE),
    study_seeds=5,
    what="`A + α·|A|` only on planning tokens that are also among the step's top-20 % entropy tokens (`gate_share`)",
    trl="one extra no-grad forward for the entropies",
)
declare(
    "hicra_verl",
    "#8c564b",
    gate_share=0.3,
    token_rule=True,
    knobs=(ALPHA, GATE_SHARE, VERL_FILTER),
    study_seeds=5,
    what="the VeRL-style rule (TRL PR #4997 as issue #12 describes it): `A·(1 + α)` on the top-30 % entropy "
    "tokens of responses that are correct and longer than their group's mean (`verl_filter`); no strategic grams",
    trl="one extra no-grad forward",
)
declare(
    "hicra_adaptive",
    "#e377c2",
    needs_sg=True,
    token_rule=True,
    knobs=(ALPHA, SIGN_FLIP, *ADAPTIVE_KNOBS),
    state=AdaptiveAlpha.from_config,
    study_seeds=5,
    what="`A + α·|A|` with α set each step from the logged hierarchy state (`hicra.method.alpha`): 0 while execution "
    "perplexity still falls, up to `alpha_max` 0.4 once it plateaus, less if planning entropy collapses below "
    "half its start",
    trl="logged as `alpha`, `alpha_plateau`, `alpha_guard`",
)
declare(
    "hicra_pr4997",
    "#17becf",
    needs_sg=True,
    gate_share=0.3,
    token_rule=True,
    knobs=(ALPHA, SIGN_FLIP, GATE_SHARE),
    study_seeds=5,
    what="TRL PR #4997's with-grams rule, labelled as the PR's: `A·(1 + α·sign A)` (= `A + α·|A|`) on planning "
    "tokens united with the top-30 % entropy tokens of correct, longer-than-mean responses",
    trl="one extra no-grad forward",
)
