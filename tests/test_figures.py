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
