"""The GPU `paper` profile's training step, executed: the rehearsal's own command (accelerate, 2 CPU processes,
SmolLM2-135M's HF copy with its format adapter and chat template, the pilot-chosen arithmetic prompts in DAPO-Math's
format, the seed SG list tagged with its tokenizer), at CI
size, and its checkpoint and final model read back the way evaluate and forks read them. `make rehearsal` runs the
whole profile (docs/scale-out.md); this is the part CI can afford."""

import json
import math
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_the_rehearsal_overlay_lists_its_differences_and_keeps_the_paper_steps():
    from hicra.orchestration.profiles import load_profile

    _, paper = load_profile("paper")
    _, reh = load_profile("paper-rehearsal")
    assert [s.name for s in reh if s.name not in ("train-hicra-lora", "rehearsal-proof")] == [s.name for s in paper]
    assert [s.notebook for s in reh if s.notebook] == [s.notebook for s in paper if s.notebook]
    train = next(s for s in reh if s.name == "train-hicra")
    assert train.command[:4] == ["accelerate", "launch", "--config_file", "configs/accelerate/cpu_2proc.yaml"]
    assert "configs/qwen3_4b_base.yaml" in train.command  # the paper's recipe, overridden by listed flags only
    lora = next(s for s in reh if s.name == "train-hicra-lora")
    assert (
        lora.command[-2:] == ["--lora_r", "8"]
        and "train-hicra-lora" in lora.command[lora.command.index("--run_dir") + 1]
    )
    figs = next(s for s in reh if s.name == "03_dynamics")
    assert figs.params["tag"] == "rehearsal" and len(figs.params["runs"]) == 3
    proof = reh[-1]  # after every training run: the learning signal they had (issue #37)
    assert proof.name == "rehearsal-proof" and set(proof.needs) == {"train-grpo", "train-hicra", "train-hicra-lora"}
    assert "--pair=train-grpo-s0,train-hicra-s0" in proof.command


# CI size: one step, 2 groups of 4 completions of 48 tokens per process (the rehearsal: 3 steps, 64 -> 128 tokens)
CI_SIZE = [
    "--max_steps",
    "1",
    "--num_generations",
    "4",
    "--per_device_train_batch_size",
    "8",
    "--gradient_accumulation_steps",
    "1",
    "--max_completion_length",
    "48",
    "--context_schedule",
    "[48, 96]",
    "--n_train",
    "8",
]


def _train(run_root, name: str, *flags) -> Path:
    """The rehearsal profile's command of training step ``name`` (2 processes), at CI size; its run folder."""
    from hicra.orchestration.profiles import load_profile
    from hicra.orchestration.runner import command_line

    _, steps = load_profile("paper-rehearsal", run=str(run_root))
    step = next(s for s in steps if s.name == name)
    res = subprocess.run(command_line(step.command) + CI_SIZE + list(flags), cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return Path(step.command[step.command.index("--run_dir") + 1])


def planning_from_text(tagger, tok, ids, mask):
    """(B, T) planning tokens found on the decoded text: a token is planning when its characters overlap a span
    that ``tagger.spans`` finds in its row's decoded completion (independent of the tagger's token-level mask)."""
    import torch

    out = torch.zeros_like(mask)
    for b in range(len(ids)):
        row = ids[b][mask[b]].tolist()
        text = tok.decode(row, skip_special_tokens=True)
        off = [len(tok.decode(row[:j], skip_special_tokens=True)) for j in range(len(row) + 1)]
        spans = tagger.spans(text)
        cols = mask[b].nonzero().flatten().tolist()
        for j, col in enumerate(cols):
            out[b, col] = any(s < off[j + 1] and e > off[j] for s, e, _ in spans)
    return out


@pytest.fixture(scope="module")
def hicra_run(tmp_path_factory):
    """One step of the rehearsal's HICRA command at CI size (shared by the tests below)."""
    return _train(tmp_path_factory.mktemp("rehearsal") / "r", "train-hicra")


def _loss_inputs(run: Path, rank: int) -> list[dict]:
    import torch

    files = sorted((run / "loss_inputs").glob(f"step_000001_rank{rank}_*.pt"))
    assert files, f"rank {rank} wrote no loss inputs"
    return [torch.load(f, weights_only=True) for f in files]


def test_the_rehearsal_trains_smollm2_through_the_paper_command(hicra_run):
    """The rehearsal's HICRA command (2 processes, SmolLM2's chat template) trains, writes its metrics, rollouts,
    checkpoint and final model; each process's loss received HICRA's advantage: A + 0.2|A| on exactly the tokens the
    tagger finds in the decoded text (checked independently of its token-level mask), A elsewhere."""
    import pandas as pd
    import torch

    from hicra.method.tagger import PlanningTagger
    from hicra.models import load_model, load_tokenizer
    from hicra.store.runfolder import checkpoint_problem

    run = hicra_run
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["step"] == 1 and line["method"] == "hicra" and line["alpha"] == 0.2
    assert line["planning_ratio"] is not None and math.isfinite(line["entropy_execution"])
    params = json.loads((run / "params.json").read_text())
    assert params["processes"] == 2 and params["model"] == "data/smollm2_boxed"
    assert params["dataset"] == "rehearsal_arith"
    roll = pd.read_parquet(run / "rollouts" / "step_000001.parquet")
    assert len(roll) == 16 and all(p[0]["role"] == "user" for p in roll.prompt)  # chat prompts, both ranks' rows
    assert checkpoint_problem(run / "checkpoint-1") is None
    model, tok = load_model(str(run / "final"))  # how evaluate and forks read a run's final model
    assert model.config.vocab_size == len(tok) or model.config.vocab_size >= len(tok)

    tagger = PlanningTagger(ROOT / params["sg_file"], load_tokenizer("smollm2"))
    for rank in (0, 1):  # what each process's loss received
        for b in _loss_inputs(run, rank):
            cm, a, adv = b["completion_mask"].bool(), b["group_advantages"], b["advantages"]
            plan = planning_from_text(tagger, tagger.tokenizer, b["completion_ids"], cm)
            assert torch.equal(b["planning_mask"].bool() & cm, plan)
            want = a[:, None] + 0.2 * a.abs()[:, None] * plan
            assert adv.shape == cm.shape and torch.allclose(adv[cm], want[cm], atol=1e-6)


def test_the_rehearsal_has_a_learning_signal_in_both_processes_and_grpo_and_hicra_diverge(hicra_run, tmp_path):
    """Non-zero advantages reach the loss in both processes, on real planning tokens, and after one step the GRPO
    and HICRA weights differ (the same completions at step 1: the difference is HICRA's Â). On DAPO-Math-17k
    prompts with SmolLM2 alone (the rehearsal before issue #37) every advantage was 0 and this test failed (it
    was a strict xfail then)."""
    from hicra.rehearsal_proof import parameter_distance

    for rank in (0, 1):
        signal = planning_signal = 0
        for b in _loss_inputs(hicra_run, rank):
            cm, a, plan = b["completion_mask"].bool(), b["group_advantages"], b["planning_mask"].bool()
            signal += int(((a[:, None] != 0) & cm).sum())
            planning_signal += int(((a[:, None] != 0) & plan & cm).sum())
        assert signal > 0, f"rank {rank}: every advantage its loss received was 0 (no mixed-reward group)"
        assert planning_signal > 0, f"rank {rank}: no planning token with a non-zero advantage reached its loss"
    grpo = _train(hicra_run.parent, "train-grpo", "--save_steps", "100")
    assert parameter_distance(grpo / "final", hicra_run / "final") > 0  # HICRA's Â made a different update
