"""The README's headline results, generated from the CSV tables the study steps write (never typed by hand).

Why: numbers typed into a README go stale the moment a study is re-run. This module reads ``figures/*_arms.csv``,
``*_comparisons.csv``, ``*_final_accuracy.csv`` (written by ``hicra.study`` and notebook 03) and the regime maps'
``regimes_map.csv`` and ``regimes-long_map.csv`` (``hicra.regimes``), and renders one table;
``python -m hicra.headline`` rewrites the block between the README's ``<!-- headline:begin -->`` and
``<!-- headline:end -->`` markers, and a test fails when the README's block differs from what the CSVs say.

    python -m hicra.headline            # rewrite README.md's headline block from figures/
    python -m hicra.headline --check    # exit 1 if the README's block is stale
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

from hicra.paths import REPO_ROOT, resolve
from hicra.study import _verdict

BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"
# (tag of the CSVs, what the rows say) in the order shown
STUDIES = (
    ("study", "study of record (`make study`, run 4: seeds 0–9)"),
    ("study-replication", "confirmatory replication (`make replication`, run 5: seeds 1000–1009)"),
)
MAPS = (("regimes", "regime map (`make regimes`)"), ("regimes-long", "strategy to the plateau (`make regimes-long`)"))


def _pts(m, lo, hi) -> str:
    return f"{100 * m:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def rows(figures_dir="figures") -> list[tuple]:
    """(result, source, value with 95 % CI, n, verdict) rows from whichever tables exist."""
    figs, out = resolve(figures_dir), []
    for tag, source in STUDIES:
        arms, comp = figs / f"{tag}_arms.csv", figs / f"{tag}_comparisons.csv"
        if not (arms.exists() and comp.exists()):
            continue
        a, c = pd.read_csv(arms).set_index("arm"), pd.read_csv(comp)
        fin = figs / f"{tag}_final_accuracy.csv"
        warm = pd.read_csv(fin).set_index("method").val_accuracy.get("warm_start") if fin.exists() else None
        if warm is not None and "grpo" in a.index:
            g = a.loc["grpo"]
            out.append(
                (
                    "GRPO − warm start, step-100 accuracy",
                    source,
                    _pts(g.final - warm, g.final_lo - warm, g.final_hi - warm),
                    f"{int(g.seeds)} seeds",
                    "",
                )
            )
        for endpoint, label, positive in (
            ("final", "HICRA − GRPO, step-100 accuracy (primary)", True),
            ("auc", "HICRA − GRPO, area under the curve", True),
            (
                "planning_share_change",
                "HICRA − GRPO, Fig 4 planning share of failures (last − first 10 % of steps)",
                False,
            ),
        ):
            r = c[(c.endpoint == endpoint) & (c.arm == "hicra")]
            if not len(r) or not math.isfinite(r.iloc[0]["mean"]):
                continue
            r = r.iloc[0]
            v = _verdict(r.lo, r.hi, positive)
            v = {
                "reproduced": "HICRA better" if positive else "falls faster under HICRA",
                "not reproduced": "GRPO better" if positive else "falls faster under GRPO",
            }.get(v, "inconclusive")
            out.append((label, source, f"{_pts(r['mean'], r.lo, r.hi)}, MDE {100 * r.mde:.1f}", f"{int(r.n)} seeds", v))
    for tag, source in MAPS:
        if not (figs / f"{tag}_map.csv").exists():
            continue
        for _, r in pd.read_csv(figs / f"{tag}_map.csv").iterrows():
            if not math.isfinite(r.get("final_mean", math.nan)):
                continue
            v = {"reproduced": "HICRA better", "not reproduced": "GRPO better"}.get(
                _verdict(r.final_lo, r.final_hi), "inconclusive"
            )
            out.append(
                (
                    f"HICRA − GRPO at step {int(r.steps)}, regime `{r.regime}` (warm start: "
                    f"{100 * r.execution_error_rate:.0f} % arithmetic slips)",
                    source,
                    f"{_pts(r.final_mean, r.final_lo, r.final_hi)}, MDE {100 * r.final_mde:.1f}",
                    f"{int(r.final_n)} seeds",
                    v + ("" if r.get("grpo_plateau", False) else "; not at plateau"),
                )
            )
    return out


def block(figures_dir="figures") -> str:
    lines = [
        BEGIN,
        "| result (accuracy in points; differences paired by seed) | source | mean [95 % CI] | n | reading |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows(figures_dir)]
    lines += [
        "",
        "Generated from `figures/*.csv` by `python -m hicra.headline`; validation avg@2 on the sandbox's "
        "399 validation tasks.",
        END,
    ]
    return "\n".join(lines)


def rewrite(readme=REPO_ROOT / "README.md", figures_dir="figures") -> bool:
    """Replace the README's headline block; returns whether it changed."""
    text = readme.read_text()
    i, j = text.index(BEGIN), text.index(END) + len(END)
    new = text[:i] + block(figures_dir) + text[j:]
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md's headline block is stale")
    ap.add_argument("--figures_dir", default="figures", help="where the study tables are")
    a = ap.parse_args(argv)
    text = (REPO_ROOT / "README.md").read_text()
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    if a.check:
        sys.exit(0 if current == block(a.figures_dir) else 1)
    print("README.md headline:", "rewritten" if rewrite(figures_dir=a.figures_dir) else "unchanged")


if __name__ == "__main__":
    main()
