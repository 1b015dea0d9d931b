"""Adaptive α for HICRA: the planning boost follows the measured hierarchy state (method ``hicra_adaptive``).

Why: the paper's two phases suggest that boosting planning tokens matters once execution is consolidated
(phase 2), and that the boost should back off if planning-token entropy collapses (no strategy left to
explore). The constant α = 0.2 ignores both. This controller reads the per-step dynamics the trainer
already logs (``ppl_execution``, ``entropy_planning``) and sets the α of the next step.

The rule (constants fixed before the study, not tuned; W = ``alpha_window`` steps):

* plateau p: the relative drop of execution-token perplexity from the mean of the W steps before the
  last W to the mean of the last W, ``drop``; ``p = clip(1 - drop / plateau, 0, 1)``. A drop of
  ``alpha_plateau`` (0.5 %) or more per window means execution is still consolidating (p = 0); no drop means
  it has plateaued (p = 1). Before 2 W steps of history, p = 0: the run starts as GRPO.
* guard g: planning-token entropy over the last W steps against its mean over the first W,
  ``g = clip(H_last / (alpha_guard * H_first), 0, 1)``: full strength while it stays above half its
  starting level, shrinking to 0 as it collapses.
* ``alpha = alpha_max * p * g`` with ``alpha_max = 0.4`` (twice the paper's α, so the boost in phase 2
  can exceed the constant rule's).

The trainer logs the α it used for each step as ``alpha`` in metrics.jsonl, with ``alpha_plateau`` and
``alpha_guard``; on resume the history is read back from metrics.jsonl, so a resumed run continues the
same α sequence.

    from hicra.method.alpha import AdaptiveAlpha
    ctl = AdaptiveAlpha()
    for rec in metrics_lines: ctl.update(rec)
    ctl.alpha, ctl.state()
"""

from __future__ import annotations

import dataclasses

from hicra.method.knobs import Knob, alpha_range, finite

# the controller's four knobs (recipe keys of method hicra_adaptive; hicra.method.methods registers them): one name and
# one range rule each, read by the training config's checks and by the controller alike
ALPHA_MAX = Knob(
    "alpha_max",
    float,
    0.4,
    "hicra_adaptive: the largest alpha",
    alpha_range,
    "in [0, 1) (set allow_sign_flip true to permit more)",
)
ALPHA_WINDOW = Knob(
    "alpha_window",
    int,
    10,
    "hicra_adaptive: steps per window",
    lambda v, c: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "an integer >= 1",
)
ALPHA_PLATEAU = Knob(
    "alpha_plateau",
    float,
    0.005,
    "hicra_adaptive: relative execution-perplexity drop per window below which execution has plateaued",
    lambda v, c: finite(v) and v > 0,
    "a finite number > 0",
)
ALPHA_GUARD = Knob(
    "alpha_guard",
    float,
    0.5,
    "hicra_adaptive: alpha shrinks once planning entropy falls below this share of its start",
    lambda v, c: finite(v) and 0 < v <= 1,
    "a number in (0, 1]",
)
ADAPTIVE_KNOBS = (ALPHA_MAX, ALPHA_WINDOW, ALPHA_PLATEAU, ALPHA_GUARD)


@dataclasses.dataclass
class AdaptiveAlpha:
    """hicra_adaptive's per-step state (``hicra.method.methods``): ``update(line)`` after each step, ``state()`` for the
    next (its ``alpha`` is the rule's). Its knobs carry the recipe's names; their ranges are ``ADAPTIVE_KNOBS``'."""

    alpha_max: float = ALPHA_MAX.default
    alpha_window: int = ALPHA_WINDOW.default
    alpha_plateau: float = ALPHA_PLATEAU.default
    alpha_guard: float = ALPHA_GUARD.default
    allow_sign_flip: bool = False
    ppl: list = dataclasses.field(default_factory=list)
    ent: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        for k in ADAPTIVE_KNOBS:
            k.check(getattr(self, k.name), self)

    @classmethod
    def from_config(cls, cfg) -> AdaptiveAlpha:
        """The controller of a run: its knobs read from the training config ``cfg``."""
        return cls(*(getattr(cfg, k.name) for k in ADAPTIVE_KNOBS), bool(getattr(cfg, "allow_sign_flip", False)))

    def update(self, rec: dict) -> None:
        """Add one step's metrics line (steps without both values, e.g. the step-0 validation line, are skipped)."""
        if rec.get("ppl_execution") is not None and rec.get("entropy_planning") is not None:
            self.ppl.append(float(rec["ppl_execution"]))
            self.ent.append(float(rec["entropy_planning"]))

    def state(self) -> dict:
        w, n = self.alpha_window, len(self.ppl)
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        p = 0.0
        if n >= 2 * w:
            prev, last = mean(self.ppl[-2 * w : -w]), mean(self.ppl[-w:])
            p = min(1.0, max(0.0, 1 - (prev - last) / prev / self.alpha_plateau))
        g = 1.0
        if n >= w and mean(self.ent[:w]) > 0:
            g = min(1.0, max(0.0, mean(self.ent[-w:]) / (self.alpha_guard * mean(self.ent[:w]))))
        return {"alpha": self.alpha_max * p * g, "alpha_plateau": p, "alpha_guard": g}

    @property
    def alpha(self) -> float:
        return self.state()["alpha"]
