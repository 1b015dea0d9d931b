"""The rehearsal's proof numbers (hicra.rehearsal_proof) on run folders written here by hand, and the pilot's
candidate prompts (hicra.rehearsal_task) loaded and graded the way hicra.train does, and the shipped prompts and
format adapter (issue #37)."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from hicra.rehearsal_proof import lora_update_norm, parameter_distance, proof, proof_markdown
from hicra.rehearsal_task import sft_problems

ROOT = Path(__file__).resolve().parent.parent


def _run(folder, method, rewards, adv_rows, planning, alpha=0.2):
    """A run folder as hicra.train writes it: params.json, one step's rollouts (groups of 4) and one process's loss
    inputs (2 rows x 3 tokens; the last token of row 1 is padding)."""
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"method": method, "num_generations": 4}))
    prompts = [[{"role": "user", "content": f"q{i // 4}"}] for i in range(len(rewards))]
    (folder / "rollouts").mkdir()
    pd.DataFrame({"prompt": prompts, "completion": ["c"] * len(rewards), "reward": rewards, "step": 1}).to_parquet(
        folder / "rollouts" / "step_000001.parquet"
    )
    a = torch.tensor(adv_rows)
    cm = torch.tensor([[1, 1, 1], [1, 1, 0]])
    plan = torch.tensor(planning).bool() & cm.bool()
    adv = a[:, None] + alpha * a.abs()[:, None] * plan if method == "hicra" else a
    (folder / "loss_inputs").mkdir()
    torch.save(
        {"completion_ids": torch.zeros(2, 3, dtype=torch.long), "completion_mask": cm, "planning_mask": plan}
        | {"advantages": adv, "group_advantages": a},
        folder / "loss_inputs" / "step_000001_rank1_001.pt",
    )


def test_the_proof_counts_mixed_groups_planning_tokens_and_the_tokens_hicra_changed(tmp_path):
    rewards = [1.0, 0.0, 0.0, 0.0] + [0.0] * 4  # one mixed group of two
    planning = [[0, 1, 1], [1, 0, 1]]  # the padding token of row 1 is not counted
    _run(tmp_path / "train-hicra-s0", "hicra", rewards, [1.5, -0.5], planning)
    _run(tmp_path / "train-grpo-s0", "grpo", rewards, [1.5, -0.5], planning)
    _run(tmp_path / "train-zero-s0", "hicra", [0.0] * 8, [0.0, 0.0], planning)  # no signal: Â = A everywhere
    p = proof(tmp_path)
    h, g, z = (p["runs"][f"train-{m}-s0"] for m in ("hicra", "grpo", "zero"))
    assert h["mixed_group_share_step1"] == 0.5 and h["steps"][0]["mixed_groups"] == 1
    assert h["planning_tokens"] == 3 and h["hicra_changed_tokens"] == 3 and h["nonzero_advantage_tokens"] == 5
    assert h["steps"][0]["nonzero_advantage_tokens_by_rank"] == {"1": 5}
    assert g["planning_tokens"] == 3 and g["hicra_changed_tokens"] == 0 and g["nonzero_advantage_tokens"] == 5
    assert z["mixed_group_share_step1"] == 0 and z["hicra_changed_tokens"] == 0 and z["nonzero_advantage_tokens"] == 0
    assert json.loads((tmp_path / "proof.json").read_text()) == p
    md = "\n".join(proof_markdown(p))
    assert "| train-hicra-s0 | 0.50 | 0.50 | 3 | 5 | 3 |" in md
    from hicra.orchestration.report import results_markdown

    assert md in results_markdown("paper-rehearsal", tmp_path, [])  # the results page carries it


def test_a_group_split_across_prompts_is_refused(tmp_path):
    run = tmp_path / "train-hicra-s0"
    _run(run, "hicra", [1.0, 0.0, 0.0, 0.0], [1.0, 0.0], [[0, 0, 0], [0, 0, 0]])
    df = pd.read_parquet(run / "rollouts" / "step_000001.parquet")
    df.loc[3, "prompt"] = [{"role": "user", "content": "another"}]
    df.to_parquet(run / "rollouts" / "step_000001.parquet")
    with pytest.raises(ValueError, match="not one prompt's group"):
        proof(tmp_path)


def test_parameter_distance_and_the_lora_update_norm(tmp_path):
    from safetensors.torch import save_file

    for name, w in (("a", torch.zeros(2, 2)), ("b", torch.tensor([[3.0, 0.0], [0.0, 4.0]]))):
        (tmp_path / name).mkdir()
        save_file({"w": w, f"only_{name}": torch.ones(1)}, str(tmp_path / name / "model.safetensors"))
    assert parameter_distance(tmp_path / "a", tmp_path / "b") == pytest.approx(5.0)
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps({"r": 1, "lora_alpha": 2}))
    k = "base_model.model.layer.q_proj"
    b_init = {f"{k}.lora_A.weight": torch.tensor([[1.0, 2.0]]), f"{k}.lora_B.weight": torch.zeros(2, 1)}
    save_file(b_init, str(lora / "adapter_model.safetensors"))
    assert lora_update_norm(lora) == 0.0  # B starts at 0: no update until a gradient reaches it
    save_file(b_init | {f"{k}.lora_B.weight": torch.tensor([[1.0], [0.0]])}, str(lora / "adapter_model.safetensors"))
    assert lora_update_norm(lora) == pytest.approx(2 * 5**0.5)  # (alpha / r) * ||B A|| = 2 * ||[1, 2]||


def test_the_pilots_candidates_are_dapo_rows_that_the_trainer_loads_and_grades(tmp_path):
    """hicra.rehearsal_task writes candidates in DAPO-Math-17k's verl format: hicra.data reads them as it reads
    DAPO, and the paper's strict reward accepts a boxed gold answer and refuses an unboxed one."""
    from hicra.data import _normalise, _verl
    from hicra.rehearsal_task import candidates
    from hicra.training.rewards import accuracy_reward

    rows = candidates(12, seed=3)
    assert len({r["prompt"][0]["content"] for r in rows}) == 12
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    got = _normalise("rehearsal", _verl(tmp_path / "train.parquet"))
    assert [g["problem"] for g in got] == [r["prompt"][0]["content"] for r in rows]
    gold = [g["answer"] for g in got]
    assert accuracy_reward([f"so \\boxed{{{a}}}" for a in gold], gold) == [1.0] * 12
    assert accuracy_reward([f"the answer is {a}" for a in gold], gold) == [0.0] * 12
    assert {(r["extra_info"]["kind"], r["extra_info"]["level"]) for r in rows} == {
        (k, lv) for k in ("sum", "more", "less", "times") for lv in ("easy", "hard")
    }
    sft = sft_problems()
    assert not sft & {r["prompt"][0]["content"] for r in candidates(64, seed=1, exclude=sft)}  # no SFT problem


def test_the_shipped_prompts_and_format_adapter_are_what_the_rehearsal_trains_on():
    """data/rehearsal_arith holds pilot-chosen rows (pilot accuracy in [0.125, 0.875], nearest 0.5 first, none an
    SFT problem of the adapter), and data/smollm2_boxed merged onto SmolLM2 answers an easy shipped problem in the
    paper's strict format when decoding greedily (SmolLM2 alone ends with "The answer is 8"; data/README.md)."""
    from hicra.data import load_benchmark
    from hicra.models import load_model
    from hicra.rehearsal_task import chat
    from hicra.training.generate import sample
    from hicra.training.rewards import last_boxed

    rows = pd.read_parquet(ROOT / "data" / "rehearsal_arith" / "train.parquet").to_dict("records")
    acc = [r["extra_info"]["pilot_accuracy"] for r in rows]
    assert len(rows) >= 16 and all(0.125 <= a <= 0.875 for a in acc)
    assert [abs(a - 0.5) for a in acc] == sorted(abs(a - 0.5) for a in acc)
    sft = sft_problems()
    assert not sft & {r["prompt"][0]["content"] for r in rows}
    train = load_benchmark("rehearsal_arith", split="train", limit=4)
    assert [t["problem"] for t in train] == [r["prompt"][0]["content"] for r in rows[:4]]

    model, tok = load_model("data/smollm2_boxed")
    assert tok.name_or_path and model.name_or_path.endswith("smollm2_boxed")
    easy = next(r for r in rows if r["extra_info"]["level"] == "easy")
    out = sample(model, tok, [chat(tok, easy["prompt"][0]["content"])], temperature=0, max_new_tokens=64)[0][0]
    assert last_boxed(out) is not None, out
