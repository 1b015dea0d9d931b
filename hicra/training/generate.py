"""Sampling completions with transformers (any machine) for evaluation and analysis.

The paper evaluates with temperature sampling (§4). This is the portable
backend: batches through ``hicra.training.decode`` (finished rows leave the batch),
a fixed seed and a progress bar. GPU boxes use vLLM through ``hicra.evaluate``
instead.

    from hicra.training.generate import sample
    outs = sample(model, tok, ["Numbers: 3 7 5. Target: 26.\\n"], n=4, temperature=1.0)
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from hicra.training.decode import decode


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[str],
    n: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    top_p: float = 1.0,
) -> list[list[str]]:
    """``n`` sampled completions per prompt (temperature 0 = greedy), as text without special tokens.

    Seeded on a forked RNG: validation inside a training run does not reset the trainer's sampling stream."""
    if not prompts:
        return []
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return _sample(model, tokenizer, prompts, n, temperature, max_new_tokens, batch_size, progress, top_p)


def _sample(model, tokenizer, prompts, n, temperature, max_new_tokens, batch_size, progress, top_p):
    flat = [p for p in prompts for _ in range(n)]
    ids = tokenizer(flat, add_special_tokens=False)["input_ids"]
    eos = [model.generation_config.eos_token_id, tokenizer.eos_token_id]
    outs: list[str] = []
    for i in tqdm(range(0, len(flat), batch_size), desc="sampling", disable=not progress, leave=False):
        comp = decode(
            model, ids[i : i + batch_size], max_new_tokens, temperature, eos, tokenizer.pad_token_id, top_p=top_p
        )
        outs += tokenizer.batch_decode(comp, skip_special_tokens=True)
    return [outs[j * n : (j + 1) * n] for j in range(len(prompts))]


BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def chat_prompts(
    tokenizer, problems: list[str], instruction: str = BOXED_INSTRUCTION, shots: list[tuple[str, str]] = ()
) -> list[str]:
    """Problems as prompt strings: the tokenizer's chat template when it has one, else plain "Problem: ...
    Solution:" text (a pre-trained model's format), led by the BOS token the tokenizer would add itself (prompts
    are tokenized without special tokens; Gemma without its BOS writes only blank lines).
    ``shots``: (problem, worked solution ending in ``\\boxed{}``) pairs shown first as earlier turns."""
    lead = [
        m
        for q, a in shots
        for m in ({"role": "user", "content": f"{q}\n{instruction}"}, {"role": "assistant", "content": a})
    ]
    msgs = [lead + [{"role": "user", "content": f"{p}\n{instruction}"}] for p in problems]
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs]
    ids = tokenizer("x")["input_ids"]
    bos = tokenizer.bos_token if tokenizer.bos_token and ids[:1] == [tokenizer.bos_token_id] else ""
    lead = "".join(f"Problem: {q}\n{instruction}\nSolution: {a}\n\n" for q, a in shots)
    return [f"{bos}{lead}Problem: {p}\n{instruction}\nSolution:" for p in problems]
