"""The RL trainer: ``HICRATrainer``, TRL's GRPOTrainer with HICRA's advantages and one dynamics line a step.

Paper §3-§4 train with GRPO-family objectives; this project uses TRL's trainers rather than its own loop. The TRL
glue is this module and the two it was split into by job (issue #36), so a TRL upgrade touches these three only:

* ``hicra.training.sft``: the sandbox warm-start (TRL's ``SFTTrainer``; ``sft`` is re-exported here);
* ``hicra.training.train_config``: ``HICRAConfig`` (TRL's GRPOConfig + the method, its knobs and checks; re-exported
  here);
* here: ``HICRATrainer`` (GRPO with DAPO clip-higher, HICRA and its variants, entropy-regularised GRPO and fork
  tokens: the method's token rule and per-step state from ``hicra.method.methods``) and ``EpochSampler``.

The run folder's housekeeping (stale files, a full disk) is ``hicra.training.run_dir``; the metrics line's arithmetic is
``hicra.training.step_stats``; both re-exported here under their old names.

    from hicra.training.trainer import sft
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
* ``rollout_func`` (public, marked experimental): ``rollout: compact`` samples with ``hicra.training.decode``.
* ``GRPOTrainer._get_train_sampler`` (wrapped): TRL's ``RepeatSampler`` draws each epoch's prompt order from one
  generator that runs on across epochs, and transformers' resume does not replay the earlier epochs' draws, so a
  run resumed in epoch k took epoch 0's order again. ``EpochSampler`` counts the orders drawn and, when the
  trainer sets epoch k (``set_epoch``, which accelerate forwards), draws the missing ones first.

Several processes (``accelerate launch``): each rank generates, scores and trains on its share of the prompts;
TRL gathers the rewards for the group advantages. The step's token sums (planning/execution entropy and
perplexity, re-weighted tokens) are summed over ranks before the metrics line, so adaptive alpha is the same
on every rank; rank 0 writes metrics.jsonl (one line a step) and the rollouts of every rank; dynamic sampling
runs the same number of refill rounds on every rank (collectives), each rank drawing its own refill prompts.

The CPU-speed overrides (full-logit loss, padding trims, length-dealt micro-batches) live in ``hicra.training.speed``
(``SpeedMixin``), beside the HICRA logic here. ``tests/test_trl_surface.py`` checks this list against the
installed TRL, so an upgrade fails there first.
Dynamic sampling's arithmetic lives in ``hicra.training.dynamic_sampling`` (pure, unit-tested).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import torch
from trl import GRPOTrainer

from hicra.method.advantage import REGISTRY, token_advantages
from hicra.method.tagger import PlanningTagger
from hicra.store.io import append_jsonl, read_metrics, truncate_jsonl, write_parquet
from hicra.store.runfolder import RECORD, last_complete_checkpoint
from hicra.store.sgfile import read_sg_file
from hicra.training.decode import trl_rollout
from hicra.training.dynamic_sampling import concat_batches, live_groups, select_rows
from hicra.training.finite import NonFiniteError, require_finite  # noqa: F401  (NonFiniteError: hicra.train's)
from hicra.training.run_dir import disk_full_error, prune_run_dir  # noqa: F401  (re-exported: their old home)
from hicra.training.sft import sft  # noqa: F401  (re-exported: its old home)
from hicra.training.speed import SpeedMixin, group_by_length, trim_completion_padding, use_plain_head  # noqa: F401
from hicra.training.step_stats import dynamics_from, token_stats
from hicra.training.train_config import HICRA_FAMILY, METHODS, TRL_DEFAULTS, HICRAConfig  # noqa: F401  (re-exported)

_token_stats, _dynamics_from = token_stats, dynamics_from  # their old names


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
        rec = {"step": self.state.global_step, "method": self.args.method, "seed": self.args.seed, **token_stats(sums)}
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
        rec.update(dynamics_from(logs, self._step_rollouts, self.args.num_generations, self.tagger))
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
        it), with what to do. The half-written checkpoint is skipped by resume (hicra.store.runfolder)."""
        try:
            out = super()._save_checkpoint(model, trial)
            record = (
                Path(self.args.output_dir) / "params.json"
            )  # the run's record travels with it (hicra.training.resume)
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
