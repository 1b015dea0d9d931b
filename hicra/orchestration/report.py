"""The pipeline's results page: each step's headline numbers, from the files the steps wrote.

Why: after ``make demo`` a user wants one page that says what each step found, not nine run folders to open.
``hicra.pipeline`` calls this at the end of a run (``log``: one record per step, its status and seconds) and writes
the text to ``figures/results_<profile>.md``; this module only renders it.

    from pathlib import Path
    from hicra.orchestration.report import results_markdown
    text = results_markdown("sandbox", Path("runs/demo"), log)   # the page as markdown text
"""

from __future__ import annotations

import json
from pathlib import Path

from hicra.store.paths import REPO_ROOT


def results_markdown(profile: str, run_dir: Path, log: list[dict]) -> str:
    """Each step's headline numbers, from the files the steps wrote."""
    shown = run_dir.relative_to(REPO_ROOT) if run_dir.is_relative_to(REPO_ROOT) else run_dir
    lines = [
        f"# Results: profile `{profile}`",
        "",
        f"Run folder: `{shown}`; regenerate with `python -m hicra.pipeline --profile " + profile + "`.",
        "",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {x['step']} | {x['status']} | {x.get('seconds', '')} |" for x in log]

    def j(p):
        p = run_dir / p
        return json.loads(p.read_text()) if p.exists() else None

    if s := j("sandbox.json"):
        lines += ["", "## Sandbox warm start", f"val accuracy {s['val_accuracy']:.3f}; oracle failures {s['errors']}"]
    if g := j("grams/grams_summary.json"):
        lines += [
            "",
            "## Strategic grams",
            f"{g['n_grams']} grams from {g['n_candidates']} candidates, "
            f"{g['n_successful']} successful rollouts; annotator {g['annotator']}",
        ]
        if g.get("precision") is not None:
            lines.append(
                f"token-level precision {g['precision']:.3f}, recall {g['recall']:.3f}"
                + (
                    f"; seeds overlapping the sandbox held out: precision {g['holdout']['precision']:.3f}, "
                    f"recall {g['holdout']['recall']:.3f}"
                    if g.get("holdout")
                    else ""
                )
            )
    if (run_dir / "final_accuracy.csv").exists():
        table = (run_dir / "final_accuracy.csv").read_text()
        what = "validation accuracy" if "val_accuracy" in table.splitlines()[0] else "training reward (no validation)"
        lines += ["", f"## Final {what} (03_dynamics)", table]
    if e := j("errors/errors.json"):
        lines += [
            "",
            f"## Error analysis ({e.get('source', 'sandbox oracle')})",
            f"{e['n_failed']} failed rollouts; Planning & Strategy share of those with a cause, "
            "first -> last step bin: "
            + ", ".join(f"{m} {_share(v['first'])} -> {_share(v['last'])}" for m, v in e["planning_share"].items()),
        ]
    if f := j("forks/forks.json"):
        lines += [
            "",
            "## Planning vs fork tokens (claims a and b; 95 % bootstrap CIs over problems where computed)",
            "| model | stage | text | planning − execution entropy (nats) | planning that is high-entropy "
            "| high-entropy that is planning |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['model']} | {r['stage']} | {r.get('texts', 'samples')} | {_ci(r, 'entropy_gap')} "
            f"| {_ci(r, 'planning_is_fork')} | {_ci(r, 'fork_is_planning')} |"
            for r in f["rows"]
        ]
    if st := j("study.json"):
        lines += [
            "",
            f"## The study ({st['runs']} finished runs; seeds per arm {st['arms']})",
            "| paper claim | result | verdict |",
            "|---|---|---|",
        ]
        lines += [f"| {c['claim']} | {c['result']} | {c['verdict']} |" for c in st["claims"]]
    if p := j("proof.json"):  # the rehearsal's learning signal (hicra.rehearsal_proof)
        from hicra.rehearsal_proof import proof_markdown  # noqa: PLC0415  torch: only a rehearsal's page needs it

        lines += proof_markdown(p)
    if (run_dir / "eval" / "table1.md").exists():
        lines += [
            "",
            "## Evaluation (Table 1 layout; avg@k in %, 95 % bootstrap CI)",
            (run_dir / "eval" / "table1.md").read_text(),
        ]
    return "\n".join(lines) + "\n"


def _ci(row: dict, key: str) -> str:
    """``0.380 [0.226, 0.533]`` (the interval when the step computed one), or ``–`` when the row lacks the value."""
    if row.get(key) is None:
        return "–"
    lo_hi = (row.get("ci") or {}).get(key)
    return f"{row[key]:.3f}" + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")


def _share(x) -> str:
    """A share to two decimals, or "n/a" where no failure had a cause (an off-format judge)."""
    return "n/a" if x is None else f"{x:.2f}"
