"""The study table: per-method means with t-intervals over seeds, and the paired HICRA − GRPO difference."""

import pandas as pd
import pytest

from hicra.figures import final_table


def test_final_table_pairs_seeds():
    rows = []
    for seed, (g, h) in enumerate([(0.10, 0.14), (0.20, 0.21), (0.15, 0.20)]):
        for m, v in (("grpo", g), ("hicra", h)):
            rows += [
                {"run": f"{m}-{seed}", "method": m, "seed": seed, "step": 0, "val_accuracy": 0.18},
                {"run": f"{m}-{seed}", "method": m, "seed": seed, "step": 60, "val_accuracy": v},
            ]
    rows.append({"run": "hicra-9", "method": "hicra", "seed": 9, "step": 60, "val_accuracy": 0.5})  # unpaired
    t = final_table(pd.DataFrame(rows)).set_index("method")
    assert t.loc["grpo", "val_accuracy"] == pytest.approx(0.15) and t.loc["grpo", "seeds"] == 3
    assert t.loc["hicra", "seeds"] == 4
    d = t.loc["hicra − grpo"]
    assert d.seeds == 3 and d.val_accuracy == pytest.approx(0.1 / 3)
    assert d.ci_lo < d.val_accuracy < d.ci_hi
    w = t.loc["warm_start"]  # the step-0 level every run starts from, beside the methods
    assert w.seeds == 6 and w.val_accuracy == pytest.approx(0.18)
    assert list(t.index)[0] == "warm_start"


def test_a_lora_run_is_its_own_arm_not_another_seed(tmp_path):
    """The rehearsal's LoRA arm (params.json: lora_r) shares method and seed with the full fine-tune; read as one
    more HICRA seed it doubled the "seeds" and broke the pairing. It is its own row, and HICRA − GRPO pairs the
    full fine-tunes only."""
    import json

    from hicra.figures import load_runs

    for name, params, acc in (
        ("train-grpo-s0", {"method": "grpo", "seed": 0}, 0.2),
        ("train-hicra-s0", {"method": "hicra", "seed": 0}, 0.3),
        ("train-hicra-lora", {"method": "hicra", "seed": 0, "lora_r": 8}, 0.9),
    ):
        d = tmp_path / name
        d.mkdir()
        (d / "params.json").write_text(json.dumps(params))
        (d / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": s, "val_accuracy": v}) + "\n" for s, v in ((0, 0.1), (3, acc)))
        )
    t = final_table(load_runs(sorted(tmp_path.iterdir()))).set_index("method")
    assert t.loc["hicra", "seeds"] == 1 and t.loc["hicra", "val_accuracy"] == pytest.approx(0.3)
    assert t.loc["hicra (LoRA r=8)", "val_accuracy"] == pytest.approx(0.9)
    assert t.loc["hicra − grpo", "val_accuracy"] == pytest.approx(0.1) and t.loc["hicra − grpo", "seeds"] == 1


def test_fig5_says_which_panel_the_runs_did_not_log():
    """A paper recipe validates on no held-out set: Fig 5's accuracy panel says so instead of an empty frame."""
    from hicra.figures import fig_methods

    rows = [
        {"run": m, "method": m, "seed": 0, "step": s, "semantic_entropy": 1.0, "pass_at_k": 0.5}
        for m in ("grpo", "hicra")
        for s in (1, 2, 3)
    ]
    fig = fig_methods(pd.DataFrame(rows), ["grpo", "hicra"])
    texts = {i: [t.get_text() for t in a.texts] for i, a in enumerate(fig.axes)}
    assert texts[1] == ["not logged by these runs\n(val_accuracy)"] and fig.axes[0].lines and not texts[0]


def test_fig5_shows_the_training_reward_of_runs_without_validation():
    """The rehearsal (and a GPU recipe) validates on no held-out set: Fig 5's second panel then draws each method's
    training reward per step, unsmoothed, under a title that says so (issue #37)."""
    from hicra.figures import fig_methods

    rows = [
        {"run": m, "method": m, "seed": 0, "step": s, "semantic_entropy": 1.0, "pass_at_k": 0.5, "reward": r}
        for m, rs in (("grpo", (0.2, 0.4, 0.3)), ("hicra", (0.2, 0.5, 0.6)))
        for s, r in zip((1, 2, 3), rs)
    ]
    fig = fig_methods(pd.DataFrame(rows), ["grpo", "hicra"])
    panel = fig.axes[1]
    assert panel.get_title() == "Training reward (no validation)" and not panel.texts
    assert [list(line.get_ydata()) for line in panel.lines] == [[0.2, 0.4, 0.3], [0.2, 0.5, 0.6]]
