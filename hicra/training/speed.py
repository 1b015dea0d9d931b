"""CPU-speed overrides of TRL's GRPO trainer: the same update, less work (docs/sandbox.md §6).

Why: on a 2-core CPU the sandbox's RL step is dominated by padding and by a fused LM-head kernel built for 150k
vocabularies. These overrides change no loss term and no gradient (tests/test_train.py checks each against TRL's
own path); they live apart from the HICRA logic (``hicra.training.trainer``) so either can be read alone.

* ``use_plain_head``: for a vocabulary of at most 8,192 tokens, log-probs and entropies from full logits through
  the model's own forward (``SpeedMixin._logps``) instead of TRL's chunked kernel.
* ``trim_completion_padding``: each loss mini-batch cut to its own longest completion.
* ``SpeedMixin._prepare_inputs``: with ``micro_batches: length`` the buffered micro-batches are re-dealt in order
  of completion length (``group_by_length``), so the trim above cuts more.

    class HICRATrainer(SpeedMixin, GRPOTrainer): ...     # hicra.training.trainer; the mixin imports no trl itself
"""

from __future__ import annotations

import torch
from trl.trainer.utils import split_tensor_dict

COMPLETION_KEYS = (
    "completion_ids",
    "completion_mask",
    "advantages",
    "planning_mask",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "tool_mask",
)


PLAIN_HEAD_MAX_VOCAB = 8192
SCALED_HEAD_FIELDS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)  # what TRL's fused head applies and the plain path does not


def use_plain_head(choice: str, model) -> bool:
    """``lm_head`` -> whether the loss uses full logits. TRL's chunked kernel never builds the (B, T, V) logits,
    which matters for a 150k vocabulary; for the sandbox's 1,024 tokens its tiling costs more than it saves
    (forward + backward of a 16-row mini-batch: 0.23 s plain vs 0.29 s fused, 1 thread; log-probs equal to 2e-6).
    The plain path has no soft-capping or logit scaling, so models that use them keep the kernel."""
    if choice == "fused":
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    tc = base.config.get_text_config()
    scaled = any(getattr(tc, k, None) is not None for k in SCALED_HEAD_FIELDS)
    if choice == "plain" and scaled:
        raise ValueError(
            f"lm_head 'plain' does not apply {type(base).__name__}'s logit soft-capping or scaling; "
            "use lm_head 'fused' or 'auto'"
        )
    return choice == "plain" or (not scaled and tc.vocab_size <= PLAIN_HEAD_MAX_VOCAB)


def trim_completion_padding(inputs: dict) -> dict:
    """Drop the completion columns that are padding in every row of this mini-batch.

    TRL pads a whole generation batch to its longest completion; with gradient accumulation each
    mini-batch then carries that width into the loss's forward and backward pass. Cutting it to
    the mini-batch's own longest row changes no loss term (the cut columns are masked out) and
    saves the compute of the padding."""
    mask = inputs.get("completion_mask")
    if mask is None or mask.dim() != 2 or mask.size(1) == 0:
        return inputs
    width = int(mask.sum(0).nonzero().max()) + 1 if mask.any() else 1
    if width == mask.size(1):
        return inputs
    shape = tuple(mask.shape)
    out = dict(inputs)
    for k in COMPLETION_KEYS:
        v = inputs.get(k)
        if isinstance(v, torch.Tensor) and v.dim() >= 2 and tuple(v.shape[:2]) == shape:
            out[k] = v[:, :width]
    return out


class SpeedMixin:
    """Overrides for a ``GRPOTrainer`` subclass (put before it in the bases): needs ``self._plain_head``."""

    def _prepare_inputs(self, generation_batch):
        """TRL's buffering of a generation batch into micro-batches; with ``micro_batches: length`` the rows are
        re-dealt in order of completion length after TRL's shuffle (which still draws its permutation, so the
        random stream is unchanged), and ``_compute_loss`` cuts each micro-batch to its own longest row."""
        before = self._buffered_inputs
        inputs = super()._prepare_inputs(generation_batch)
        fresh = self._buffered_inputs is not before  # TRL generated and buffered a new batch (training only)
        if fresh and self.args.micro_batches == "length" and len(self._buffered_inputs) > 1:
            self._buffered_inputs = group_by_length(self._buffered_inputs)
            inputs = self._buffered_inputs[self._step % self.args.steps_per_generation]
        return inputs

    def _logps(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **extra,
    ):
        """TRL's fused LM head, or for a tiny vocabulary (``lm_head``) the same numbers from full logits."""
        if not self._plain_head or compute_aux_loss or any(v is not None for v in extra.values()):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss, **extra
            )
        batch_size = batch_size or input_ids.size(0)
        logps, ents = [], []
        for start in range(0, input_ids.size(0), batch_size):
            ids, am = input_ids[start : start + batch_size], attention_mask[start : start + batch_size]
            with self.accelerator.autocast():  # logits of the last T+1 positions; position t predicts token t+1
                logits = model(
                    input_ids=ids, attention_mask=am, logits_to_keep=logits_to_keep + 1, use_cache=False
                ).logits
            logp = (logits[:, :-1].float() / self.temperature).log_softmax(-1)
            pad = am[:, -logits_to_keep:] == 0  # as TRL's kernel: 0 where the token is padding
            logps.append(logp.gather(-1, ids[:, -logits_to_keep:, None]).squeeze(-1).masked_fill(pad, 0.0))
            if compute_entropy:
                ents.append(-(logp.exp() * logp).sum(-1).masked_fill(pad, 0.0))
        return torch.cat(logps), (torch.cat(ents) if compute_entropy else None), None


def group_by_length(chunks: list[dict]) -> list[dict]:
    """The rows of a generation batch's micro-batches re-dealt in order of completion length (as many
    micro-batches, of the same size). Each micro-batch's loss is a sum over its rows divided by the whole
    generation batch's token count (dapo), so the accumulated update is the same; what changes is the padding:
    a random 16 of 64 sandbox rows usually holds one long row, sorted ones rarely do (about 40 % fewer
    completion columns in the loss)."""

    def rows(v):
        return v is not None and (isinstance(v, list) or v.dim() > 0)

    merged = {
        k: (
            None
            if v is None
            else (
                sum((c[k] for c in chunks), [])
                if isinstance(v, list)
                else torch.cat([c[k] for c in chunks])
                if rows(v)
                else v
            )
        )
        for k, v in chunks[0].items()
    }
    order = torch.argsort(merged["completion_mask"].sum(1), stable=True)
    merged = {
        k: (
            None
            if v is None
            else [v[i] for i in order.tolist()]
            if isinstance(v, list)
            else v[order.to(v.device)]
            if rows(v)
            else v
        )
        for k, v in merged.items()
    }
    return split_tensor_dict(merged, len(chunks))
