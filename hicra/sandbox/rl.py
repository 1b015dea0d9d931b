"""RL on the sandbox: prompts dataset, verifiable reward, validation accuracy.

The reward is the paper's binary outcome reward (§3): 1.0 when the last
``\\boxed{}`` is an expression over the given numbers that equals the target
(reasoning-gym's verifier), else 0.0.

    ds = grpo_dataset(SandboxConfig(), n=2000)
    sandbox_reward(["... \\\\boxed{3 * 7 + 5}"], numbers=[[3, 7, 5]], target=[26])  # [1.0]
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from hicra.sandbox.build import SandboxConfig
from hicra.sandbox.world import Task, make_tasks, prompt, verify
from hicra.store.io import write_json
from hicra.store.paths import weight_files
from hicra.training.generate import sample
from hicra.training.rewards import completion_text, log_boxed_ratio


def grpo_dataset(cfg: SandboxConfig, n: int, split: str | None = None):
    """HF Dataset of ``{"prompt", "numbers", "target"}`` rows (TRL forwards the extra columns to rewards)."""
    import datasets

    tasks = make_tasks(cfg.world_config(), split or cfg.rl_split, n, allow_fewer=True)
    return datasets.Dataset.from_list([{"prompt": prompt(t), "numbers": t.numbers, "target": t.target} for t in tasks])


def sandbox_reward(completions, numbers, target, **kwargs) -> list[float]:
    """TRL reward function: 1.0 for a verified answer, else 0.0; logs ``boxed_ratio`` via TRL's ``log_metric``."""

    log_boxed_ratio(completions, kwargs.get("log_metric"))
    return [
        float(verify(Task(list(nu), int(ta)), completion_text(c))) for c, nu, ta in zip(completions, numbers, target)
    ]


def validator(
    cfg: SandboxConfig,
    n: int,
    temperature: float = 1.0,
    max_new_tokens: int | None = None,
    seed: int = 0,
    k: int = 1,
    warm_dir=None,
    split: str = "val",
):
    """``fn(model, tokenizer) -> accuracy``: avg@k on (up to) ``n`` fixed validation tasks at ``temperature``
    (``split="test"``: the world's held-out test tasks instead, for ``hicra.heldout``).

    The same tasks and sampling seed at every call, so a curve's points differ only by the policy.
    With k samples per task the standard error falls as the within-task noise averages out
    (v2 default: every validation task, k = 2).

    ``warm_dir`` (the warm start's folder): ``fn.initial(model, tokenizer)`` scores the untouched warm start
    once and keeps the number in ``warm_dir/val_cache/``, keyed by the tasks, the sampling settings, the thread
    count and the weight files (``hicra.store.paths.weight_files``); every run from that warm start with the same
    settings reads it instead of sampling the same 798 completions again (a study's 35 runs share one step 0)."""

    tasks = make_tasks(cfg.world_config(), split, n, allow_fewer=True)
    prompts = [prompt(t) for t in tasks]
    max_new_tokens = max_new_tokens or cfg.max_new_tokens

    def validate(model, tokenizer) -> float:
        was_training = model.training
        outs = sample(
            model,
            tokenizer,
            prompts,
            n=k,
            temperature=temperature,
            seed=seed,
            progress=False,
            max_new_tokens=max_new_tokens,
            batch_size=128,
        )
        model.train(was_training)
        return sum(verify(t, c) for t, o in zip(tasks, outs) for c in o) / (len(tasks) * k)

    def initial(model, tokenizer) -> float:
        if warm_dir is None:
            return validate(model, tokenizer)
        key = {
            "tasks": [[list(t.numbers), t.target] for t in tasks],
            "k": k,
            "temperature": temperature,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "weights": weight_files(warm_dir),
        }
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        path = Path(warm_dir) / "val_cache" / f"{digest}.json"
        if path.exists():
            return json.loads(path.read_text())["val_accuracy"]
        acc = validate(model, tokenizer)
        write_json(path, {"val_accuracy": acc, **key})  # atomic: parallel runs may write the same entry
        return acc

    validate.n_tasks = len(tasks)
    validate.initial = initial
    return validate
