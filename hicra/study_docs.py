"""docs/study.md's per-seed numbers and result tables, generated from the committed CSVs (never typed by hand).

Why: per-seed values typed into docs/study.md went wrong unseen (run 4's GRPO gains were computed against the warm
start rounded to 0.373, so three of them lie off the 1/798 accuracy grid). Each block here renders from
``figures/`` (a study's ``<tag>_runs.csv`` where it exists, else its ``<tag>_comparisons.csv``) and sits in
docs/study.md between ``<!-- generated:<name>:begin -->`` and ``<!-- generated:<name>:end -->``; the prose
around the blocks is written by hand. A test fails when a block differs from what the CSVs say.

    python -m hicra.study_docs            # rewrite docs/study.md's generated blocks from figures/
    python -m hicra.study_docs --check    # exit 1 if a block is stale
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

from hicra.headline import map_table, study_comparisons
from hicra.method.stats import holm, summarise
from hicra.runinfo import compare_maps, compare_tables, hicra_arm
from hicra.store.paths import REPO_ROOT, resolve
from hicra.study import _verdict

DOC = REPO_ROOT / "docs" / "study.md"


def _p(x: float, digits: int = 1, scale: float = 100) -> str:
    """Points with a sign, the typographic minus of docs/study.md: 0.0123 -> +1.2, -0.004 -> −0.4 (``scale`` 1 for
    quantities that are not fractions, such as bits)."""
    return f"{scale * x:+.{digits}f}".replace("-", "−")


def _with_ci(m: float, lo: float, hi: float, digits: int = 1, scale: float = 100) -> str:
    """``+1.2 [+0.2, +2.5]``; the mean alone where there is no interval; — where there is no value."""
    if math.isnan(m):
        return "—"
    if math.isnan(lo):
        return _p(m, digits, scale)
    return f"{_p(m, digits, scale)} [{_p(lo, digits, scale)}, {_p(hi, digits, scale)}]"


def _ci(r, digits: int = 1) -> str:
    return f"{_p(r['mean'], digits)} [{_p(r['lo'], digits)}, {_p(r['hi'], digits)}] points"


def _seeds(r) -> str:
    return " ".join(_p(float(x)) for x in str(r["per_seed"]).split())


def _row(comp: pd.DataFrame, endpoint: str, arm: str):
    return comp[(comp.endpoint == endpoint) & (comp.arm == arm)].iloc[0]


# --------------------------------------------------------------------------
# the blocks


def run5_table(figs, tag: str = "study-replication") -> str:
    """Run 5's endpoints, HICRA - GRPO paired by seed, from figures/<tag>_runs.csv (run 6: ``replication-lock``)."""
    comp = study_comparisons(figs, tag)
    lines = [
        "| endpoint (HICRA − GRPO, paired by seed, 10 seeds) | mean [95 % CI] | p | MDE | per seed | verdict by the "
        "plan |",
        "|---|---|---|---|---|---|",
    ]
    for endpoint, name, digits, positive in (
        ("auc", "**area under the validation curve (the confirmatory test)**", 2, True),
        ("final", "step-100 accuracy (the study's primary endpoint)", 1, True),
        (
            "planning_share_change",
            "Fig 4, *extension* (HICRA − GRPO): change of the planning share of failures, first to last 10 % of steps",
            1,
            False,
        ),
    ):
        r = _row(comp, endpoint, "hicra")
        verdict = _run5_verdict(endpoint, r, _verdict(r.lo, r.hi, positive))
        ci = f"**{_ci(r, digits)}**" if endpoint == "auc" else _ci(r, digits)
        lines.append(f"| {name} | {ci} | {r.p:.3f} | {100 * r.mde:.1f} | {_seeds(r)} | {verdict} |")
    return "\n".join(lines)


PAPER_AVERAGE = 0.027  # the paper's Table 1 text-only HICRA − GRPO differences, averaged (docs/study.md)


def _run5_verdict(endpoint: str, r, v: str) -> str:
    """Run 5's verdict cell: the plan's rule, and what the interval rules out (docs/study.md's wording)."""
    touches = "touches" if f"{100 * r.lo:.1f}" in ("0.0", "-0.0") else "contains"
    if endpoint == "auc":  # the confirmatory test's rule (run 5's plan)
        return {
            "reproduced": "**replicated** (lower end above 0)",
            "not reproduced": "**not replicated** (upper end below 0)",
        }.get(v, f"**inconclusive** (the interval {touches} 0)")
    if endpoint == "final":
        inside = "inside" if r.lo <= PAPER_AVERAGE <= r.hi else "outside"
        head = {"reproduced": "HICRA better", "not reproduced": "GRPO better"}.get(
            v, f"inconclusive (the interval {touches} 0)"
        )
        return f"{head}; rules out a gain above {_p(r.hi)} (the paper's {_p(PAPER_AVERAGE)} average is {inside})"
    lean = (
        "leans the way written down before the run (falls faster under GRPO)"
        if r["mean"] > 0
        else "leans against the way written down before the run"
    )
    head = {"reproduced": "falls faster under HICRA", "not reproduced": "falls faster under GRPO"}.get(
        v, f"inconclusive; {lean}"
    )
    return f"{head}; rules out HICRA's share falling more than {100 * -r.lo:.1f} points faster than GRPO's"


def run6_reproduction(figs) -> str:
    """Run 6 (run 5 re-run under the lock) against run 5, per run, from figures/study-replication_runs.csv and
    figures/replication-lock_runs.csv."""
    t = compare_tables(figs / "study-replication_runs.csv", figs / "replication-lock_runs.csv")
    lines = [
        "| arm | endpoint | re-run − run 5, per seed 1000–1009 (points) | equal to the digit |",
        "|---|---|---|---|",
    ]
    for arm in ("grpo", "hicra"):
        a = t[t.arm == arm].sort_values("seed")
        for e, name in (("final", "step-100 accuracy"), ("auc", "AUC")):
            diffs = a[f"{e}_diff"]
            lines.append(
                f"| {arm} | {name} | {' '.join(_p(x) for x in diffs)} | {int((diffs == 0).sum())} of {len(diffs)} |"
            )
    lines.append(f"\n{int(t.exact.sum())} of {len(t)} runs equal run 5 to the digit in every endpoint.")
    return "\n".join(lines)


def heldout_table(figs, tag: str = "replication-lock") -> str:
    """The held-out test split beside the validation split, from figures/<tag>_heldout.csv and
    figures/<tag>_heldout_runs.csv (``python -m hicra.heldout``): HICRA - GRPO paired by seed, and each arm's
    test - validation accuracy at the last step, paired per run."""
    comp = pd.read_csv(figs / f"{tag}_heldout.csv").set_index("endpoint")
    runs = pd.read_csv(figs / f"{tag}_heldout_runs.csv")

    def cell(e: str) -> str:  # the held-out table's values are in points already
        r = comp.loc[e]
        return f"{r['mean']:+.1f} [{r.lo:+.1f}, {r.hi:+.1f}], p {r.p:.2f}, MDE {r.mde:.1f}".replace("-", "−")

    lines = [
        "| HICRA − GRPO, paired by seed (10 seeds), points | held-out test split (221 tasks) | validation split (399 "
        "tasks) |",
        "|---|---|---|",
        f"| step-100 accuracy (the held-out plan's primary endpoint) | **{cell('final')}** | {cell('val_final')} |",
        f"| area under the curve, steps 0–100 (secondary) | {cell('auc')} | {cell('val_auc')} |",
        "",
        "| arm | test accuracy, step 100 | validation accuracy, step 100 | test − validation, per run (points) |",
        "|---|---|---|---|",
    ]
    for arm, g in runs.groupby("arm"):
        d = summarise(g.final - g.val_final)
        lines.append(f"| {arm} | {g.final.mean():.3f} | {g.val_final.mean():.3f} | {_ci(d).replace(' points', '')} |")
    return "\n".join(lines)


def run4_per_seed(figs) -> str:
    """Run 4's per-seed GRPO gain over the warm start and HICRA - GRPO, from figures/study_runs.csv."""
    runs = pd.read_csv(figs / "study_runs.csv")
    warm = pd.read_csv(figs / "study_final_accuracy.csv").set_index("method").val_accuracy["warm_start"]
    g = runs[runs.arm == "grpo"].set_index("seed").final.sort_index()
    h = runs[runs.arm == "hicra"].set_index("seed").final.sort_index()
    return (
        f"Per seed ({g.index.min()}–{g.index.max()}), gain over the warm start ({warm:.5f} = {round(warm * 798)}/798) "
        f"at step 100, points: GRPO {', '.join(_p(x - warm) for x in g)}; HICRA − GRPO "
        f"{', '.join(_p(x) for x in (h - g).dropna())} (`figures/study_runs.csv`)."
    )


def pr4997_table(figs) -> str:
    """The hicra_pr4997 arm against GRPO, from figures/study-pr4997_comparisons.csv."""

    comp = study_comparisons(figs, "study-pr4997")
    run4 = pd.read_csv(figs / "study_comparisons.csv")
    planned = run4[(run4.endpoint == "final") & ~run4.arm.str.startswith("hicra-a")].p.tolist()  # run 4's four
    lines = [
        "| `hicra_pr4997` − GRPO, paired by seed (5 seeds) | mean [95 % CI] | p (Holm over the 5 planned step-100 "
        "comparisons) | MDE | per seed |",
        "|---|---|---|---|---|",
    ]
    for endpoint, name in (
        ("final", "step-100 accuracy (planned comparison)"),
        ("auc", "area under the validation curve (secondary)"),
        ("planning_share_change", "Fig 4: planning share of failures, change first → last 10 % of steps (secondary)"),
    ):
        r = _row(comp, endpoint, "hicra_pr4997")
        adjusted = holm([*planned, r.p])[-1]  # Holm over run 4's four planned comparisons and this one
        p = f"{r.p:.2f} ({adjusted:.1f})" if endpoint == "final" else f"{r.p:.3f} (not adjusted)"
        lines.append(f"| {name} | {_ci(r)} | {p} | {100 * r.mde:.1f} | {_seeds(r)} |")
    return "\n".join(lines)


PER_SEED_ENDPOINTS = (("final", "accuracy"), ("auc", "AUC"), ("planning_share_change", "Fig 4"))


def _per_seed_endpoints(comp: pd.DataFrame, fmt) -> str:
    """``accuracy …; AUC …; Fig 4 …``: each endpoint's per-seed values of a comparisons table, ``fmt(row)`` each."""
    return "; ".join(f"{name} {fmt(comp[comp.endpoint == e].iloc[0])}" for e, name in PER_SEED_ENDPOINTS)


def regimes_long_per_seed(figs) -> str:
    """The strategy regime at step 600, HICRA - GRPO per seed, from figures/regimes-long_comparisons.csv."""
    comp = pd.read_csv(figs / "regimes-long_comparisons.csv")
    parts = _per_seed_endpoints(comp[comp.seeds == "8 seeds"], _seeds)
    return (
        f"* **Per seed** (points, 2000–2007): {parts} (from the 3-decimal per-seed values of "
        "`figures/regimes-long_comparisons.csv`; its runs' per-run values are not committed)."
    )


def map_reproduction(figs, record: str = "regimes", rerun: str = "regimes-lock", first: str = "first map") -> str:
    """A regime map's re-run against the map of record (run 7's primary check), from figures/<record>_map.csv and
    figures/<rerun>_map.csv, each recomputed from its per-run table where one is committed (``headline.map_table``,
    as the README's headline is), compared by ``hicra.runinfo.compare_maps``: per regime, the warm start, each arm's
    mean and each HICRA - GRPO comparison, the difference, and whether the re-run's mean lies inside the record's 95 %
    interval. ``first``: what the table calls the record."""

    tables = [map_table(figs, tag) for tag in (record, rerun)]
    for tag, t in zip((record, rerun), tables):
        if t is None:
            raise FileNotFoundError(f"figures/{tag}_map.csv not found: python -m hicra.regimes writes it")
    t = compare_maps(*tables)

    def cell(m, lo, hi) -> str:  # points; an arm's mean (no interval) unsigned
        return f"{100 * m:.1f}" if math.isnan(lo) and not math.isnan(m) else _with_ci(m, lo, hi)

    lines = [
        f"| regime | quantity (points) | {first} | re-run | re-run − {first} | re-run inside the {first}'s 95 % CI |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in t.iterrows():
        inside = "" if r.inside is None else ("yes" if r.inside else "**no**")
        diff = "—" if math.isnan(r["diff"]) else _p(r["diff"])
        lines.append(
            f"| {r.regime} | {r.quantity} | {cell(r.record, r.record_lo, r.record_hi)} | "
            f"{cell(r.rerun, r.rerun_lo, r.rerun_hi)} | {diff} | {inside} |"
        )
    has = t[t.inside.notna()]
    lines.append(
        f"\n{int(has.inside.sum())} of {len(has)} HICRA − GRPO means of the re-run lie inside the {first}'s 95 % "
        "interval."
    )
    return "\n".join(lines)


def map_result(figs, tag: str = "regimes-lock") -> str:
    """A regime map's pre-registered table (docs/study.md "The regime map: pre-registered plan"), one row per
    regime, from figures/<tag>_map.csv with its comparisons recomputed from the per-run table where one is committed
    (``headline.map_table``): the warm start's anatomy, each arm's mean at the last step, HICRA - GRPO at the last
    step (n, MDE), its AUC and Fig 4 endpoint, GRPO's last 50 steps (the plateau check) and each arm's
    semantic-entropy change, each with its 95 % interval."""

    m = map_table(figs, tag)
    if m is None:
        raise FileNotFoundError(f"figures/{tag}_map.csv not found: python -m hicra.regimes writes it")

    def ci(r, prefix, digits=1, scale=100) -> str:  # <prefix>_mean (or <prefix>) with <prefix>_lo, <prefix>_hi
        mean = f"{prefix}_mean" if f"{prefix}_mean" in r else prefix
        return _with_ci(*(float(r.get(k, math.nan)) for k in (mean, f"{prefix}_lo", f"{prefix}_hi")), digits, scale)

    steps = int(m.steps.dropna().max())
    lines = [
        f"| regime | warm start: accuracy / slips / careful | GRPO, HICRA at step {steps} | HICRA − GRPO, step "
        f"{steps} (n, MDE) | AUC | Fig 4 endpoint | GRPO, last 50 steps | semantic entropy change (bits) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in m.iterrows():
        warm = f"{r.accuracy:.3f} / {100 * r.execution_error_rate:.0f} % / {100 * r.careful_share:.0f} %"
        if not math.isfinite(r.get("final_mean", math.nan)):
            lines.append(f"| `{r.regime}` | {warm} | no runs | | | | | |")
            continue
        plateau = "plateau" if bool(r.grpo_plateau) else "**not at plateau**"
        lines.append(
            f"| `{r.regime}` | {warm} | {r.grpo_final:.3f}, {r.hicra_final:.3f} | {ci(r, 'final')}"
            f" ({int(r.final_n)}, {100 * r.final_mde:.1f}) | {ci(r, 'auc')} | {ci(r, 'fig4')} | "
            f"{ci(r, 'grpo_last50')}: {plateau} | GRPO {ci(r, 'sem_entropy_change_grpo', 2, 1)}, "
            f"HICRA {ci(r, 'sem_entropy_change_hicra', 2, 1)} |"
        )
    return "\n".join(lines)


def _3(values) -> str:
    """Per-seed fractions as the 3-decimal tables keep them, with the typographic minus: −0.001 +0.024."""
    return " ".join(f"{float(x):+.3f}".replace("-", "−") for x in values)


def regimes_long_interim_at300(figs) -> str:
    """The superseded 6-seed look at the strategy regime read at step 300 against the map's same seeds, from
    figures/archive/regimes-long-interim-at300_map.csv and figures/regimes_map.csv (3-decimal per-seed values)."""
    look = pd.read_csv(figs / "archive" / "regimes-long-interim-at300_map.csv").set_index("regime").loc["strategy"]
    ours = str(look.hicra_minus_grpo_per_seed).split()
    theirs = str(pd.read_csv(figs / "regimes_map.csv").set_index("regime").hicra_minus_grpo_per_seed["strategy"])
    theirs = theirs.split()[: len(ours)]  # the map's seeds are 2000-2007; the look finished the first len(ours)
    same = [str(2000 + i) for i, (x, y) in enumerate(zip(ours, theirs)) if x == y]
    return (
        f"* HICRA − GRPO at step 300 per seed (2000–{2000 + len(ours) - 1}): this look {_3(ours)}; the map "
        f"{_3(theirs)}; equal to the digit: seeds {', '.join(same)} "
        "(`figures/archive/regimes-long-interim-at300_map.csv`, `figures/regimes_map.csv`)."
    )


def regimes_long_interim_per_seed(figs) -> str:
    """The superseded 6-seed look at step 600, HICRA - GRPO per seed, from
    figures/archive/regimes-long-interim_comparisons.csv."""
    comp = pd.read_csv(figs / "archive" / "regimes-long-interim_comparisons.csv")
    parts = _per_seed_endpoints(comp, lambda r: _3(r.per_seed.split()))
    return f"* **Per seed** (2000–2005, step 600): {parts} (`figures/archive/regimes-long-interim_comparisons.csv`)."


def map_per_seed(figs, tag: str = "regimes-long-lock") -> str:
    """A map's HICRA - GRPO per seed and regime, from its full-precision per-run table figures/<tag>_runs.csv (the
    seeds both arms ran; HICRA is the map's one HICRA arm, ``hicra`` or e.g. ``hicra-a0.1``): the three endpoints in
    points, the primary endpoint's p and the SD of its per-seed differences, each arm's semantic-entropy change in
    bits and HICRA - GRPO in it with its 95 % interval (not a planned test: the plan reads each arm's change)."""
    runs = pd.read_csv(figs / f"{tag}_runs.csv")
    lines = []
    for regime, sub in runs.groupby("regime", sort=False):
        arm = hicra_arm(sub.arm)
        pairs = sub[sub.arm.isin(["grpo", arm])]
        both = pairs.groupby("seed").arm.nunique().loc[lambda n: n == 2].index  # seeds with both arms
        wide = {
            e: pairs[pairs.seed.isin(both)].pivot(index="seed", columns="arm", values=e)
            for e in (*dict(PER_SEED_ENDPOINTS), "semantic_entropy_change")
        }
        diffs = {e: w[arm] - w["grpo"] for e, w in wide.items()}
        parts = "; ".join(f"{name} {' '.join(_p(x) for x in diffs[e])}" for e, name in PER_SEED_ENDPOINTS)
        final, sem = summarise(diffs["final"].tolist()), wide["semantic_entropy_change"]
        d = summarise(diffs["semantic_entropy_change"].tolist())
        lines.append(
            f"* `{regime}`, per seed ({both.min()}–{both.max()}), HICRA − GRPO in points: {parts}. Accuracy: p "
            f"{final['p']:.2f}, SD of the per-seed differences {100 * diffs['final'].std(ddof=1):.1f}. "
            f"Semantic-entropy change (bits): GRPO {' '.join(_p(x, 2, 1) for x in sem['grpo'])}; HICRA "
            f"{' '.join(_p(x, 2, 1) for x in sem[arm])}; HICRA − GRPO {_with_ci(d['mean'], d['lo'], d['hi'], 2, 1)} "
            f"(not a planned test) (`figures/{tag}_runs.csv`)."
        )
    return "\n".join(lines)


BLOCKS = {
    "run5-table": run5_table,
    "run6-table": lambda figs: run5_table(figs, "replication-lock"),
    "run6-reproduction": run6_reproduction,
    "heldout-table": heldout_table,
    "run4-per-seed": run4_per_seed,
    "pr4997-table": pr4997_table,
    "regimes-long-per-seed": regimes_long_per_seed,
    "regimes-long-interim-at300": regimes_long_interim_at300,
    "regimes-long-interim-per-seed": regimes_long_interim_per_seed,
    "run7-reproduction": map_reproduction,
    "run7-map": map_result,
    "long-lock-reproduction": lambda figs: map_reproduction(figs, "regimes-long", "regimes-long-lock", "first run"),
    "long-lock-map": lambda figs: map_result(figs, "regimes-long-lock"),
    "long-lock-per-seed": map_per_seed,
}


# --------------------------------------------------------------------------
# docs/study.md


def markers(name: str) -> tuple[str, str]:
    return f"<!-- generated:{name}:begin -->", f"<!-- generated:{name}:end -->"


def render(text: str, figures_dir="figures") -> str:
    """``text`` with each generated block replaced by what the CSVs say (a block missing from the text is skipped)."""
    figs = resolve(figures_dir)
    for name, fn in BLOCKS.items():
        begin, end = markers(name)
        if begin not in text:
            continue
        i, j = text.index(begin) + len(begin), text.index(end)
        text = text[:i] + "\n" + fn(figs) + "\n" + text[j:]
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m hicra.study_docs", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a generated block of docs/study.md is stale")
    ap.add_argument("--figures_dir", default="figures", help="where the study tables are")
    a = ap.parse_args(argv)
    text = DOC.read_text()
    new = render(text, a.figures_dir)
    if a.check:
        sys.exit(0 if new == text else 1)
    if new != text:
        DOC.write_text(new)
    print("docs/study.md generated blocks:", "rewritten" if new != text else "unchanged")


if __name__ == "__main__":
    main()
