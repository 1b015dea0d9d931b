"""Range checks of the sampling and optimiser options of a training run (TRL's and transformers' own fields).

Why: TRL and transformers accept ``top_p 0``, ``top_k -1``, ``adam_beta1 nan`` or ``warmup_steps nan`` and fail
later, in a traceback after the step-0 line, or train on and store NaN weights (``weight_decay nan``). Every such
value is refused here, before anything is loaded, by the dry run and the real run alike
(``HICRAConfig.__post_init__`` calls ``check_ranges``; ``TrainScript`` checks its own validation sampling).

    from hicra.training.ranges import check_ranges
    check_ranges(cfg)   # ValueError naming the option, its allowed range and the value given
"""

from __future__ import annotations

from hicra.method.knobs import finite  # noqa: F401  (re-exported: the one definition of a finite number)

# (option, test of a present value, the allowed range in words); None values are TRL's "unset" and pass. A method's
# own knobs (hicra_alpha, alpha_window, ...) are checked by their declarations (hicra.method.methods,
# hicra.method.alpha)
RULES = [
    ("top_p", lambda v: finite(v) and 0 < v <= 1, "a number in (0, 1]"),
    ("top_k", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0 (0: no top-k)"),
    ("min_p", lambda v: finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("repetition_penalty", lambda v: finite(v) and v > 0, "a finite number > 0"),
    ("adam_beta1", lambda v: finite(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("adam_beta2", lambda v: finite(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("adam_epsilon", lambda v: finite(v) and v > 0, "a finite number > 0"),
    ("weight_decay", lambda v: finite(v) and v >= 0, "a finite number >= 0"),
    ("max_grad_norm", lambda v: finite(v) and v >= 0, "a finite number >= 0 (0: no clipping)"),
    ("warmup_steps", lambda v: finite(v) and v >= 0, "a finite number >= 0 (steps, or a share of them below 1)"),
    ("warmup_ratio", lambda v: finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("num_train_epochs", lambda v: finite(v) and v > 0, "a finite number > 0"),
    ("beta", lambda v: finite(v) and v >= 0, "a finite number >= 0 (the KL coefficient)"),
    ("epsilon", lambda v: finite(v) and v >= 0, "a finite number >= 0 (the clip range)"),
    ("epsilon_high", lambda v: finite(v) and v >= 0, "a finite number >= 0 (the upper clip range)"),
    ("val_every", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: never)"),
    ("entropy_coef", lambda v: finite(v) and v >= 0, "a finite number >= 0 (the entropy bonus)"),
    ("top_entropy_quantile", lambda v: finite(v) and 0 < v <= 1, "a number in (0, 1] (a share of tokens)"),
    ("context_switch_clip", lambda v: finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("max_refill_rounds", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
]


def check_ranges(cfg) -> None:
    """Refuse the first option of ``cfg`` (any object with these attributes) outside its range, in one line."""
    for name, ok, allowed in RULES:
        v = getattr(cfg, name, None)
        if v is not None and not ok(v):
            raise ValueError(f"{name} must be {allowed}; got {v!r}")


def check_temperature(name: str, v) -> None:
    """A sampling temperature: finite and >= 0 (0: greedy). NaN fails here (``NaN < 0`` is False)."""
    if not (finite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 (0: greedy); got {v!r}")
