"""RL training on a tiny sandbox model: every method, exact HICRA advantages, metrics, kill-and-resume."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, TINY_ROLLOUTS, sandbox_recipe

from hicra.method.dynamics import RECORD_KEYS
from hicra.store.io import truncate_jsonl
from hicra.training.trainer import HICRA_FAMILY, METHODS, HICRAConfig, HICRATrainer

RUN = sandbox_recipe(**TINY_ROLLOUTS, val_every=1, val_n=4, val_k=1, save_steps=10)


def _train(tmp_path, **kw):
    from hicra.train import build_trainer

    trainer, _ = build_trainer({"run_dir": str(tmp_path / "run"), "max_steps": 2, "sandbox": TINY, **RUN, **kw})
    trainer.train()
    return trainer, [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]


@pytest.mark.parametrize("method", METHODS)
def test_each_method_runs_and_logs_complete_finite_lines(tiny_sandbox, method):
    trainer, lines = _train(tiny_sandbox, method=method)
    assert [x["step"] for x in lines] == [0, 1, 2]
    assert set(lines[0]) == {"step", "method", "seed", "val_accuracy"}  # the warm-start level
    for x in lines[1:]:
        for k in RECORD_KEYS + ("val_accuracy",):
            assert k in x, (k, x)
            if x[k] is None:  # undefined, never NaN: only a class with no tokens in the step
                assert k in ("entropy_planning", "ppl_planning") and x["planning_ratio"] == 0, (k, x)
            else:
                assert math.isfinite(x[k]), (k, x)
        assert 0 <= x["planning_ratio"] <= 1
        assert 0 <= x["boxed_ratio"] <= 1  # from the reward function, through TRL's log_metric
    roll = sorted((tiny_sandbox / "run" / "rollouts").glob("step_*.parquet"))
    assert [p.name for p in roll] == ["step_000001.parquet", "step_000002.parquet"]
    import pandas as pd

    df = pd.read_parquet(roll[0])
    assert {"prompt", "completion", "reward", "planning_spans", "step"} <= set(df.columns) and len(df) == 8
    if method == "fork_tokens":
        assert trainer.top_entropy_quantile == 0.2
    if method == "entropy_reg":
        assert trainer.args.entropy_coef > 0
    if method in HICRA_FAMILY:  # the alpha each step used, and the share of tokens it re-weighted
        assert all(0 <= x["alpha"] < 1 and 0 <= x["boosted_ratio"] <= 1 for x in lines[1:])
        if method == "hicra_adaptive":  # two steps are too few to see a plateau: starts as GRPO
            assert [x["alpha"] for x in lines[1:]] == [0.0, 0.0] and x["alpha_guard"] == 1.0
        else:
            assert all(x["alpha"] == 0.2 for x in lines[1:])


def test_advantages_handed_to_loss_are_exact(tiny_sandbox, monkeypatch):
    """Intercept: the loss sees exactly A + alpha*|A|*mask, with mask = tagger(completion)."""
    from trl import GRPOTrainer

    base, seen = [], []
    orig_gen = GRPOTrainer._generate_and_score_completions
    orig_loss = HICRATrainer._compute_loss

    def gen(self, inputs):
        out = orig_gen(self, inputs)
        base.append({k: out[k].clone() for k in ("prompt_ids", "completion_ids", "advantages")})
        return out

    def loss(self, model, inputs):
        seen.append({k: inputs[k].clone() for k in ("prompt_ids", "completion_ids", "advantages", "completion_mask")})
        return orig_loss(self, model, inputs)

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", gen)
    monkeypatch.setattr(HICRATrainer, "_compute_loss", loss)
    # a tiny model trained long enough to write strategic phrases, so the mask is not empty
    trainer, _ = _train(
        tiny_sandbox, method="hicra", hicra_alpha=0.2, seed=3, sandbox={**TINY, "sft_steps": 80, "learning_rate": 1e-2}
    )
    checked = planning = 0
    for batch in seen:
        mask = trainer.tagger.mask(batch["completion_ids"], batch["completion_mask"])
        planning += int(mask.sum())
        for i in range(len(batch["advantages"])):
            row = torch.cat([batch["prompt_ids"][i], batch["completion_ids"][i]])
            A = next(
                b["advantages"][j]
                for b in base
                for j in range(len(b["advantages"]))
                if torch.equal(torch.cat([b["prompt_ids"][j], b["completion_ids"][j]]), row)
            )
            want = A + 0.2 * A.abs() * mask[i].float()
            assert torch.equal(batch["advantages"][i], want)
            checked += 1
    assert checked == 16 and planning > 0


def test_hicra_needs_a_valid_sg_file(tmp_path):
    with pytest.raises(ValueError, match="needs sg_file"):
        HICRAConfig(output_dir=str(tmp_path), method="hicra", use_cpu=True)
    with pytest.raises(ValueError, match="method must be one of"):
        HICRAConfig(output_dir=str(tmp_path), method="ppo", use_cpu=True)
    bad = tmp_path / "bad.json"
    bad.write_text('{"grams": [\n {"gram": "wait", "kind": "backtracing"},\n {"gram": "", "kind": "branching"}\n]}')
    from hicra.store.sgfile import SGFileError, read_sg_file

    with pytest.raises(SGFileError, match=r"bad.json:3:"):
        read_sg_file(bad)
    from hicra.train import dry_run

    with pytest.raises(SGFileError, match="not found"):
        dry_run({"model": "Qwen/Qwen3-4B-Base", "method": "hicra", "sg_file": str(tmp_path / "missing.json")})


CONFIGS = Path(__file__).parent.parent / "configs"
STEP_CONFIGS = {
    "grams_": "hicra.grams.step:GramsConfig",
    "eval_": "hicra.evaluate:EvalConfig",
    "errors_": "hicra.error_analysis:ErrorsConfig",
    "forks_": "hicra.forks:ForksConfig",
}
RECIPES = [p for p in sorted(CONFIGS.glob("*.yaml")) if not p.name.startswith(tuple(STEP_CONFIGS))]


@pytest.mark.parametrize("path", [p for p in sorted(CONFIGS.glob("*.yaml")) if p not in RECIPES], ids=lambda p: p.name)
def test_step_configs_load(path):
    """Every non-training config in configs/ is valid for its step's dataclass."""
    import importlib

    from hicra.stepkit.config import load_config

    mod, cls = next(v for k, v in STEP_CONFIGS.items() if path.name.startswith(k)).split(":")
    load_config(getattr(importlib.import_module(mod), cls), str(path))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_dry_run(recipe, capsys):
    from hicra.train import main

    main([str(recipe), "--dry_run", "true"])  # the CLI's own entry point, in this process
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ok"] is True


def test_truncate_jsonl(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "tor')
    assert truncate_jsonl(p, 2) == 2
    assert [json.loads(x)["step"] for x in p.read_text().splitlines()] == [1, 2]


@pytest.mark.slow
def test_kill_and_resume_loses_and_duplicates_nothing(tmp_path):
    """A CLI run SIGKILLs itself right after writing step 5's line (checkpoint at 4), is resumed,
    and the metrics file ends with each step exactly once."""
    code = (
        "import os, signal, sys, hicra.training.trainer as ht\n"
        "log = ht.HICRATrainer.log\n"
        "def killing_log(self, logs, start_time=None):\n"
        "    log(self, logs, start_time)\n"
        "    if os.environ.get('KILL_AT') and self.state.global_step == int(os.environ['KILL_AT']):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "ht.HICRATrainer.log = killing_log\n"
        "from hicra.train import main; main(sys.argv[1:])"
    )
    flags = [
        "--run_dir",
        str(tmp_path / "run"),
        "--method",
        "hicra",
        "--max_steps",
        "8",
        "--save_steps",
        "2",
        "--num_generations",
        "4",
        "--per_device_train_batch_size",
        "8",
        "--max_completion_length",
        "24",
        "--val_every",
        "0",
        "--n_train",
        "64",
        "--sandbox",
        json.dumps(TINY),
    ]
    env = {**os.environ, "HICRA_CACHE": str(tmp_path / "cache")}
    metrics = tmp_path / "run" / "metrics.jsonl"
    r = subprocess.run(
        [sys.executable, "-c", code, *flags], env={**env, "KILL_AT": "5"}, capture_output=True, timeout=600
    )
    assert r.returncode == -signal.SIGKILL
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert (tmp_path / "run" / "checkpoint-4").exists() and not (tmp_path / "run" / "checkpoint-6").exists()
    # the run recorded where it computes, readable by the group (mkstemp's 0600 was unreadable on a shared box)
    params_file = tmp_path / "run" / "params.json"
    umask = os.umask(0)
    os.umask(umask)
    assert params_file.stat().st_mode & 0o777 == 0o666 & ~umask
    params = json.loads(params_file.read_text())
    env_rec = params["environment"]
    assert env_rec["packages"]["torch"] == torch.__version__ and env_rec["packages"]["trl"].startswith("1.16")
    assert env_rec["torch_threads"] >= 1 and env_rec["python"] == sys.version.split()[0] and len(env_rec["key"]) == 12
    # a resume in another environment (here: another thread count) is said and recorded, the first record kept
    from hicra.environment import environment_key

    started = {**env_rec, "torch_threads": 99}
    params_file.write_text(json.dumps({**params, "environment": {**started, "key": environment_key(started)}}))
    r = subprocess.run(
        [sys.executable, "-c", code, *flags, "--resume", "true"], env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert steps == list(range(1, 9))
    assert json.loads(r.stdout.strip().splitlines()[-1])["steps"] == 8
    assert f"resuming in another environment: torch_threads 99 vs {env_rec['torch_threads']}" in r.stdout
    after = json.loads(params_file.read_text())
    assert after["environment"]["torch_threads"] == 99 and after["resumed_in"][0]["key"] == env_rec["key"]


def test_dynamic_sampling_keeps_only_groups_with_signal(tiny_sandbox, monkeypatch):
    """DAPO dynamic sampling: a reward that is constant on half the prompts; the loss must only see
    groups whose rewards differ, the batch size stays fixed, and refill rounds are logged."""
    from hicra.sandbox.build import SandboxConfig, build, load
    from hicra.sandbox.rl import grpo_dataset

    def reward(completions, target, **kw):  # even targets: constant 0 (no signal); odd: depends on length
        return [0.0 if t % 2 == 0 else float(len(str(c)) % 2) for c, t in zip(completions, target)]

    scfg = SandboxConfig(seed=0, **TINY)
    model, tok = load(build(scfg)["model_dir"])
    args = HICRAConfig(
        output_dir=str(tiny_sandbox / "run"),
        method="grpo",
        dynamic_sampling=True,
        max_steps=2,
        num_generations=4,
        per_device_train_batch_size=8,
        max_completion_length=24,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        seed=0,
    )
    trainer = HICRATrainer(
        model=model, reward_funcs=[reward], args=args, train_dataset=grpo_dataset(scfg, 32), processing_class=tok
    )
    seen = []
    orig = HICRATrainer._compute_loss
    monkeypatch.setattr(HICRATrainer, "_compute_loss", lambda self, m, inp: (seen.append(inp), orig(self, m, inp))[1])
    trainer.train()
    assert len(seen) == 2 and all(len(b["advantages"]) == 8 for b in seen)
    for b in seen:  # binary rewards that differ within a group give every member a non-zero advantage
        assert (b["advantages"].abs() > 1e-6).all(), b["advantages"]
        assert int(b["num_items_in_batch"]) == int(b["completion_mask"].sum())
    lines = [json.loads(x) for x in open(tiny_sandbox / "run" / "metrics.jsonl")]
    assert [x["step"] for x in lines] == [1, 2]


def test_sampling_does_not_reset_the_global_rng(tiny_sandbox):
    """Validation inside training samples with its own seed but must leave the trainer's RNG stream alone."""
    from hicra.sandbox.build import SandboxConfig, build, load
    from hicra.training.generate import sample

    model, tok = load(build(SandboxConfig(seed=0, **TINY))["model_dir"])
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = sample(model, tok, ["Numbers: 1 2 3. Target: 6.\n"], n=2, max_new_tokens=8, seed=7, progress=False)
    assert torch.equal(torch.rand(3), expected)
    assert sample(model, tok, ["Numbers: 1 2 3. Target: 6.\n"], n=2, max_new_tokens=8, seed=7, progress=False) == a


def test_prune_run_dir_removes_stale_files(tmp_path):
    from hicra.training.trainer import prune_run_dir

    (tmp_path / "rollouts").mkdir()
    for s in (1, 2, 3, 40):
        (tmp_path / "rollouts" / f"step_{s:06d}.parquet").write_text("x")
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-40").mkdir()
    assert prune_run_dir(tmp_path, 2) == ["step_000003.parquet", "step_000040.parquet", "checkpoint-40"]
    assert sorted(p.name for p in (tmp_path / "rollouts").iterdir()) == ["step_000001.parquet", "step_000002.parquet"]
    assert prune_run_dir(tmp_path, 0) == ["step_000001.parquet", "step_000002.parquet", "checkpoint-2"]


def test_context_schedule_raises_the_cap_when_completions_clip(tiny_sandbox):
    """Paper recipe: 16K -> 32K when the clip rate passes 20 %; here 8 -> 24 tokens when any completion clips."""
    trainer, lines = _train(
        tiny_sandbox, method="grpo", context_schedule=[8, 24], context_switch_clip=0.0, max_completion_length=8
    )
    steps = [x for x in lines if "reward" in x]
    assert steps[0]["clip_ratio"] > 0 and steps[0]["max_completion_length"] == 24
    assert trainer.max_completion_length == 24 and trainer.generation_config.max_new_tokens == 24
    with pytest.raises(ValueError, match="increasing"):
        HICRAConfig(output_dir=str(tiny_sandbox), method="grpo", use_cpu=True, context_schedule=[32, 16])


def _digit_share(completions, **kwargs):
    """A dense reward the tiny policy can move quickly: the share of digit characters."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


def _dense_run(tmp_path, name, sandbox=TINY, peft_config=None, **kw):
    """A GRPO-family run on the dense digit-share reward (advantages are never all zero); its metrics lines
    without timings. ``kw``: HICRAConfig fields over the defaults below."""
    from hicra.sandbox.build import SandboxConfig, build, load
    from hicra.sandbox.rl import grpo_dataset

    scfg = SandboxConfig(**sandbox)
    info = build(scfg, progress=False)
    model, tok = load(info["model_dir"])
    args = HICRAConfig(
        **{
            **dict(
                output_dir=str(tmp_path / name),
                method="grpo",
                use_cpu=True,
                bf16=False,
                seed=0,
                learning_rate=5e-2,
                lr_scheduler_type="constant",
                max_steps=3,
                num_generations=4,
                per_device_train_batch_size=16,
                max_completion_length=16,
                temperature=1.0,
                beta=0.0,
                save_strategy="no",
                report_to=[],
                disable_tqdm=True,
                save_rollouts=False,
                sg_file=str(Path(info["model_dir"]) / "grams.json"),
            ),
            **kw,
        }
    )
    trainer = HICRATrainer(
        model=model,
        reward_funcs=[_digit_share],
        args=args,
        processing_class=tok,
        train_dataset=grpo_dataset(scfg, 32),
        peft_config=peft_config,
    )
    trainer.train()
    return [
        {
            k: v for k, v in json.loads(x).items() if k not in ("step_time", "method", "alpha", "boosted_ratio")
        }  # the HICRA family's bookkeeping
        for x in open(tmp_path / name / "metrics.jsonl")
    ]


def _reward_curve(tmp_path, name, learning_rate):
    return [x["reward"] for x in _dense_run(tmp_path, name, learning_rate=learning_rate, max_steps=12)]


def test_grpo_raises_training_reward(tiny_sandbox):
    """The objective itself: 12 GRPO steps raise the mean reward well above the same run at lr 0
    (same seed, same prompts), so a sign flip, zero advantages or a detached loss fails here."""
    still = _reward_curve(tiny_sandbox, "lr0", 0.0)
    moved = _reward_curve(tiny_sandbox, "lr", 5e-2)
    assert len(moved) == len(still) == 12
    late = lambda r: sum(r[-4:]) / 4  # noqa: E731
    assert late(moved) > late(still) + 0.1, (still, moved)
    assert late(moved) > sum(moved[:4]) / 4 + 0.1, moved


def test_the_dry_run_checks_the_config_the_trainer_trains_with(tiny_sandbox):
    """One HICRAConfig per run (#36): the dry run builds and checks it, the trainer trains with that very object, and
    a sandbox recipe's SG file is the one its build writes."""
    from hicra.train import Recipe, build_trainer, dry_run

    recipe = Recipe.parse({"run_dir": str(tiny_sandbox / "run"), "max_steps": 1, "sandbox": TINY, **RUN})
    assert dry_run(recipe)["ok"]
    checked = recipe.args
    trainer, _ = build_trainer(recipe)
    assert trainer.args is checked
    assert Path(checked.sg_file).name == "grams.json" and Path(checked.sg_file).exists()


def test_trimming_completion_padding_changes_no_loss_or_gradient(tiny_sandbox, monkeypatch):
    """Mini-batches are cut to their own longest row before the loss: extra padding columns must not
    change the loss or any gradient (hicra.training.speed.trim_completion_padding)."""
    from trl import GRPOTrainer

    from hicra.train import build_trainer
    from hicra.training.speed import trim_completion_padding as _trim_completion_padding

    trainer, _ = build_trainer(
        {
            "run_dir": str(tiny_sandbox / "run"),
            "max_steps": 1,
            "sandbox": TINY,
            **RUN,
            "method": "hicra",
            "val_every": 0,
        }
    )
    seen = []
    orig = HICRATrainer._compute_loss
    monkeypatch.setattr(HICRATrainer, "_compute_loss", lambda self, m, inp: (seen.append(inp), orig(self, m, inp))[1])
    trainer.train()
    batch = dict(seen[0])
    torch.manual_seed(0)  # advantages with signal (the tiny warm start's rewards may all be equal)
    batch["advantages"] = torch.randn(batch["completion_mask"].shape) * batch["completion_mask"]
    pad = 7  # widen every completion-aligned tensor with columns that are padding in every row
    wide = dict(batch)
    for k in ("completion_ids", "completion_mask", "advantages", "planning_mask"):
        v = batch[k]
        wide[k] = torch.cat([v, torch.zeros(v.size(0), pad, dtype=v.dtype)], dim=1)
    cut = _trim_completion_padding(wide)
    assert cut["completion_ids"].shape == batch["completion_ids"].shape[:1] + (
        int(batch["completion_mask"].sum(0).nonzero().max()) + 1,
    )
    assert cut["prompt_ids"] is batch["prompt_ids"]

    def loss_and_grads(inputs):
        trainer.model.zero_grad()
        loss = GRPOTrainer._compute_loss(trainer, trainer.model, inputs)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]

    l_wide, g_wide = loss_and_grads(wide)
    l_cut, g_cut = loss_and_grads(cut)
    assert torch.allclose(l_wide, l_cut, atol=1e-6) and abs(float(l_cut)) > 0
    assert len(g_wide) == len(g_cut) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_wide, g_cut))


def test_micro_batches_by_length_give_the_same_update_with_less_padding(tiny_sandbox, monkeypatch):
    """``micro_batches: length`` (the default for sum-over-rows losses) deals a generation batch's rows to the
    micro-batches in order of completion length: the accumulated loss and every gradient must equal those of
    TRL's random grouping of the same rows, with fewer padded columns; methods whose loss takes statistics per
    micro-batch keep the random grouping, and asking them for 'length' is refused."""
    from hicra.train import build_trainer
    from hicra.training.trainer import group_by_length

    trainer, _ = build_trainer(
        {
            "run_dir": str(tiny_sandbox / "run-mb"),
            "max_steps": 1,
            "sandbox": TINY,
            **RUN,
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 4,
            "method": "hicra",
            "val_every": 0,
            "max_completion_length": 48,
        }
    )
    assert trainer.args.micro_batches == "length" and trainer.args.steps_per_generation == 4
    seen = []
    orig = HICRATrainer._compute_loss
    monkeypatch.setattr(HICRATrainer, "_compute_loss", lambda self, m, inp: (seen.append(inp), orig(self, m, inp))[1])
    trainer.train()
    assert len(seen) == 4
    lengths = [b["completion_mask"].sum(1) for b in seen]
    assert all(a.max() <= b.min() for a, b in zip(lengths, lengths[1:]))  # dealt in order of length
    assert lengths[0].min() < lengths[-1].min(), lengths  # the tiny policy's lengths vary

    torch.manual_seed(0)  # advantages with signal, then TRL's grouping of the same 16 rows: a random deal
    for b in seen:
        b["advantages"] = torch.randn(b["completion_mask"].shape) * b["completion_mask"]
    merged = group_by_length(seen)  # merging re-sorts: the same rows, in length order
    perm = torch.randperm(16)
    shuffled = {
        k: (v[perm] if isinstance(v, torch.Tensor) and v.dim() > 0 else v)
        for k, v in {
            k: (torch.cat([b[k] for b in merged]) if isinstance(v, torch.Tensor) and v.dim() > 0 else v)
            for k, v in merged[0].items()
        }.items()
    }
    random_deal = [
        {k: (v[i * 4 : (i + 1) * 4] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in shuffled.items()}
        for i in range(4)
    ]

    def update(batches):
        trainer.model.zero_grad()
        total = sum(trainer._compute_loss(trainer.model, b) for b in batches)
        total.backward()
        return total.detach(), [p.grad.clone() for p in trainer.model.parameters()]

    def columns(batches):
        return sum(int(b["completion_mask"].sum(0).nonzero().max()) + 1 for b in batches)

    l_len, g_len = update(merged)
    l_rnd, g_rnd = update(random_deal)
    assert abs(float(l_len)) > 0 and torch.allclose(l_len, l_rnd, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_len, g_rnd))
    assert columns(merged) <= columns(random_deal)
    # the padding it saves, on lengths 1..16 dealt at random to 4 micro-batches: widths 4, 8, 12, 16 once sorted
    mask = (torch.arange(16)[None] < torch.randperm(16)[:, None] + 1).long()
    rows = {"completion_mask": mask, "ids": list(range(16)), "num_items_in_batch": mask.sum()}
    dealt = group_by_length(
        [{k: (v[i * 4 : (i + 1) * 4] if k != "num_items_in_batch" else v) for k, v in rows.items()} for i in range(4)]
    )
    assert [int(b["completion_mask"].sum(1).max()) for b in dealt] == [4, 8, 12, 16]
    assert sorted(i for b in dealt for i in b["ids"]) == list(range(16))
    assert all(int(b["num_items_in_batch"]) == 136 for b in dealt)
    for b in dealt:  # every row keeps its own values
        assert all(int(m.sum()) == int(mask[i].sum()) for i, m in zip(b["ids"], b["completion_mask"]))

    for method in ("fork_tokens", "entropy_reg"):  # entropy statistics per micro-batch: grouping matters
        cfg = dict(output_dir=str(tiny_sandbox / "x"), method=method, use_cpu=True)
        assert HICRAConfig(**cfg).micro_batches == "random"
        with pytest.raises(ValueError, match="per micro-batch"):
            HICRAConfig(**cfg, micro_batches="length")


def test_plain_lm_head_matches_trls_fused_kernel(tiny_sandbox, monkeypatch):
    """``lm_head: auto`` scores a tiny vocabulary from full logits (faster on CPU); the loss, every gradient and
    the entropies must equal TRL's fused kernel's on the same batch, and big or soft-capped heads keep the kernel."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOTrainer

    from hicra.train import build_trainer
    from hicra.training.speed import use_plain_head as _use_plain_head

    trainer, _ = build_trainer(
        {
            "run_dir": str(tiny_sandbox / "run-head"),
            "max_steps": 1,
            "sandbox": TINY,
            **RUN,
            "method": "hicra",
            "val_every": 0,
            "temperature": 0.7,
        }
    )
    assert trainer._plain_head  # the sandbox's vocabulary is small: auto -> plain
    seen = []
    orig = HICRATrainer._compute_loss
    monkeypatch.setattr(HICRATrainer, "_compute_loss", lambda self, m, inp: (seen.append(inp), orig(self, m, inp))[1])
    trainer.train()
    batch = dict(seen[0])
    torch.manual_seed(0)
    batch["advantages"] = torch.randn(batch["completion_mask"].shape) * batch["completion_mask"]

    def run(plain):
        trainer._plain_head = plain
        trainer.model.zero_grad()
        trainer._stash = None
        loss = GRPOTrainer._compute_loss(trainer, trainer.model, batch)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in trainer.model.parameters()], trainer._stash

    l_f, g_f, (lp_f, ent_f) = run(False)
    l_p, g_p, (lp_p, ent_p) = run(True)
    cm = batch["completion_mask"].bool()
    assert abs(float(l_f)) > 0 and torch.allclose(l_f, l_p, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_f, g_p))
    assert torch.allclose(lp_f[cm], lp_p[cm], atol=1e-5) and torch.allclose(ent_f[cm], ent_p[cm], atol=1e-5)
    assert float(ent_p[cm].mean()) > 0.01

    def tiny(**kw):
        return LlamaForCausalLM(
            LlamaConfig(
                hidden_size=8,
                intermediate_size=16,
                num_hidden_layers=1,
                num_attention_heads=1,
                num_key_value_heads=1,
                **kw,
            )
        )

    assert not _use_plain_head("auto", tiny(vocab_size=50_000))  # real vocabularies keep TRL's kernel
    assert not _use_plain_head("auto", tiny(vocab_size=512, final_logit_softcapping=30.0))
    assert _use_plain_head("plain", tiny(vocab_size=50_000)) and not _use_plain_head("fused", tiny(vocab_size=512))
    with pytest.raises(ValueError, match="soft-capping"):
        _use_plain_head("plain", tiny(vocab_size=512, final_logit_softcapping=30.0))
    with pytest.raises(ValueError, match="lm_head must be"):
        HICRAConfig(output_dir=str(tiny_sandbox / "x"), lm_head="fast", use_cpu=True)


def _metric_lines(tmp_path, name, **kw):
    from hicra.train import build_trainer

    trainer, _ = build_trainer(
        {"run_dir": str(tmp_path / name), "max_steps": 2, "sandbox": TINY, **RUN, "rollout": "compact", **kw}
    )
    trainer.train()
    drop = ("step_time", "method")
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in open(tmp_path / name / "metrics.jsonl")]


def test_same_seed_gives_the_same_run(tiny_sandbox):
    """Determinism on one machine: the compacting sampler, rewards, loss and validation repeat exactly."""
    a = _metric_lines(tiny_sandbox, "a", method="hicra")
    assert a == _metric_lines(tiny_sandbox, "b", method="hicra") and len(a) == 3 and a[1]["length"] > 0


PHRASING = {**TINY, "sft_steps": 80, "learning_rate": 1e-2}  # a tiny warm start that writes some strategic phrases


def test_hicra_at_alpha_zero_is_grpo(tiny_sandbox):
    """A + 0 * |A| = A: HICRA with alpha 0 reproduces GRPO's run exactly on the same seed (the alpha sweep's anchor);
    alpha > 0 on the same samples changes the loss."""
    dense = dict(sandbox=PHRASING, rollout="compact")
    grpo = _dense_run(tiny_sandbox, "grpo", method="grpo", **dense)
    for m in ("hicra", "hicra_gated", "hicra_verl"):  # each variant, at alpha 0, is GRPO exactly
        assert grpo == _dense_run(tiny_sandbox, f"{m}0", method=m, hicra_alpha=0.0, **dense), m
    hicra = _dense_run(tiny_sandbox, "hicra", method="hicra", hicra_alpha=0.5, **dense)
    assert grpo[0]["planning_ratio"] > 0
    assert hicra[0]["reward"] == grpo[0]["reward"] and hicra[0]["loss"] != grpo[0]["loss"]


def test_hierarchy_metrics_reach_tensorboard(tiny_sandbox):
    """report_to tensorboard: each step's hierarchy line is in the event file under train/hierarchy/<key>."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, lines = _train(tiny_sandbox, method="hicra", report_to=["tensorboard"])
    acc = EventAccumulator(str(next((tiny_sandbox / "run").rglob("events.out.tfevents.*")).parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for key in (
        "semantic_entropy",
        "entropy_execution",
        "ppl_execution",
        "planning_ratio",
        "alpha",
        "val_accuracy",
        "accuracy",
        "entropy_planning",
    ):  # every numeric value of the metrics lines (the tiny model may
        if lines[-1].get(key) is not None:  # write no planning token: then entropy_planning is undefined)
            assert f"train/hierarchy/{key}" in tags, (key, sorted(tags))
    assert {"train/hierarchy/semantic_entropy", "train/hierarchy/alpha", "train/hierarchy/val_accuracy"} <= tags
    got = [(e.step, e.value) for e in acc.Scalars("train/hierarchy/semantic_entropy")]
    assert got == [(x["step"], pytest.approx(x["semantic_entropy"])) for x in lines[1:]]


def test_lora_adapters_train_save_reload_merge_and_evaluate(tiny_sandbox):
    """lora_r > 0: final/ holds the adapter; load_model(final/) puts it on its base and merges it; final-merged/
    (merge_lora) is the same model; hicra.evaluate reads the adapter folder like any model."""
    from hicra import evaluate as E
    from hicra.models import load_model
    from hicra.train import run

    s = run(
        {
            "run_dir": str(tiny_sandbox / "run"),
            "max_steps": 2,
            "sandbox": TINY,
            **RUN,
            "method": "hicra",
            "lora_r": 4,
            "merge_lora": True,
            "learning_rate": 1e-2,
        }
    )
    final = tiny_sandbox / "run" / "final"
    assert s["steps"] == 2 and (final / "adapter_config.json").exists() and not (final / "config.json").exists()
    ids = torch.tensor([[5, 17, 23, 42, 8]])
    adapted, _ = load_model(str(final))
    merged, _ = load_model(str(tiny_sandbox / "run" / "final-merged"))
    base, _ = load_model(json.loads((final / "adapter_config.json").read_text())["base_model_name_or_path"])
    with torch.no_grad():
        a, m, b = (x(ids).logits for x in (adapted, merged, base))
    assert torch.allclose(a, m, atol=1e-5)  # the adapter merged on load is the merged model
    assert a.shape == b.shape
    ev = E.run(
        E.EvalConfig(
            run_dir=str(tiny_sandbox / "ev"),
            models={"LoRA": str(final)},
            benchmarks=["sandbox"],
            k={"sandbox": 1},
            limit=4,
            max_new_tokens=24,
            sandbox=TINY,
            figures_dir=str(tiny_sandbox / "fig"),
        )
    )
    assert ev["models"]["LoRA"]["sandbox"]["n"] == 4


def test_lora_learns_on_a_dense_reward(tiny_sandbox):
    """With a reward that always separates a group, LoRA's B matrices move off their zero start."""
    from peft import LoraConfig

    _dense_run(
        tiny_sandbox,
        "lora",
        max_steps=2,
        save_strategy="steps",
        save_steps=2,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    from safetensors.torch import load_file

    w = load_file(str(next((tiny_sandbox / "lora").rglob("adapter_model.safetensors"))))
    lora_b = [v for k, v in w.items() if "lora_B" in k]
    assert lora_b and any(v.abs().max() > 0 for v in lora_b)


@pytest.mark.slow
def test_lora_on_smollm2(tmp_path):
    """The real 135M model trains one HICRA step with LoRA on GSM8K prompts; final/ is a loadable adapter."""
    from hicra.models import load_model
    from hicra.train import run

    s = run(
        {
            "model": "smollm2",
            "dataset": "gsm8k",
            "run_dir": str(tmp_path / "run"),
            "method": "hicra",
            "sg_file": "data/grams/seed_grams.json",
            "lora_r": 8,
            "max_steps": 1,
            "num_generations": 2,
            "per_device_train_batch_size": 2,
            "max_completion_length": 8,
            "n_train": 2,
            "use_cpu": True,
            "bf16": False,
            "report_to": [],
            "save_strategy": "no",
            "learning_rate": 1e-4,
        }
    )
    assert s["steps"] == 1 and (tmp_path / "run" / "final" / "adapter_config.json").exists()
    model, tok = load_model(str(tmp_path / "run" / "final"))
    assert model.config.vocab_size == len(tok) or model.config.vocab_size >= len(tok)


def test_a_method_is_one_registration(tiny_sandbox):
    """A new method registered in hicra.method.advantage (its rule, its needs, its colour) is accepted by the config and
    trains with its per-token advantages, with no other file touched."""
    import torch

    from hicra.method import advantage
    from hicra.method.advantage import REGISTRY, hicra_advantages, register

    @register("hicra_double", "#000000", needs_sg=True)
    def _double(A, plan, cm, gate, ctx):  # the additive rule at twice alpha
        return hicra_advantages(A, plan, 2 * ctx["alpha"]), plan & torch.as_tensor(cm).bool()

    try:
        with pytest.raises(ValueError, match="needs sg_file"):
            HICRAConfig(output_dir=str(tiny_sandbox / "x"), method="hicra_double", use_cpu=True, report_to=[])
        trainer, lines = _train(tiny_sandbox, method="hicra_double")
        assert [x["step"] for x in lines] == [0, 1, 2] and all("boosted_ratio" in x for x in lines[1:])
        A, plan, cm = torch.tensor([1.0, -1.0]), torch.tensor([[1, 0], [1, 0]]).bool(), torch.ones(2, 2)
        out, _ = advantage.token_advantages("hicra_double", A, plan, cm, alpha=0.2)
        assert torch.allclose(out, torch.tensor([[1.4, 1.0], [-0.6, -1.0]]))
        with pytest.raises(ValueError, match="registered twice"):
            register("hicra_double", "#111111")(_double)
    finally:
        REGISTRY.pop("hicra_double", None)


def test_a_resume_after_the_last_checkpoint_trains_nothing_more(tiny_sandbox):
    """A run stopped after its last step's checkpoint but before its summary (a Ctrl-C at the very end) resumes to
    the same run: no step past max_steps (transformers' loop ran one more), final/ and summary.json written."""
    from hicra.train import run

    data = {"run_dir": str(tiny_sandbox / "end"), "max_steps": 2, "sandbox": TINY, **RUN}
    data["save_steps"] = 1
    run(data)
    d = tiny_sandbox / "end"
    (d / "summary.json").unlink()
    shutil.rmtree(d / "final")
    summary = run({**data, "resume": True})
    assert [json.loads(x)["step"] for x in open(d / "metrics.jsonl")] == [0, 1, 2]
    assert summary["steps"] == 2 and (d / "final" / "model.safetensors").exists()
    assert json.loads((d / "summary.json").read_text())["steps"] == 2
