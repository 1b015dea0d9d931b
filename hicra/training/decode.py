"""Compacting sampler: decode a batch, dropping each row from the batch as soon as it ends.

Why: ``model.generate`` keeps every row in the batch until the longest one ends.
On the sandbox (mean completion about 55 tokens, cap 160, and most 64-row
batches hold one runaway row) two thirds of its decode work is padding, and
on a CPU that work costs time in proportion to the rows (docs/sandbox.md,
"Faster RL"). Here a finished row leaves the batch and the KV cache at once,
so the cost follows the tokens actually sampled, not rows x longest row.

How: one prefill of the left-padded prompts, then one forward per new token
over the live rows only, with explicit position ids and the attention mask
carried along. Sampling is exact: temperature, then top-k, then top-p (the
order of transformers' warpers), then the Gumbel-max draw, which picks token
i with probability softmax(logits)_i and is cheaper than ``torch.multinomial``
on a CPU. Temperature 0 is greedy and gives the same tokens as ``generate``
(tests/test_decode.py). Used by ``hicra.training.generate.sample`` (validation,
evaluation) and, through TRL's ``rollout_func``, by GRPO training on the
sandbox (``rollout: compact`` in a recipe).

    from hicra.training.decode import decode
    completions = decode(model, [[5, 17, 9], [5, 3]], max_new_tokens=160, temperature=1.0,
                         eos_ids=[tok.eos_token_id], pad_id=tok.pad_token_id)
"""

from __future__ import annotations

import torch


def _warp(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    logits = logits.float() / temperature
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        srt, idx = torch.sort(logits, descending=False, dim=-1)
        cum = srt.softmax(-1).cumsum(-1)
        drop = cum <= 1 - top_p
        drop[:, -1] = False  # the most likely token always stays
        logits = logits.masked_fill(drop.scatter(1, idx, drop), float("-inf"))
    return logits


def _draw(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(-1)
    warped = _warp(logits, temperature, top_k, top_p)
    u = torch.rand_like(warped).clamp_(min=1e-20)
    return (warped - torch.log(-torch.log(u))).argmax(-1)


@torch.no_grad()
def decode(
    model,
    prompt_ids: list[list[int]],
    max_new_tokens: int,
    temperature: float,
    eos_ids,
    pad_id: int | None,
    top_k: int = 0,
    top_p: float = 1.0,
) -> list[list[int]]:
    """Sampled completion token ids per prompt, each ending at (and keeping) its first EOS or at the cap.

    ``eos_ids``: token ids, lists of them or None, as tokenizers and generation configs give them (flattened
    here). ``pad_id``: the left-padding id (None: 0; padded positions are masked, so any id will do)."""
    if not prompt_ids:
        return []
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not temperature >= 0 or not 0 < top_p <= 1 or not top_k >= 0:  # NaN fails each test
        raise ValueError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got {temperature}, {top_p}, {top_k}")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token")
    eos_set = {e for x in eos_ids for e in (x if isinstance(x, (list, tuple)) else [x]) if e is not None}
    pad_id = 0 if pad_id is None else pad_id
    device = model.device
    width = max(len(p) for p in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompt_ids):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    padded = bool((mask == 0).any())  # without left padding the model needs no mask (plain causal attention)
    eos = torch.tensor(sorted(eos_set), device=device)
    out = [[] for _ in prompt_ids]
    rows = torch.arange(len(prompt_ids), device=device)  # which prompt each live batch row belongs to
    was_training = model.training
    model.eval()
    try:
        res = model(
            input_ids=ids, attention_mask=mask if padded else None, position_ids=pos, use_cache=True, logits_to_keep=1
        )
        cache, logits, last = res.cache, res.logits[:, -1], pos[:, -1]
        for step in range(max_new_tokens):
            tok = _draw(logits, temperature, top_k, top_p)
            for r, t in zip(rows.tolist(), tok.tolist()):
                out[r].append(t)
            live = ~torch.isin(tok, eos)
            if step == max_new_tokens - 1 or not live.any():
                break
            if not live.all():  # compact: the finished rows leave the batch and the cache
                keep = live.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, tok, mask, last = rows[keep], tok[keep], mask[keep], last[keep]
            if padded:
                mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            last = last + 1
            res = model(
                input_ids=tok[:, None],
                attention_mask=mask if padded else None,
                position_ids=last[:, None],
                cache=cache,
                use_cache=True,
            )
            cache, logits = res.cache, res.logits[:, -1]
    finally:
        model.train(was_training)
    return out


def trl_rollout(prompts: list[str], trainer) -> dict:
    """TRL's ``rollout_func`` (GRPOTrainer(rollout_func=...)): the trainer's prompts through ``decode``.

    Tokenizes plain-text prompts as TRL's own path does (``processing_class(text=...)``) and
    samples with the trainer's ``generation_config`` (cap, temperature, top-k, top-p, EOS), read
    at call time so a context schedule that raises the cap takes effect. No sampling log-probs
    are returned: as with TRL's transformers path, the loss recomputes them."""
    if prompts and not isinstance(prompts[0], str):
        raise ValueError("rollout 'compact' takes plain-text prompts; use rollout 'trl' for chat-format datasets")
    gc = trainer.generation_config
    if (gc.min_p or 0) > 0 or (gc.repetition_penalty or 1.0) != 1.0:
        raise ValueError(
            "rollout 'compact' samples with temperature, top_k and top_p only; unset min_p and "
            "repetition_penalty, or use rollout 'trl'"
        )
    tok = trainer.processing_class
    prompt_ids = tok(text=prompts)["input_ids"]
    model = trainer.accelerator.unwrap_model(trainer.model)
    completion_ids = decode(
        model,
        prompt_ids,
        gc.max_new_tokens,
        gc.temperature if gc.do_sample else 0.0,
        [gc.eos_token_id],
        tok.pad_token_id,
        top_k=gc.top_k or 0,
        top_p=1.0 if gc.top_p is None else gc.top_p,
    )
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}
