"""One training step's dynamics line: token statistics by class and the rollouts' statistics (issue #36 split).

What: ``token_stats`` turns the step's summed planning/execution token log-probs and entropies into the planning
ratio, per-class entropy and perplexity; ``dynamics_from`` adds reward, accuracy, length, clip ratio, the
strategic-gram statistics and pass@k from TRL's logs and the step's rollouts.
Why its own module: the metrics line's arithmetic is pure and testable without a trainer.
How to run: ``HICRATrainer.log`` writes one line a step to ``<run_dir>/metrics.jsonl`` with them:

    from hicra.training.step_stats import token_stats
    token_stats({"n_planning": 2, "n_execution": 6, "ent_planning": 1.0, ...})
"""

from __future__ import annotations

import numpy as np
import torch

from hicra.method.dynamics import gram_statistics
from hicra.method.metrics import pass_at_k


def token_stats(sums: dict) -> dict:
    """planning_ratio and per-class mean entropy and perplexity from the step's token sums."""
    n_p, n_e = sums.get("n_planning", 0), sums.get("n_execution", 0)
    rec = {"planning_ratio": n_p / (n_p + n_e) if n_p + n_e else None}
    for name, n in (("planning", n_p), ("execution", n_e)):
        rec[f"entropy_{name}"] = sums[f"ent_{name}"] / n if n else None
        rec[f"ppl_{name}"] = float(torch.exp(torch.tensor(-sums[f"lp_{name}"] / n))) if n else None
    return rec


def dynamics_from(logs: dict, rollouts: list[dict], group_size: int, tagger) -> dict:
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
