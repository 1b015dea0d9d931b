"""What a reader of figures/ relies on: every file is in the index, and each figure says what its lines, bands and
seeds are (issue #39): Fig 3's length line in the legend, Fig 5's bands named, one-seed figures labelled as an
example, Table 1's accuracy axis from 0, a note clear of a legend below the panels, the α sweep's recipe."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT


def _index_names(text: str) -> set[str]:
    """Backticked file names of figures/README.md, with ``name.{png,pdf}`` expanded."""
    out = set()
    for tok in re.findall(r"`([^`\s]+)`", text):
        parts = re.split(r"\{([^}]*)\}", tok)
        for combo in itertools.product(*[p.split(",") if i % 2 else [p] for i, p in enumerate(parts)]):
            out.add("".join(combo))
    return out


def test_every_file_in_figures_is_in_its_index_and_the_index_names_only_real_files():
    """Committed files (git ls-files): a user's own runs may draw more figures here without indexing them."""
    import subprocess

    figs = ROOT / "figures"
    tracked = subprocess.run(["git", "ls-files", "figures"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = {p.removeprefix("figures/") for p in tracked.stdout.split()}
    files -= {"README.md", ".gitkeep"}
    named = _index_names((figs / "README.md").read_text())
    assert not files - named, f"figures missing from figures/README.md: {sorted(files - named)}"
    listed = {n for n in named if re.fullmatch(r"(archive/)?[\w.-]+\.(png|pdf|csv|md)", n)}
    assert not listed - files, f"figures/README.md names files that are not there: {sorted(listed - files)}"
    assert not any(re.search(r"interim|_v2", f) for f in files if not f.startswith("archive/"))


def _runs(seeds):
    rows = []
    for m, s, step in itertools.product(("grpo", "hicra"), seeds, range(0, 11)):
        rows.append(
            {
                "run": f"{m}-{s}",
                "method": m,
                "seed": s,
                "step": step,
                "length": 40.0 + step,
                "semantic_entropy": 2.0,
                "entropy_execution": 0.2,
                "entropy_planning": 0.6,
                "pass_at_k": 0.5,
                "val_accuracy": 0.3 + 0.01 * step if step % 5 == 0 else np.nan,
            }
        )
    return pd.DataFrame(rows)


def test_fig3_legend_shows_the_length_line_and_the_title_names_bands_or_one_seed():
    from hicra.figures import fig3_dynamics

    fig = fig3_dynamics(_runs([0, 1]), "grpo", smooth=1)
    legends = [t.get_text() for a in fig.axes if a.get_legend() for t in a.get_legend().get_texts()]
    assert "mean length" in legends and "val accuracy" in legends
    assert "bands: seed min-max" in fig._suptitle.get_text()
    assert "one seed: an example" in fig3_dynamics(_runs([0]), "grpo", smooth=1)._suptitle.get_text()


def test_fig5_names_its_bands_or_says_one_seed():
    from hicra.figures import fig_methods

    assert "bands: seed min-max" in fig_methods(_runs([0, 1]), ["grpo", "hicra"])._suptitle.get_text()
    assert "one seed: an example" in fig_methods(_runs([0]), ["grpo", "hicra"])._suptitle.get_text()


def test_table1_axis_starts_at_zero_even_when_every_score_is_zero():
    from hicra.evaluate import fig_table1

    cell = {"avg_at_k": 0.0, "ci_lo": 0.0, "ci_hi": 0.0, "n": 4}
    fig = fig_table1({"models": {"GRPO": {"math500": cell}}, "k": {"math500": 1}}, ["math500"])
    assert fig.axes[0].get_ylim()[0] == 0 and fig.axes[0].get_ylim()[1] > 0


def test_a_figure_note_sits_below_a_legend_placed_under_the_panels(tmp_path):
    """The rehearsal's banner was drawn at a fixed height, over Fig 4's legend below its panels."""
    import matplotlib.pyplot as plt

    from hicra.stepkit.config import StepConfig, save_step_figure

    fig, ax = plt.subplots()
    ax.bar([0, 1], [1, 2], label="Planning & Strategy")
    legend = fig.legend(loc="lower center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    cfg = StepConfig(figures_dir=str(tmp_path), tag="t", figure_note="CPU REHEARSAL: not paper results")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend_bottom = legend.get_window_extent(renderer).y0
    save_step_figure(fig, cfg, "fig4_errors")
    note = next(t for t in fig.texts if t.get_text().startswith("CPU REHEARSAL"))
    assert note.get_window_extent(renderer).y1 <= legend_bottom
    assert (tmp_path / "fig4_errors_t.png").exists()


def test_alpha_sweep_says_its_recipe_and_when_recipes_differ(tmp_path):
    from hicra.analysis.study_figures import fig_alpha_sweep, sweep_recipe

    rows = []
    for arm, alpha in (("grpo", 0.0), ("hicra", 0.2), ("hicra-a0.8", 0.8)):
        for seed in (0, 1):
            d = tmp_path / f"train-{arm}-s{seed}"
            d.mkdir()
            p = {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 4, "processes": 1, "max_steps": 100}
            (d / "params.json").write_text(json.dumps(p))
            rows.append({"arm": arm, "method": "grpo" if alpha == 0 else "hicra", "seed": seed, "alpha": alpha})
            rows[-1]["final"] = 0.5 - 0.01 * alpha + 0.001 * seed
    runs = pd.DataFrame(rows)
    assert sweep_recipe(tmp_path, runs) == "recipe: 64 completions a step × 100 steps"
    slope = {"slope": -0.01, "lo": -0.02, "hi": 0.0, "seeds": [0, 1]}
    assert "64 completions a step" in fig_alpha_sweep(runs, slope, sweep_recipe(tmp_path, runs)).axes[0].get_title()
    p = json.loads((tmp_path / "train-grpo-s0" / "params.json").read_text())
    (tmp_path / "train-grpo-s0" / "params.json").write_text(json.dumps({**p, "per_device_train_batch_size": 32}))
    assert sweep_recipe(tmp_path, runs).startswith("recipes differ: ")
    assert "128 completions" in sweep_recipe(tmp_path, runs)


@pytest.mark.parametrize("profile", ["sandbox"])
def test_the_demo_labels_its_one_seed_figures_as_an_example(profile):
    """The demo trains one seed per method: its Fig 4, Fig 9 and Table 1 say so on the figure (Fig 3 and 5 say it in
    their titles from the runs themselves)."""
    import yaml

    steps = {
        s["name"]: s["params"]
        for s in yaml.safe_load((ROOT / "configs/profiles" / f"{profile}.yaml").read_text())["steps"]
    }
    for name in ("04_error_analysis", "05_fork_tokens", "06_evaluate"):
        assert "one seed: an example" in steps[name].get("figure_note", ""), name
