"""The compacting sampler (hicra.training.decode): same tokens as transformers' generate when greedy, the model's
own distribution when sampling, and a drop-in rollout for TRL's GRPOTrainer."""

import json

import pytest
import torch

from hicra.training.decode import decode

TINY = dict(
    hidden_size=32,
    n_layers=1,
    n_heads=2,
    n_train_tasks=40,
    traces_per_task=1,
    sft_steps=30,
    batch_size=8,
    n_val=4,
    max_new_tokens=24,
)
PROMPTS = [
    "Numbers: 1 2 3. Target: 6.\n",
    "Numbers: 12 5 7. Target: 24.\n",
    "Numbers: 4 9 1. Target: 3.\n",
    "Numbers: 15 15 2. Target: 28.\n",
    "Numbers: 8 3 6. Target: 5.\n",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import os

    os.environ["HICRA_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    from hicra.sandbox.build import SandboxConfig, build, load

    try:
        model, tok = load(build(SandboxConfig(seed=0, **TINY), progress=False)["model_dir"])
    finally:
        del os.environ["HICRA_CACHE"]
    return model, tok


def _reference(model, tok, prompts, cap):
    """transformers' greedy generate, cut after the first EOS as TRL does."""
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    gen = model.generate(**enc, max_new_tokens=cap, do_sample=False, pad_token_id=tok.pad_token_id)
    out = []
    for row in gen[:, enc["input_ids"].shape[1] :].tolist():
        cut = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
        out.append(row[:cut])
    return out


@pytest.fixture(scope="module")
def random_llama():
    """A randomly initialised 2-layer Llama: varied greedy continuations, so rows end at different steps."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=48,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
    )
    model = LlamaForCausalLM(cfg).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return model


def _greedy_generate(model, prompts, cap, eos, pad):
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    gen = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=cap, do_sample=False, eos_token_id=eos, pad_token_id=pad
    )
    out = []
    for row in gen[:, width:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        out.append(row[:cut])
    return out


@pytest.mark.parametrize("cap", [1, 9, 40])
def test_greedy_matches_generate_while_rows_finish_at_different_steps(random_llama, cap):
    prompts = [[3, 7, 11], [5], [9, 2, 2, 8, 1], [4, 4], [10, 20, 30, 40], [1, 2, 3, 4, 5, 6, 7], [17]]
    free = _greedy_generate(random_llama, prompts, 40, [0], 0)  # token 0 never wins: no row ends early
    eos = sorted({free[0][4], free[2][11], free[4][20]} - {0})  # tokens that end some rows midway
    want = _greedy_generate(random_llama, prompts, cap, eos, 0)
    got = decode(random_llama, prompts, cap, 0.0, eos, 0)
    assert got == want
    assert all(1 <= len(c) <= cap for c in got)
    if cap == 40:  # the compaction path ran: rows left the batch at different steps
        assert len({len(c) for c in got}) >= 3, [len(c) for c in got]


def test_greedy_matches_generate_without_padding(random_llama):
    """Prompts of one length take the unmasked path (plain causal attention)."""
    prompts = [[3, 7, 11], [5, 2, 9], [9, 2, 2], [4, 4, 1], [8, 8, 8]]
    free = _greedy_generate(random_llama, prompts, 30, [0], 0)
    eos = sorted({free[0][3], free[2][9]} - {0})
    assert decode(random_llama, prompts, 30, 0.0, eos, 0) == _greedy_generate(random_llama, prompts, 30, eos, 0)


def test_greedy_matches_generate_on_the_sandbox_model(tiny):
    model, tok = tiny
    ids = [tok(p, add_special_tokens=False).input_ids for p in PROMPTS]
    assert decode(model, ids, 12, 0.0, [tok.eos_token_id], tok.pad_token_id) == _reference(model, tok, PROMPTS, 12)


def _chi2(first, probs):
    """Pearson statistic and degrees of freedom, pooling the tokens expected fewer than 5 times."""
    n = len(first)
    count = torch.bincount(torch.tensor(first), minlength=probs.numel()).double()
    expect = probs.double() * n
    big = expect >= 5
    obs = torch.cat([count[big], count[~big].sum().view(1)])
    exp = torch.cat([expect[big], expect[~big].sum().view(1)])
    keep = exp > 0
    return float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()), int(keep.sum()) - 1


def test_sampling_follows_the_models_distribution(tiny):
    """20,000 first tokens against softmax(logits / T): a chi-square test that a wrong temperature fails."""
    model, tok = tiny
    ids = tok(PROMPTS[1], add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    torch.manual_seed(0)
    first = [c[0] for c in decode(model, [ids] * 20_000, 1, 0.7, [tok.eos_token_id], tok.pad_token_id)]
    stat, dof = _chi2(first, (logits / 0.7).softmax(-1))
    assert dof >= 10 and stat < dof + 5 * (2 * dof) ** 0.5, (stat, dof)
    wrong, _ = _chi2(first, logits.softmax(-1))  # the same draws are far from the T = 1 distribution
    assert wrong > dof + 20 * (2 * dof) ** 0.5, (wrong, dof)


def test_top_k_and_top_p_keep_only_the_head(tiny):
    model, tok = tiny
    ids = [tok(p, add_special_tokens=False).input_ids for p in PROMPTS]
    greedy = decode(model, ids, 12, 0.0, [tok.eos_token_id], tok.pad_token_id)
    torch.manual_seed(1)
    assert decode(model, ids, 12, 1.0, [tok.eos_token_id], tok.pad_token_id, top_k=1) == greedy
    assert decode(model, ids, 12, 1.0, [tok.eos_token_id], tok.pad_token_id, top_p=1e-6) == greedy


def test_bad_arguments_say_what_to_fix(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="max_new_tokens"):
        decode(model, [[1, 2]], 0, 1.0, [tok.eos_token_id], tok.pad_token_id)
    with pytest.raises(ValueError, match="top_p"):
        decode(model, [[1, 2]], 4, 1.0, [tok.eos_token_id], tok.pad_token_id, top_p=0)
    with pytest.raises(ValueError, match="at least one token"):
        decode(model, [[]], 4, 1.0, [tok.eos_token_id], tok.pad_token_id)
    assert decode(model, [], 4, 1.0, [tok.eos_token_id], tok.pad_token_id) == []


def test_compact_rollout_trains_and_logs_like_trls_sampler(tmp_path, monkeypatch):
    """rollout: compact goes through TRL's rollout_func: same rows, same metrics lines, HICRA advantages."""
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "cache"))
    from conftest import TINY_ROLLOUTS, sandbox_recipe

    from hicra.train import build_trainer

    run = sandbox_recipe(**TINY_ROLLOUTS, val_every=0, save_steps=10, max_steps=2, method="hicra", rollout="compact")
    trainer, _ = build_trainer({"run_dir": str(tmp_path / "run"), "sandbox": {**TINY, "sft_steps": 3}, **run})
    assert trainer.rollout_func is not None
    trainer.train()
    lines = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
    assert [x["step"] for x in lines] == [1, 2] and all(0 < x["length"] <= 24 for x in lines)
    import pandas as pd

    df = pd.read_parquet(tmp_path / "run" / "rollouts" / "step_000001.parquet")
    assert len(df) == 8 and df["prompt"].nunique() == 2
    from hicra.training.trainer import HICRAConfig

    with pytest.raises(ValueError, match="rollout"):
        HICRAConfig(output_dir=str(tmp_path), method="grpo", use_cpu=True, rollout="fast")
