"""The RL training configuration: ``HICRAConfig``, TRL's GRPOConfig plus the method and its knobs (issue #36 split).

What: the method switch (``hicra.method.methods``' registry: its knobs as fields or ``knobs``, its loss settings), the
dynamics logging, dynamic sampling, the context schedule, the sampler, the LM head and the micro-batch dealing, each
checked when the config is made (a bad value is one ``ValueError`` naming the fix, before anything loads).
Why its own module: the config is read by the dry run, the resume checks and ``--help`` without the trainer.
How to run: a recipe (configs/*.yaml) or ``--key value`` flags of ``python -m hicra.train`` become its fields:

    from hicra.training.train_config import HICRAConfig
    args = HICRAConfig(output_dir="runs/x", method="hicra", sg_file="data/grams/seed_grams.json", use_cpu=True)
"""

from __future__ import annotations

import dataclasses
import math

from trl import GRPOConfig

from hicra.method.advantage import REGISTRY
from hicra.method.methods import all_knobs, knob_field
from hicra.store.names import hint
from hicra.training.ranges import check_ranges

# --------------------------------------------------------------------------
# GRPO family: grpo (DAPO clip-higher), hicra and its variants, entropy_reg, fork_tokens

# read from the registry (hicra.method.methods, hicra.method.advantage): adding a method is one registration there
METHODS = tuple(REGISTRY)
TRL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
# TRL fields a method's ``loss`` may set: None here means "the method's value, else TRL's default", so a value the
# recipe gives (even TRL's default: fork_tokens with top_entropy_quantile 1.0) is the value trained with
LEFT_TO_METHOD = ("entropy_coef", "top_entropy_quantile")
HICRA_FAMILY = tuple(n for n, m in REGISTRY.items() if m.rule is not None)  # per-token advantages


@dataclasses.dataclass
class HICRAConfig(GRPOConfig):
    """TRL's GRPOConfig plus the method switch and the dynamics logging of this project.

    ``method``: ``grpo`` (DAPO clip-higher: epsilon 0.2 / 0.28, token-level loss),
    ``hicra`` (+ planning-token advantage, alpha 0.2, needs ``sg_file``),
    ``entropy_reg`` (+ TRL's ``entropy_coef`` bonus), ``fork_tokens`` (TRL's
    ``top_entropy_quantile`` = 0.2: gradients on the top-20 % entropy tokens only).
    ``hicra_gated`` / ``hicra_verl`` / ``hicra_adaptive``: the study's variants (``hicra.method.advantage``,
    ``hicra.method.alpha``); the gated two compute the completions' token entropies with one extra no-grad pass.
    ``dynamic_sampling`` (any method): DAPO's filter of zero-variance groups, refilled
    from freshly drawn prompts (at most ``max_refill_rounds`` extra generations a step).
    """

    method: str = dataclasses.field(default="hicra", metadata={"help": f"one of {METHODS}"})
    # the shipped methods' knobs: default, help and range are their declarations' (hicra.method.methods,
    # hicra.method.alpha)
    hicra_alpha: float = knob_field("hicra_alpha")
    allow_sign_flip: bool = knob_field("allow_sign_flip")
    gate_share: float | None = knob_field("gate_share")
    verl_filter: bool = knob_field("verl_filter")
    alpha_max: float = knob_field("alpha_max")
    alpha_window: int = knob_field("alpha_window")
    alpha_plateau: float = knob_field("alpha_plateau")
    alpha_guard: float = knob_field("alpha_guard")
    knobs: dict = dataclasses.field(
        default_factory=dict,
        metadata={
            "help": "knobs of methods registered outside hicra.method.methods, by name (a recipe names them as keys)"
        },
    )
    sg_file: str | None = dataclasses.field(default=None, metadata={"help": "strategic-gram JSON (hicra.store.sgfile)"})
    # TRL fields a method sets unless the recipe does (LEFT_TO_METHOD): None until __post_init__
    entropy_coef: float | None = dataclasses.field(
        default=None,
        metadata={"help": "TRL's entropy bonus coefficient (None: the method's: entropy_reg 0.005, otherwise 0.0)"},
    )
    top_entropy_quantile: float | None = dataclasses.field(
        default=None,
        metadata={
            "help": "TRL's share of highest-entropy tokens that get gradients (None: the method's: fork_tokens 0.2, "
            "otherwise 1.0)"
        },
    )
    # TRL fields whose value here differs from TRL's default: stated as field defaults (and in every recipe), not
    # set behind the recipe's back
    epsilon_high: float | None = dataclasses.field(
        default=0.28, metadata={"help": "DAPO clip-higher: the upper clip range (epsilon 0.2 is the lower one)"}
    )
    logging_steps: float = dataclasses.field(
        default=1, metadata={"help": "must be 1: one metrics line per optimiser step (metrics.jsonl)"}
    )
    val_every: int = dataclasses.field(default=0, metadata={"help": "validate every N steps (0: never)"})
    save_rollouts: bool = dataclasses.field(default=True, metadata={"help": "write rollouts/step_*.parquet"})
    dynamic_sampling: bool = dataclasses.field(
        default=False,
        metadata={"help": "DAPO dynamic sampling: drop groups whose rewards are all equal, refill from new prompts"},
    )
    context_schedule: list[int] | None = dataclasses.field(
        default=None,
        metadata={
            "help": "completion caps to step through, e.g. [16384, 32768] (paper: 16K -> 32K); starts at the first"
        },
    )
    context_switch_clip: float = dataclasses.field(
        default=0.2,
        metadata={
            "help": "move to the next cap of context_schedule when the step's clipped-completion ratio passes this"
        },
    )
    rollout: str = dataclasses.field(
        default="trl",
        metadata={
            "help": "sampler for training completions: 'trl' (TRL's generate or vLLM) or 'compact' "
            "(hicra.training.decode: finished rows leave the batch; plain-text prompts, no vLLM)"
        },
    )
    lm_head: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "log-probs and entropies of the loss: 'fused' (TRL's chunked LM-head kernel: no full logits), "
            "'plain' (full logits, log_softmax; about 20 percent faster forward + backward for a tiny vocabulary on "
            "CPU), 'auto' (plain when the vocabulary has at most 8,192 tokens)"
        },
    )
    micro_batches: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "how a generation batch's rows are dealt to the loss's micro-batches: 'length' (in order of "
            "completion length, so each micro-batch is cut to a short width: less padding, the same update "
            "when the loss is a sum over rows), 'random' (TRL's shuffle), 'auto' (length when the loss is a "
            "sum over rows: dapo loss, no per-micro-batch entropy quantile or entropy bonus)"
        },
    )
    logging_nan_inf_filter: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "transformers' filter that logs a NaN/inf loss as the previous mean (off: a NaN step stops the run)"
        },
    )
    max_refill_rounds: int = dataclasses.field(
        default=3,
        metadata={"help": "dynamic sampling: extra generation rounds per step before filling up with dropped groups"},
    )
    save_loss_inputs: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "write what each process's loss receives (token ids, masks, planning mask, the group advantage A "
            "and the advantage used) to loss_inputs/step_*_rank*_*.pt: the rehearsal's proof (hicra.rehearsal_proof)"
        },
    )

    def __post_init__(self):
        self._check_choices()
        self._method_loss()
        self._check_ranges()
        if self.context_schedule:
            if sorted(self.context_schedule) != list(self.context_schedule) or self.context_schedule[0] < 1:
                raise ValueError(f"context_schedule must be increasing positive lengths; got {self.context_schedule}")
            self.max_completion_length = self.context_schedule[0]
        self._deal_micro_batches()
        super().__post_init__()

    def _method_loss(self):
        """Each field of LEFT_TO_METHOD the recipe left unset (None): the method's ``loss`` value, else TRL's."""
        loss = REGISTRY[self.method].loss
        other = sorted(set(loss) - set(LEFT_TO_METHOD))
        if other:
            raise ValueError(
                f"method {self.method!r} sets {other} in its loss; a method may set only {list(LEFT_TO_METHOD)} "
                f"(hicra.training.train_config.LEFT_TO_METHOD), the fields a recipe leaves to it"
            )
        for name in LEFT_TO_METHOD:
            if getattr(self, name) is None:
                setattr(self, name, loss.get(name, TRL_DEFAULTS[name]))

    def _check_ranges(self):
        """Numbers a real run would turn into NaN weights, a crash or a silent no-op; refused with the fix."""
        finite = lambda x: isinstance(x, (int, float)) and math.isfinite(x)  # noqa: E731
        checks = [
            (
                self.num_generations is None or self.num_generations >= 2,
                f"num_generations must be >= 2 (GRPO compares completions within a group); got {self.num_generations}",
            ),
            (
                finite(self.learning_rate) and self.learning_rate >= 0,
                f"learning_rate must be a finite number >= 0; got {self.learning_rate}",
            ),
            (
                finite(self.temperature) and self.temperature > 0,
                f"temperature must be a finite number > 0 (0 divides the logits by zero: every weight becomes NaN); "
                f"got {self.temperature}",
            ),
            (
                self.logging_steps == 1,
                f"logging_steps must be 1 (one metrics line per optimiser step); got {self.logging_steps}",
            ),
            (
                self.epsilon is not None and self.epsilon_high is not None,
                "epsilon and epsilon_high must be set (the clip ranges; DAPO's are 0.2 and 0.28)",
            ),
            (
                self.max_steps >= 1 or self.max_steps == -1,
                f"max_steps must be >= 1 (or -1: train for num_train_epochs); got {self.max_steps}",
            ),
            (
                self.max_completion_length is None or self.max_completion_length >= 1,
                f"max_completion_length must be >= 1; got {self.max_completion_length}",
            ),
        ]
        knobs = all_knobs()
        unknown = sorted(set(self.knobs) - set(knobs))
        if unknown:
            raise ValueError(f"knobs: unknown knob(s) {unknown}; the registered ones are {sorted(knobs)}")
        for k in knobs.values():  # every method's knobs, by their one range rule (hicra.method.methods)
            k.check(self.knob(k.name), self)
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_ranges(self)  # the sampling and optimiser options (hicra.training.ranges)

    def knob(self, name: str):
        """The value of knob ``name``: its field, or ``knobs[name]``, or its declared default."""
        if name in _FIELDS:
            return getattr(self, name)
        return self.knobs.get(name, all_knobs()[name].default)

    def method_knobs(self) -> dict:
        """This run's method's knobs by name, as its token rule receives them (``ctx``)."""
        return {k.name: self.knob(k.name) for k in REGISTRY[self.method].knobs}

    def _check_choices(self):
        """Named options: the method (and the SG file it needs), the sampler, the LM head, the loss."""
        for name, allowed in (
            ("method", tuple(REGISTRY)),
            ("rollout", ("trl", "compact")),
            ("lm_head", ("auto", "fused", "plain")),
            ("micro_batches", ("auto", "length", "random")),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {value!r}{hint(value, allowed)}")
        if self.rollout == "compact" and self.use_vllm:
            raise ValueError(
                "rollout 'compact' samples with hicra.training.decode; it cannot be combined with use_vllm"
            )
        if self.loss_type != "dapo":  # the token-level loss every method of this project is defined with
            raise ValueError(
                f"loss_type must be 'dapo' (the token-level loss of DAPO and the paper, which every "
                f"method here uses); got {self.loss_type!r}"
            )
        if REGISTRY[self.method].needs_sg and not self.sg_file:
            raise ValueError(
                f"method {self.method!r} needs sg_file: a strategic-gram JSON (e.g. data/grams/seed_grams.json)"
            )

    def _deal_micro_batches(self):
        """``micro_batches: auto`` -> length (same update, less padding) unless a statistic is per micro-batch."""
        per_micro_batch = [
            why
            for why, on in (
                ("the fork-token entropy quantile", (self.top_entropy_quantile or 1.0) < 1.0),
                ("the entropy bonus", bool(self.entropy_coef) or self.use_adaptive_entropy),
            )
            if on
        ]
        if self.micro_batches == "length" and per_micro_batch:
            raise ValueError(
                f"micro_batches 'length' would change this method's update: {per_micro_batch[0]} is "
                "computed per micro-batch; use 'random' or 'auto'"
            )
        if self.micro_batches == "auto":
            self.micro_batches = "random" if per_micro_batch else "length"


_FIELDS = {f.name for f in dataclasses.fields(HICRAConfig)}
