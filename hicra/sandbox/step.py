"""Step 00: build (or reuse) the sandbox and its warm start, and draw its calibration figure.

Why: every later step trains or scores on this build; the calibration shows where the warm start stands before
RL (accuracy per difficulty with Wilson intervals, and why its failures fail: the oracle's planning vs execution).
Notebook ``00_sandbox`` and ``python -m hicra.sandbox`` both call ``run`` and write the same files:
``<run_dir>/params.json``, ``<run_dir>/sandbox.json`` and ``figures/sandbox_calibration.{png,pdf}``.

    python -m hicra.sandbox                                        # the default v2 build (shipped: installs in < 1 s)
    python -m hicra.sandbox --sandbox '{"difficulty": "v1"}' --force true   # rebuild a v1 world here
"""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import torch

from hicra.sandbox.build import SandboxConfig, build, calibration_by_difficulty, load
from hicra.stepkit.cli import from_dict
from hicra.stepkit.plotting import PALETTE, save_figure, setup_style
from hicra.stepkit.steps import StepConfig, start_step
from hicra.store.io import write_json
from hicra.store.paths import resolve


@dataclasses.dataclass
class BuildConfig(StepConfig):
    run_dir: str = "runs/demo"
    seed: int = 0  # world, tokenizer and warm-start seed
    sandbox: dict = dataclasses.field(
        default_factory=dict,
        metadata={"help": 'SandboxConfig overrides, e.g. {"difficulty": "v1"} or {"sft_steps": 1000}'},
    )
    n_calibration: int = 200  # validation tasks per difficulty in the calibration figure
    force: bool = False  # rebuild even when the build is cached or shipped


def fig_calibration(table, difficulty: str, seed: int):
    """Warm-start accuracy per difficulty (Wilson 95 % CI) and the oracle's failure kinds."""

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.bar(table.difficulty, table.accuracy, color=PALETTE["grpo"], alpha=0.85)
    ax.errorbar(
        table.difficulty,
        table.accuracy,
        yerr=[table.accuracy - table.ci_lo, table.ci_hi - table.accuracy],
        fmt="none",
        ecolor="black",
        capsize=4,
    )
    for x, (hi, n) in enumerate(zip(table.ci_hi, table.n)):
        ax.text(x, hi + 0.01, f"n = {n}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, max(0.5, float(table.ci_hi.max()) + 0.1))
    ax.set(ylabel="accuracy at T = 1 (95% Wilson CI)", xlabel="difficulty", title="Warm-start accuracy")
    ax = axes[1]
    plan, exe = table.planning_errors / table.n, table.execution_errors / table.n
    ax.bar(table.difficulty, plan, label="planning / strategy error", color=PALETTE["planning"])
    ax.bar(table.difficulty, exe, bottom=plan, label="execution error", color=PALETTE["execution"])
    ax.set(ylim=(0, 1), ylabel="share of rollouts", xlabel="difficulty", title="Why rollouts fail (oracle)")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    fig.suptitle(f"Sandbox calibration · model trained on '{difficulty}' · seed {seed}", y=1.02)
    return fig


def run(cfg: BuildConfig) -> dict:
    """Build or reuse the sandbox, score its calibration, save the figure and ``sandbox.json``."""

    out = start_step(cfg, "00_sandbox")
    scfg = from_dict(SandboxConfig, {"seed": cfg.seed, **cfg.sandbox})
    torch.manual_seed(cfg.seed)
    info = build(scfg, force=cfg.force)
    model, tok = load(info["model_dir"])
    table = calibration_by_difficulty(scfg, model, tok, n=cfg.n_calibration)
    setup_style()
    fig = fig_calibration(table, scfg.difficulty, cfg.seed)
    paths = save_figure(fig, "sandbox_calibration", cfg.figures_dir)
    plt.close(fig)
    summary = {
        **{k: info[k] for k in ("model_dir", "build_seconds", "val_accuracy", "errors")},
        "cached": info.get("cached", False),
        "seed": cfg.seed,
        "calibration": table.to_dict("records"),
        "figures": [str(p) for p in paths],
    }
    write_json(resolve(out) / "sandbox.json", summary)
    return summary
