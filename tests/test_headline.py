"""Every headline number recomputed from committed per-run tables (issue #35 item 4, issue #39 item 2)."""

import importlib.util
import math

import pandas as pd
import pytest

from hicra import headline, study
from hicra.method.stats import summarise
from hicra.stepkit.config import REPO_ROOT

FIG = REPO_ROOT / "figures"


def _recomputed(tag):
    runs = pd.read_csv(FIG / f"{tag}_runs.csv")
    return runs, study.comparisons(runs.drop(columns=["environment"]).dropna(axis=1, how="all"))


@pytest.mark.parametrize("tag", ["study", "study-replication"])
def test_each_committed_comparison_is_recomputed_from_the_committed_per_run_table(tag):
    """The per-run table is the source: every comparison it can give equals the committed one (run 5's every
    endpoint; run 4's step-100 accuracy, the one endpoint its rebuilt table holds), per seed included."""
    runs, comp = _recomputed(tag)
    committed = pd.read_csv(FIG / f"{tag}_comparisons.csv").set_index(["endpoint", "arm"])
    assert len(comp) == 4  # run 4: step-100 accuracy of 4 arms; run 5: 4 endpoints of HICRA
    for _, r in comp.iterrows():
        c = committed.loc[(r.endpoint, r.arm)]
        assert r.per_seed == c.per_seed and r.n == c.n, (r.endpoint, r.arm)
        for k in ("mean", "lo", "hi", "p", "mde"):
            assert r[k] == pytest.approx(c[k], rel=1e-12, abs=1e-15) or (math.isnan(r[k]) and math.isnan(c[k]))
    assert list(runs.columns[:4]) == ["seed", "arm", "method", "alpha"] and "environment" in runs
    assert ((runs.final * 798).round(9) % 1 == 0).all()  # every accuracy is k/798 (399 tasks, avg@2)


def test_every_headline_row_comes_from_the_csvs_with_its_n_and_its_plan_role():
    rows = headline.rows()
    by = {(r[0], r[1]): r for r in rows}
    for tag, source, primary in headline.STUDIES:
        runs, comp = _recomputed(tag)
        warm = pd.read_csv(FIG / f"{tag}_final_accuracy.csv").set_index("method").val_accuracy["warm_start"]
        g = summarise((runs[runs.arm == "grpo"].final - warm).tolist())
        assert by[("GRPO − warm start, step-100 accuracy", source)][2] == headline._pts(g["mean"], g["lo"], g["hi"])
        committed = pd.read_csv(FIG / f"{tag}_comparisons.csv")
        for endpoint, name in (("final", "step-100 accuracy"), ("auc", "area under the curve")):
            role = "primary" if endpoint == primary else "secondary"
            row = by[(f"HICRA − GRPO, {name} ({role})", source)]  # AUC beside accuracy, each with its plan role
            c = committed[(committed.endpoint == endpoint) & (committed.arm == "hicra")].iloc[0]
            assert row[2] == f"{headline._pts(c['mean'], c.lo, c.hi)}, MDE {100 * c.mde:.1f}"
            assert row[3] == f"{len(c.per_seed.split())} seeds"  # n is the number of values behind the row
    # run 5's confirmatory endpoint is the AUC, run 4's primary the step-100 accuracy (docs/study.md's plans)
    assert ("HICRA − GRPO, area under the curve (primary)", headline.STUDIES[1][1]) in by
    assert ("HICRA − GRPO, step-100 accuracy (primary)", headline.STUDIES[0][1]) in by
    for tag, source, _ in headline.MAPS:
        m = pd.read_csv(FIG / f"{tag}_map.csv")
        mine = [r for r in rows if r[1] == source]
        assert len(mine) == 2 * len(m)  # accuracy and AUC for every regime shown
        for r in mine:
            assert r[3] == "8 seeds"
    source = dict((tag, src) for tag, src, _ in headline.MAPS)["regimes-long"]
    long = next(r for r in rows if r[1] == source and "at step 600" in r[0])
    assert "judged on 6 of 8 seeds" in long[4]  # its plateau is a 6-seed summary, said so


def test_run4_per_run_table_is_rebuilt_by_its_provenance_script_to_the_digit():
    """scripts/run4_runs.py rebuilds figures/study_runs.csv from committed data (checks inside: one grid point per
    value, each arm's sum equal to its committed mean); the committed table is its output, unchanged."""
    spec = importlib.util.spec_from_file_location("run4_runs", REPO_ROOT / "scripts" / "run4_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rebuilt = mod.rebuild().reset_index(drop=True)
    committed = pd.read_csv(FIG / "study_runs.csv")
    pd.testing.assert_frame_equal(rebuilt, committed, check_dtype=False, rtol=0, atol=0)
    assert mod.on_grid(15.6, 298 / 798) == []  # docs' +15.6: not on the grid against the exact warm start


def test_docs_study_per_seed_numbers_are_the_generated_blocks():
    """docs/study.md's per-seed numbers and result tables are blocks rendered from figures/ (hicra.study_docs): a
    re-run that changes a CSV fails this until `python -m hicra.study_docs` is run; a hand edit inside a block too."""
    from hicra import study_docs

    text = study_docs.DOC.read_text()
    for name in study_docs.BLOCKS:
        begin, end = study_docs.markers(name)
        assert text.count(begin) == 1 and text.count(end) == 1 and text.index(begin) < text.index(end), name
    assert study_docs.render(text) == text
    # run 4's GRPO gains now lie on the 1/798 grid: +15.5 (124/798), where the hand-typed line said +15.6
    block = text[text.index(study_docs.markers("run4-per-seed")[0]) :]
    assert "GRPO +16.3, +18.8, +16.9, +15.5," in block


def test_a_map_rerun_is_rendered_against_the_map_of_record(tmp_path):
    """Run 7's primary check as docs/study.md will show it (hicra.study_docs.map_reproduction): per regime each
    HICRA − GRPO mean of the re-run against the committed map's 95 % interval, and the count inside."""
    from hicra import study_docs

    record = pd.read_csv(FIG / "regimes_map.csv")
    record.to_csv(tmp_path / "regimes_map.csv", index=False)
    rerun = record.assign(auc_mean=record.auc_hi + 0.01)  # every AUC just above the record's interval
    rerun.to_csv(tmp_path / "regimes-lock_map.csv", index=False)
    text = study_docs.map_reproduction(tmp_path)
    auc = [line for line in text.splitlines() if "area under the curve" in line]
    assert len(auc) == 3 and all(line.endswith(" | **no** |") for line in auc), auc
    assert text.endswith("6 of 9 HICRA − GRPO means of the re-run lie inside the first map's 95 % interval.")
    assert "| v2 | GRPO, accuracy at the last step | 63.7 | 63.7 | +0.0 |  |" in text  # an arm mean: no CI


def test_a_map_result_is_rendered_as_the_plan_tables_it():
    """A regime map's pre-registered table (hicra.study_docs.map_result), here for the map of record: each regime's
    warm start, arms, HICRA − GRPO with n and MDE, AUC, Fig 4, the plateau check and the semantic-entropy changes,
    the numbers docs/study.md's hand-typed table of that map gives."""
    from hicra import study_docs

    text = study_docs.map_result(FIG, "regimes")
    strategy, v2, execution = (line for line in text.splitlines() if line.startswith("| `"))
    assert strategy.startswith("| `strategy` | 0.333 / 3 % / 12 % | 0.839, 0.830 | −0.8 [−4.2, +2.5] (8, 4.7) |")
    assert "| +1.3 [+0.2, +2.5] | −4.0 [−23.2, +15.1] | +3.3 [+1.9, +4.8]: **not at plateau** |" in strategy
    assert "GRPO +0.07 [−0.01, +0.16], HICRA +0.07 [−0.01, +0.15]" in strategy
    assert "+1.1 [−1.1, +3.3]: plateau" in v2 and "GRPO −0.48 [−0.54, −0.41]" in v2
    assert execution.startswith("| `execution` | 0.307 / 30 % / 36 % | 0.509, 0.511 | +0.2 [−4.1, +4.4] (8, 5.9) |")
    assert "step 600" in study_docs.map_result(FIG, "regimes-long").splitlines()[0]
    with pytest.raises(FileNotFoundError, match="python -m hicra.regimes"):
        study_docs.map_result(FIG, "no-such-map")


MAP_DESIGNS = {  # a committed map with its per-run table: its regimes and last step (GRPO/HICRA × seeds 2000–2007)
    "regimes-lock": ({"strategy", "v2", "execution"}, 300),
    "regimes-long-lock": ({"strategy"}, 600),
}


@pytest.mark.parametrize("tag", sorted(MAP_DESIGNS))
def test_a_committed_map_equals_its_recomputation_from_its_per_run_table(tag):
    """A map under the lock (hicra.regimes: run 7's, and regimes-long's re-run) and its per-run table agree: the arm
    means, the HICRA − GRPO comparisons (accuracy, AUC, Fig 4), the plateau check, each arm's semantic-entropy change
    and the per-seed differences the headline and docs recompute from the runs equal the committed map's; the table
    holds every run of the design (its regimes × GRPO/HICRA × seeds 2000–2007, to its last step), at full precision
    on the 1/798 accuracy grid, from one environment."""
    regimes, steps = MAP_DESIGNS[tag]
    committed = pd.read_csv(FIG / f"{tag}_map.csv")
    recomputed = headline.map_table(FIG, tag)
    cols = ["grpo_final", "hicra_final", "final_n"]
    cols += [f"{p}_{k}" for p in ("final", "auc") for k in ("mean", "lo", "hi", "mde")]
    cols += [f"fig4_{k}" for k in ("mean", "lo", "hi")]
    cols += ["grpo_last50", "grpo_last50_lo", "grpo_last50_hi", "grpo_plateau"]  # the plateau check
    cols += [f"sem_entropy_change_{a}{k}" for a in ("grpo", "hicra") for k in ("", "_lo", "_hi")]
    pd.testing.assert_frame_equal(recomputed[cols], committed[cols], check_dtype=False, rtol=1e-12, atol=1e-15)
    runs = pd.read_csv(FIG / f"{tag}_runs.csv")
    assert sorted(runs.groupby(["regime", "arm"]).seed.apply(sorted).map(tuple).unique()) == [tuple(range(2000, 2008))]
    assert set(runs.regime) == regimes and set(runs.arm) == {"grpo", "hicra"} and set(runs.steps) == {steps}
    assert runs.environment.nunique() == 1 and len(runs) == 16 * len(regimes)
    assert ((runs.final * 798).round(9) % 1 == 0).all() and ((runs.last50 * 798).round(9) % 1 == 0).all()
    for regime, sub in runs.groupby("regime"):  # the map's 3-decimal per-seed differences, from the table
        w = sub.pivot(index="seed", columns="arm", values="final")
        per_seed = committed.set_index("regime").hicra_minus_grpo_per_seed[regime]
        assert per_seed == " ".join(f"{x:+.3f}" for x in w.hicra - w.grpo)


def test_a_maps_per_seed_block_pairs_the_seeds_both_arms_ran_and_finds_an_alpha_arm(tmp_path):
    """docs/study.md's per-seed block (hicra.study_docs.map_per_seed) reads the map's one HICRA arm, whatever its α
    (``hicra-a0.1``), and pairs only the seeds both arms ran: a seed one arm lacks is left out, never misaligned."""
    from hicra import study_docs

    rows = [
        {"regime": "strategy", "seed": s, "arm": arm, "final": f, "auc": f / 2, "planning_share_change": -f / 4,
         "semantic_entropy_change": e}
        for arm, vals in (("grpo", {1: (0.50, -0.30), 2: (0.60, -0.20), 3: (0.70, -0.10)}),
                          ("hicra-a0.1", {2: (0.65, -0.10), 3: (0.70, -0.30), 4: (0.99, 9.0)}))
        for s, (f, e) in vals.items()
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "t_runs.csv", index=False)
    text = study_docs.map_per_seed(tmp_path, "t")
    assert "per seed (2–3)" in text and "accuracy +5.0 +0.0;" in text
    assert "GRPO −0.20 −0.10; HICRA −0.10 −0.30; HICRA − GRPO −0.05 [" in text
