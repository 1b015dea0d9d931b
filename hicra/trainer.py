"""All TRL glue lives here (the only module that imports ``trl``).

Paper §3-§4 train with GRPO-family objectives; this project uses TRL's
trainers rather than its own loop, so a TRL upgrade touches this file only:

* ``sft``: the sandbox warm-start (TRL's ``SFTTrainer`` on prompt/completion
  pairs, loss on completions only; CPU-safe: no bf16, no gradient
  checkpointing, length-grouped batches);
* ``HICRAConfig`` / ``HICRATrainer``: GRPO (DAPO clip-higher), HICRA,
  entropy-regularised GRPO and fork tokens, with per-step dynamics lines.

    from hicra.trainer import sft
    history = sft(model, tokenizer, [{"prompt": ..., "completion": ...}], out_dir, steps=100)
    python -m hicra.train configs/sandbox.yaml --method hicra     # the RL entry point

The TRL surface beyond public arguments (TRL is pinned below 1.17 because of it; check these first on an upgrade):

* ``GRPOTrainer._generate_and_score_completions`` (overridden): the place TRL's maintainers name for per-token
  advantages; HICRA's ``A + alpha|A|``, the planning mask and dynamic sampling happen here.
* ``GRPOTrainer._get_per_token_logps_and_entropies`` (wrapped, returns 3 values from TRL 1.9): its log-probs and
  entropies are stashed for the planning/execution metrics instead of a second forward pass; for a vocabulary of
  at most 8,192 tokens (``lm_head: auto``, the sandbox) they come from full logits instead of TRL's fused kernel,
  through the model's own forward with ``logits_to_keep`` (faster on CPU; equal to the kernel's, tested).
* ``GRPOTrainer._compute_loss`` (wrapped): padding trimmed per mini-batch, the stashed values summed per class.
* ``GRPOTrainer._prepare_inputs`` (wrapped) and its ``_buffered_inputs`` / ``_step``: with ``micro_batches:
  length`` the buffered micro-batches are re-dealt in order of completion length (``group_by_length``, with
  TRL's ``split_tensor_dict``), so each is cut to a short width: the same update for a sum-over-rows loss.
* ``GRPOTrainer._logs`` (read: rewards, prompts, completions of the step) and ``_metrics`` (written: dynamic
  sampling counters); reward functions log their own extras (``boxed_ratio``) through TRL's public ``log_metric``;
  ``generation_config`` and ``max_completion_length`` (written by the context schedule).
* ``rollout_func`` (public, marked experimental): ``rollout: compact`` samples with ``hicra.decode``.
* ``GRPOTrainer._get_train_sampler`` (wrapped): TRL's ``RepeatSampler`` draws each epoch's prompt order from one
  generator that runs on across epochs, and transformers' resume does not replay the earlier epochs' draws, so a
  run resumed in epoch k took epoch 0's order again. ``EpochSampler`` counts the orders drawn and, when the
  trainer sets epoch k (``set_epoch``, which accelerate forwards), draws the missing ones first.

Several processes (``accelerate launch``): each rank generates, scores and trains on its share of the prompts;
TRL gathers the rewards for the group advantages. The step's token sums (planning/execution entropy and
perplexity, re-weighted tokens) are summed over ranks before the metrics line, so adaptive alpha is the same
on every rank; rank 0 writes metrics.jsonl (one line a step) and the rollouts of every rank; dynamic sampling
runs the same number of refill rounds on every rank (collectives), each rank drawing its own refill prompts.

The CPU-speed overrides (full-logit loss, padding trims, length-dealt micro-batches) live in ``hicra.speed``
(``SpeedMixin``), beside the HICRA logic here. ``tests/test_trl_surface.py`` checks this list against the
installed TRL, so an upgrade fails there first.
Dynamic sampling's arithmetic lives in ``hicra.dynamic_sampling`` (pure, unit-tested).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from hicra.advantage import REGISTRY, token_advantages
from hicra.decode import trl_rollout
from hicra.dynamic_sampling import concat_batches, live_groups, select_rows
from hicra.dynamics import gram_statistics
from hicra.finite import NonFiniteError, require_finite  # noqa: F401  (NonFiniteError: hicra.train's)
from hicra.io import append_jsonl, read_metrics, truncate_jsonl, write_parquet
from hicra.methods import all_knobs, knob_field
from hicra.metrics import pass_at_k
from hicra.ranges import check_ranges
from hicra.runfolder import RECORD, last_complete_checkpoint
from hicra.sgfile import read_sg_file
from hicra.speed import SpeedMixin, group_by_length, trim_completion_padding, use_plain_head  # noqa: F401
from hicra.tagger import PlanningTagger


def sft(
    model,
    tokenizer,
    examples: list[dict],
    out_dir,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Supervised fine-tuning on prompt/completion dicts; returns TRL's loss log."""
    import datasets

    args = SFTConfig(
        output_dir=str(Path(out_dir)),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 20),
        weight_decay=0.0,
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to=[],
        bf16=False,
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        max_length=512,
        completion_only_loss=True,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
        gradient_checkpointing=False,
        train_sampling_strategy="group_by_length",
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(examples), processing_class=tokenizer
    )
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h]


# --------------------------------------------------------------------------
# GRPO family: grpo (DAPO clip-higher), hicra and its variants, entropy_reg, fork_tokens

# read from the registry in hicra.advantage: adding a method is one registration there
METHODS = tuple(REGISTRY)
TRL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}  # what a method's ``loss`` replaces
HICRA_FAMILY = tuple(n for n, m in REGISTRY.items() if m.rule is not None)  # per-token advantages


@dataclasses.dataclass
class HICRAConfig(GRPOConfig):
    """TRL's GRPOConfig plus the method switch and the dynamics logging of this project.

    ``method``: ``grpo`` (DAPO clip-higher: epsilon 0.2 / 0.28, token-level loss),
    ``hicra`` (+ planning-token advantage, alpha 0.2, needs ``sg_file``),
    ``entropy_reg`` (+ TRL's ``entropy_coef`` bonus), ``fork_tokens`` (TRL's
    ``top_entropy_quantile`` = 0.2: gradients on the top-20 % entropy tokens only).
    ``hicra_gated`` / ``hicra_verl`` / ``hicra_adaptive``: the study's variants (``hicra.advantage``,
    ``hicra.alpha``); the gated two compute the completions' token entropies with one extra no-grad pass.
    ``dynamic_sampling`` (any method): DAPO's filter of zero-variance groups, refilled
    from freshly drawn prompts (at most ``max_refill_rounds`` extra generations a step).
    """

    method: str = dataclasses.field(default="hicra", metadata={"help": f"one of {METHODS}"})
    # the shipped methods' knobs: default, help and range are their declarations' (hicra.methods, hicra.alpha)
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
        metadata={"help": "knobs of methods registered outside hicra.methods, by name (a recipe names them as keys)"},
    )
    sg_file: str | None = dataclasses.field(default=None, metadata={"help": "strategic-gram JSON (hicra.sgfile)"})
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
            "help": "sampler for training completions: 'trl' (TRL's generate or vLLM) or 'compact' (hicra.decode: "
            "finished rows leave the batch; plain-text prompts, no vLLM)"
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
        self._check_ranges()
        self._check_choices()
        for name, value in REGISTRY[self.method].loss.items():  # the loss a method implies, unless the recipe sets it
            if getattr(self, name) == TRL_DEFAULTS[name]:
                setattr(self, name, value)
        if self.context_schedule:
            if sorted(self.context_schedule) != list(self.context_schedule) or self.context_schedule[0] < 1:
                raise ValueError(f"context_schedule must be increasing positive lengths; got {self.context_schedule}")
            self.max_completion_length = self.context_schedule[0]
        self._deal_micro_batches()
        super().__post_init__()

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
        for k in knobs.values():  # every method's knobs, by their one range rule (hicra.methods)
            k.check(self.knob(k.name), self)
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_ranges(self)  # the sampling and optimiser options (hicra.ranges)

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
        if self.method not in REGISTRY:
            raise ValueError(f"method must be one of {tuple(REGISTRY)}; got {self.method!r}")
        for name, allowed in (
            ("rollout", ("trl", "compact")),
            ("lm_head", ("auto", "fused", "plain")),
            ("micro_batches", ("auto", "length", "random")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}")
        if self.rollout == "compact" and self.use_vllm:
            raise ValueError("rollout 'compact' samples with hicra.decode; it cannot be combined with use_vllm")
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


class EpochSampler(torch.utils.data.Sampler):
    """TRL's prompt sampler, made resumable: the same indices, and ``set_epoch(k)`` first draws the orders of
    epochs it has not drawn yet. An uninterrupted run has drawn them already (nothing changes); a run resumed
    in epoch k draws epochs 0..k-1's orders, so it trains on the prompts the uninterrupted run would."""

    def __init__(self, inner):
        self.inner, self.drawn = inner, 0

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        for i, x in enumerate(self.inner):
            if i == 0:  # the inner sampler draws its order on the first index
                self.drawn += 1
            yield x

    def set_epoch(self, epoch: int) -> None:
        while self.drawn < epoch:
            next(iter(self))


class HICRATrainer(SpeedMixin, GRPOTrainer):
    """GRPOTrainer whose advantages become ``A + alpha|A|`` on planning tokens (method ``hicra``),
    and which appends one dynamics line per step to ``<output_dir>/metrics.jsonl``.

    ``validate``: optional ``fn(model, tokenizer) -> float`` run every ``val_every`` steps.
    """

    def __init__(self, *args, validate=None, **kwargs):
        if getattr(kwargs.get("args"), "rollout", "trl") == "compact":
            kwargs.setdefault("rollout_func", trl_rollout)
        super().__init__(*args, **kwargs)

        a = self.args
        self.tagger = None
        if a.sg_file:
            read_sg_file(a.sg_file)  # fails early, naming the line, on a malformed file
            self.tagger = PlanningTagger(a.sg_file, self.processing_class)
        self.validate = validate
        self.metrics_path = os.path.join(a.output_dir, "metrics.jsonl")
        self._tok_sums: dict[str, float] = {}
        self._stash = None
        self._step_rollouts: list[dict] = []
        self._boosted = [0.0, 0.0]  # re-weighted tokens, completion tokens (this step)
        method = REGISTRY[a.method]
        self.method_state = method.state(a) if method.state else None  # updated each step (log), replayed on resume
        self._plain_head = use_plain_head(a.lm_head, self.model)

    def _get_train_sampler(self, dataset=None):
        return EpochSampler(super()._get_train_sampler(dataset))

    # -- advantages ---------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        out, self._step_rollouts = self._score_batch(inputs)
        if self.args.dynamic_sampling and self.model.training:
            out = self._dynamic_sample(inputs, out)
        return out

    def _score_batch(self, inputs):
        """TRL's generation + rewards + group advantages, then the planning mask (and HICRA's advantages)."""
        out = super()._generate_and_score_completions(inputs)
        if self.tagger is not None:
            plan = self.tagger.mask(out["completion_ids"], out["completion_mask"]).to(out["completion_ids"].device)
            out["planning_mask"] = plan
        method = REGISTRY[self.args.method]
        if self.args.save_loss_inputs:  # the group advantage A, before any per-token rule
            out["group_advantages"] = out["advantages"].detach().clone()
        if method.rule is not None:
            out["advantages"], boosted = token_advantages(
                self.args.method,
                out["advantages"],
                out.get("planning_mask", out["completion_mask"] < 0),
                out["completion_mask"],
                self.alpha,
                entropy=self._entropies(out) if method.gate_share is not None else None,
                group_size=self.args.num_generations,
                gate_share=self.args.gate_share,
                verl_filter=self.args.verl_filter,
                allow_sign_flip=self.args.allow_sign_flip,
                knobs={**self.args.method_knobs(), **self._state_values()},
            )
            self._boosted[0] += float(boosted.sum())
            self._boosted[1] += float(out["completion_mask"].sum())
        n = len(out["completion_ids"]) * self.accelerator.num_processes  # TRL's _logs hold every rank's rows
        rewards = [list(v)[-n:] for v in self._logs["rewards"].values()]
        prompts, completions = list(self._logs["prompt"])[-n:], list(self._logs["completion"])[-n:]
        rollouts = [
            {"prompt": p, "completion": c, "reward": float(rewards[0][i]) if rewards else None}
            for i, (p, c) in enumerate(zip(prompts, completions))
        ]
        return out, rollouts

    def _dynamic_sample(self, inputs, out):
        """DAPO dynamic sampling: keep groups with a non-zero advantage, refill with new prompts.

        A group whose rewards are all equal has advantage 0 on every token, so it only dilutes
        the token-level loss. Refill prompts are drawn at random from the training set (seeded
        by seed, step and round). Every process runs the same number of rounds (collectives);
        if the rounds run out, the batch is filled up with dropped groups so its size is fixed.
        """
        G, n_rows = self.args.num_generations, len(inputs)
        if n_rows % G:
            raise ValueError(
                f"dynamic_sampling needs the per-device generation batch ({n_rows}) divisible by num_generations ({G})"
            )
        batches, rollouts = [out], list(self._step_rollouts)
        gen = torch.Generator().manual_seed(
            self.args.seed * 100003 + self.state.global_step + 7919 * self.accelerator.process_index
        )  # each rank its own refills
        kept = int(live_groups(out["advantages"], G).sum()) * G
        for _ in range(self.args.max_refill_rounds):
            need = torch.tensor([int(kept < n_rows)], device=out["advantages"].device)
            if int(self.accelerator.gather(need).sum()) == 0:
                break
            idx = torch.randint(len(self.train_dataset), (n_rows // G,), generator=gen).tolist()
            more, more_rollouts = self._score_batch([self.train_dataset[i] for i in idx for _ in range(G)])
            batches.append(more)
            rollouts += more_rollouts
            kept += int(live_groups(more["advantages"], G).sum()) * G
        self._step_rollouts = rollouts
        merged = concat_batches(batches, self.processing_class.pad_token_id)
        rows, kept_live = select_rows(merged["advantages"], G, n_rows // G)
        counts = self.accelerator.gather(
            torch.tensor([kept_live / (n_rows // G), len(batches) - 1.0], device=out["advantages"].device)
        ).view(-1, 2)
        self._metrics["train"]["dynamic_sampling/live_groups"].append(float(counts[:, 0].mean()))  # all ranks
        self._metrics["train"]["dynamic_sampling/rounds"].append(float(counts[:, 1].max()))
        res = {k: (v[rows] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in merged.items()}
        mask = res["completion_mask"] * res.get("tool_mask", 1)
        res["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        return res

    def _state_values(self) -> dict:
        """The method's per-step state's values of the current step (e.g. the adaptive alpha), or none."""
        return self.method_state.state() if self.method_state is not None else {}

    @property
    def alpha(self) -> float:
        """The HICRA alpha of the current step (its per-step state's, e.g. hicra_adaptive's controller)."""
        return self._state_values().get("alpha", self.args.hicra_alpha)

    def _entropies(self, out) -> torch.Tensor:
        """(B, T) entropies of the sampled completions under the current policy (one no-grad forward)."""
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        with torch.no_grad():
            _, ent, _ = self._logps(
                self.model,
                ids,
                mask,
                out["completion_ids"].size(1),
                self.args.per_device_train_batch_size,
                compute_entropy=True,
            )
        return ent

    # -- reuse TRL's log-probs and entropies for the planning/execution split --
    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        res = self._logps(*args, **kwargs)
        if kwargs.get("compute_entropy") and res[1] is not None:
            self._stash = (res[0].detach(), res[1].detach())
        return res

    def _compute_loss(self, model, inputs):
        self._stash = None
        inputs = trim_completion_padding(inputs)
        loss = super()._compute_loss(model, inputs)
        if self.args.save_loss_inputs and model.training:
            self._save_loss_inputs(inputs)
        if self._stash is not None and "planning_mask" in inputs:
            logps, ent = self._stash
            cm = inputs["completion_mask"].bool()
            for name, sel in (("planning", inputs["planning_mask"] & cm), ("execution", ~inputs["planning_mask"] & cm)):
                s = self._tok_sums
                s[f"n_{name}"] = s.get(f"n_{name}", 0) + float(sel.sum())
                s[f"lp_{name}"] = s.get(f"lp_{name}", 0) + float((logps * sel).sum())
                s[f"ent_{name}"] = s.get(f"ent_{name}", 0) + float((ent * sel).sum())
        return loss

    def _save_loss_inputs(self, inputs) -> None:
        """This process's loss inputs of one micro-batch, as the loss received them (``save_loss_inputs``)."""
        keys = ("completion_ids", "completion_mask", "planning_mask", "advantages", "group_advantages")
        step, rank = self.state.global_step + 1, self.accelerator.process_index
        n = self._loss_saves = getattr(self, "_loss_saves", 0) + 1
        path = Path(self.args.output_dir) / "loss_inputs" / f"step_{step:06d}_rank{rank}_{n:03d}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: inputs[k].detach().cpu() for k in keys if isinstance(inputs.get(k), torch.Tensor)}, path)

    # -- one metrics line per step --------------------------------------------
    def log(self, logs, start_time=None):
        train = self.model.training
        super().log(logs, start_time)
        if not train or "train_runtime" in logs:
            return
        # every rank: the step's token sums over all ranks, so the line (and adaptive alpha) see the whole batch
        sums, boosted = self._reduce_step_sums()
        self._tok_sums, self._boosted = {}, [0.0, 0.0]
        rec = {"step": self.state.global_step, "method": self.args.method, "seed": self.args.seed, **_token_stats(sums)}
        if REGISTRY[self.args.method].rule is not None:
            rec["alpha"] = self.args.hicra_alpha
        rec.update(self._state_values())  # the per-step state the step used (hicra_adaptive: its alpha)
        if REGISTRY[self.args.method].rule is not None:
            rec["boosted_ratio"] = boosted[0] / boosted[1] if boosted[1] else None
        if self.method_state is not None:
            self.method_state.update(rec)  # the state of the next step, the same on every rank
        # every rank, after the update: a NaN step (loss, gradient norm or weights) stops them all
        require_finite(logs, self.state.global_step, self.args.output_dir, self.model)
        if not self.is_world_process_zero():
            return
        rec.update(_dynamics_from(logs, self._step_rollouts, self.args.num_generations, self.tagger))
        rec["live_groups"] = logs.get("dynamic_sampling/live_groups")
        rec["refill_rounds"] = logs.get("dynamic_sampling/rounds")
        self._extend_context(rec.get("clip_ratio"))
        rec["max_completion_length"] = self.max_completion_length
        if self.validate and self.args.val_every and rec["step"] % self.args.val_every == 0:
            rec["val_accuracy"] = float(self.validate(self.model, self.processing_class))
        append_jsonl(self.metrics_path, rec)
        self._to_trackers(rec)
        if self.args.save_rollouts and self._step_rollouts:
            spans = [self.tagger.spans(r["completion"]) if self.tagger else [] for r in self._step_rollouts]
            df = pd.DataFrame(
                [
                    {**r, "step": rec["step"], "planning_spans": json.dumps(s)}
                    for r, s in zip(self._step_rollouts, spans)
                ]
            )
            write_parquet(os.path.join(self.args.output_dir, "rollouts", f"step_{rec['step']:06d}.parquet"), df)

    def _reduce_step_sums(self) -> tuple[dict, list]:
        """The step's planning/execution token sums and re-weighted-token counts, summed over all processes."""
        keys = [f"{q}_{c}" for c in ("planning", "execution") for q in ("n", "lp", "ent")]
        vals = torch.tensor(
            [self._tok_sums.get(k, 0.0) for k in keys] + self._boosted,
            dtype=torch.float64,
            device=self.accelerator.device,
        )
        if self.accelerator.num_processes > 1:
            vals = self.accelerator.reduce(vals, reduction="sum")
        vals = vals.tolist()
        return dict(zip(keys, vals)), vals[-2:]

    def _to_trackers(self, rec: dict) -> None:
        """The step's hierarchy line, as ``hierarchy/<key>`` scalars, to the trackers of ``report_to``
        (TensorBoard, trackio, W&B ...: transformers' integration callbacks; not the console printers)."""
        vals = {
            f"hierarchy/{k}": float(v)
            for k, v in rec.items()
            if k not in ("step", "seed") and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for cb in self.callback_handler.callbacks:
            if type(cb).__module__.startswith("transformers.integrations"):
                cb.on_log(self.args, self.state, self.control, logs=vals)

    def _extend_context(self, clip_ratio, to: int | None = None) -> None:
        """Context schedule: past ``context_switch_clip`` clipped completions, raise the cap to the next length."""
        sched = self.args.context_schedule
        if to is None:
            if not sched or clip_ratio is None or clip_ratio <= self.args.context_switch_clip:
                return
            to = next((n for n in sched if n > self.max_completion_length), None)
        if not to or to == self.max_completion_length:
            return
        self.max_completion_length = self.args.max_completion_length = to
        if getattr(self, "generation_config", None) is not None:
            self.generation_config.max_new_tokens = to
        if getattr(self, "vllm_generation", None) is not None:
            self.vllm_generation.max_completion_length = to
        print(f"[hicra] completion cap -> {to} tokens (clipped ratio {clip_ratio})", flush=True)

    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint save; a full disk is said in words (torch's and safetensors' own errors may not say
        it), with what to do. The half-written checkpoint is skipped by resume (hicra.runfolder)."""
        try:
            out = super()._save_checkpoint(model, trial)
            record = Path(self.args.output_dir) / "params.json"  # the run's record travels with it (hicra.resume)
            if self.is_world_process_zero() and record.is_file():
                shutil.copyfile(record, Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}" / RECORD)
            return out
        except Exception as e:
            raise disk_full_error(e, self.args.output_dir, f"checkpoint-{self.state.global_step}") from e

    def train(self, resume_from_checkpoint=None, **kwargs):
        """Resume-safe: metrics lines written after the checkpoint being resumed are dropped first."""

        ckpt = resume_from_checkpoint
        if ckpt is True:
            ckpt = last_complete_checkpoint(self.args.output_dir)
            resume_from_checkpoint = ckpt
        step = int(re.search(r"checkpoint-(\d+)", str(ckpt)).group(1)) if ckpt else 0
        if self.is_world_process_zero():  # rank 0 owns the folder's files; the others wait, then read them
            truncate_jsonl(self.metrics_path, step if ckpt else -1)
            prune_run_dir(self.args.output_dir, step)
        self.accelerator.wait_for_everyone()
        if ckpt and 0 < self.args.max_steps <= step:  # every step is done (the run stopped before its summary):
            # load that state and train nothing (transformers' loop would run one step past max_steps)
            self._load_from_checkpoint(str(ckpt))
            self.state = self.state.__class__.load_from_json(os.path.join(str(ckpt), "trainer_state.json"))
            return None
        if self.method_state is not None and ckpt and os.path.exists(self.metrics_path):
            for rec in read_metrics(self.metrics_path):  # the per-step state's history of the steps kept
                self.method_state.update(rec)
        if ckpt and self.args.context_schedule:  # resume at the cap the run had reached
            caps = (
                [x.get("max_completion_length") for x in read_metrics(self.metrics_path)]
                if os.path.exists(self.metrics_path)
                else []
            )
            self._extend_context(None, to=next((c for c in reversed(caps) if c), None))
        if not ckpt and self.validate and self.args.val_every and self.is_world_process_zero():
            # the warm-start level, so curves start where RL starts
            append_jsonl(
                self.metrics_path,
                {
                    "step": 0,
                    "method": self.args.method,
                    "seed": self.args.seed,
                    "val_accuracy": float(
                        getattr(self.validate, "initial", self.validate)(self.model, self.processing_class)
                    ),
                },
            )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


def disk_full_error(e: BaseException, folder, what: str) -> BaseException:
    """``e`` as it is, or, when the disk holding ``folder`` is full (ENOSPC anywhere in ``e``'s chain, or under
    16 MB free), an OSError that says so and what to do."""

    chain, x = [], e
    while x is not None and len(chain) < 10:
        chain.append(x)
        x = x.__cause__ or x.__context__
    full = any(getattr(c, "errno", None) == errno.ENOSPC or "no space left" in str(c).lower() for c in chain)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if not full and (free is None or free >= 16 * 2**20):
        return e

    return OSError(
        errno.ENOSPC,
        f"no space left on the disk of {folder} while saving {what} "
        f"({'?' if free is None else free // 2**20} MB free; {type(e).__name__}: "
        f"{str(e)[:200]}). Free space, then resume with --resume true: it starts from the "
        f"last complete checkpoint ({last_complete_checkpoint(folder) or 'none yet'})",
    )


def _token_stats(sums: dict) -> dict:
    """planning_ratio and per-class mean entropy and perplexity from the step's token sums."""
    n_p, n_e = sums.get("n_planning", 0), sums.get("n_execution", 0)
    rec = {"planning_ratio": n_p / (n_p + n_e) if n_p + n_e else None}
    for name, n in (("planning", n_p), ("execution", n_e)):
        rec[f"entropy_{name}"] = sums[f"ent_{name}"] / n if n else None
        rec[f"ppl_{name}"] = float(torch.exp(torch.tensor(-sums[f"lp_{name}"] / n))) if n else None
    return rec


def _dynamics_from(logs: dict, rollouts: list[dict], group_size: int, tagger) -> dict:
    rec = {
        "reward": logs.get("reward"),
        "length": logs.get("completions/mean_length"),
        "step_time": logs.get("step_time"),
        "clip_ratio": logs.get("completions/clipped_ratio"),
        "boxed_ratio": logs.get("boxed_ratio"),  # logged by the reward function through TRL's log_metric
        "loss": logs.get("loss"),
    }
    rewards = [r["reward"] for r in rollouts if r["reward"] is not None]
    rec["accuracy"] = sum(r >= 1.0 for r in rewards) / len(rewards) if rewards else None
    if tagger is not None and rollouts:
        rec.update(gram_statistics(tagger, [r["completion"] for r in rollouts]))
    if rewards and len(rewards) % group_size == 0:
        correct = (np.array(rewards) >= 1.0).reshape(-1, group_size).sum(1)
        rec["pass_at_k"] = float(pass_at_k(np.full(len(correct), group_size), correct, min(8, group_size)).mean())
    return rec


def prune_run_dir(run_dir, step: int) -> list[str]:
    """Remove what a previous run in this folder wrote after ``step`` (rollouts, checkpoints), so a fresh
    start (step 0) or a resume never mixes in stale files; returns the removed names."""

    removed = []
    for p in (
        sorted(Path(run_dir).glob("rollouts/step_*.parquet"))
        + sorted(Path(run_dir).glob("checkpoint-*"))
        + sorted(Path(run_dir).glob("loss_inputs/step_*.pt"))
    ):
        m = re.search(r"(\d+)", p.name)
        if m and int(m.group(1)) > step:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            removed.append(p.name)
    if removed:
        print(f"[hicra] removed {len(removed)} stale file(s) after step {step} in {run_dir}", flush=True)
    return removed
