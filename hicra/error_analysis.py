"""Error analysis (paper Fig 4): why failed rollouts fail, across training.

Failed rollouts (reward < 1) from a run's ``rollouts/step_*.parquet`` get one of
four causes, grouped into the paper's two categories:

    planning       -> "Planning & Strategy"  (wrong approach, no exploration, no check, gave up)
    calculation    -> "Others"               (an arithmetic or algebra slip)
    comprehension  -> "Others"               (misread the problem or its constraints)
    format         -> "Others"               (no final answer, truncated, unreadable)

On the sandbox the oracle (``hicra.sandbox.world.classify_failure``) is ground
truth: a wrong written arithmetic step is ``calculation``, anything else is
``planning``. Anywhere, an LLM judge behind ``hicra.store.llm.ChatClient`` classifies
with the prompt in ``hicra/prompts/error_judge.md`` (cached, resumable); on the
sandbox its agreement with the oracle is reported (accuracy, Cohen's kappa).

    df = failed_rollouts(["runs/demo/train-hicra-s0"]); df["cause"] = oracle_causes(df)
"""

from __future__ import annotations

import dataclasses
import glob
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from hicra.runinfo import run_arm
from hicra.sandbox.world import Task, classify_failure
from hicra.serve import endpoint
from hicra.stepkit.plotting import PALETTE, save_step_figure, setup_style
from hicra.stepkit.steps import StepConfig, cli_main, start_step
from hicra.store.io import write_json
from hicra.store.llm import ChatClient, extract_json
from hicra.store.paths import resolve

CAUSES = ("planning", "calculation", "comprehension", "format")
CATEGORY = {"planning": "Planning & Strategy", "calculation": "Others", "comprehension": "Others", "format": "Others"}
UNCLASSIFIED = "Unclassified (judge off-format)"  # with unjudged: keep, a judge answer in no expected format
PROMPT = Path(__file__).resolve().parent / "prompts" / "error_judge.md"
_TASK = re.compile(r"Numbers:\s*([\d\s]+)\.\s*Target:\s*(-?\d+)")


def failed_rollouts(run_dirs, every: int = 1) -> pd.DataFrame:
    """Failed rollouts of the runs (every ``every``-th step), with ``run``, ``method``, ``seed``, ``step``."""
    frames = []
    for d in run_dirs:
        d = resolve(d)
        files = step_files(d)
        if not files:
            raise FileNotFoundError(f"{d}/rollouts/ has no step_*.parquet: train with save_rollouts (the default)")
        method, seed = run_arm(d, d.name)
        df = _failures([f for step, f in sorted(files.items()) if not step % every])
        frames.append(df.assign(run=d.name, method=method, seed=seed))
    return pd.concat(frames, ignore_index=True)


def step_files(run_dir) -> dict[int, str]:
    """``{step: path}`` of a run's ``rollouts/step_*.parquet`` (the trainer names the files by step)."""
    return {
        int(re.search(r"step_(\d+)", f).group(1)): f
        for f in glob.glob(str(resolve(run_dir) / "rollouts" / "step_*.parquet"))
    }


def _failures(files: list[str]) -> pd.DataFrame:
    """The failed rollouts (reward < 1) of these step files, prompts as plain text."""
    df = pd.concat(
        [pd.read_parquet(f, columns=["prompt", "completion", "reward", "step"]) for f in files], ignore_index=True
    )
    return df[df.reward < 1].assign(prompt=lambda x: x.prompt.map(_prompt_text)).reset_index(drop=True)


def _prompt_text(p) -> str:
    if isinstance(p, str):
        return p
    try:
        return " ".join(m["content"] for m in p)
    except (TypeError, KeyError):
        return str(p)


def oracle_causes(df: pd.DataFrame) -> pd.Series:
    """Sandbox ground truth: ``calculation`` (a wrong written step) or ``planning``
    (None for a rollout whose answer verifies: not a failure)."""

    def one(prompt, completion):
        m = _TASK.search(prompt)
        if not m:
            raise ValueError(f"not a sandbox prompt (no 'Numbers: ... Target: ...'): {prompt[:80]!r}")
        task = Task([int(x) for x in m.group(1).split()], int(m.group(2)))
        kind = classify_failure(task, completion)
        return None if kind is None else "calculation" if kind == "execution" else "planning"

    return pd.Series([one(p, c) for p, c in zip(df.prompt, df.completion)], index=df.index)


def planning_share_bins(run_dir, frac: float = 0.1, until: int | None = None) -> dict:
    """The study's Fig 4 endpoint for one sandbox run: the oracle's Planning & Strategy share of failed rollouts
    in the first and the last ``frac`` of its steps (steps 1-10 and 91-100 of a 100-step run), with the counts.

    Pre-registered in docs/study.md (issue #26), which read the paper's Fig 4 as planning errors falling faster
    under HICRA, so the per-run change ``last - first`` is compared between arms, paired by seed. NaN when the run
    saved no rollouts or a bin has no failures. ``until``: the run read as if it had stopped at that step."""
    files = {s: f for s, f in step_files(run_dir).items() if until is None or s <= until}
    nan = float("nan")
    if not files:
        return {
            "planning_share_first": nan,
            "planning_share_last": nan,
            "planning_share_change": nan,
            "failed_first": 0,
            "failed_last": 0,
        }
    last = max(files)
    width = max(1, round(frac * last))
    out = {}
    for name, lo, hi in (("first", 1, width), ("last", last - width + 1, last)):
        df = _failures([files[s] for s in sorted(files) if lo <= s <= hi])
        causes = oracle_causes(df).dropna() if len(df) else pd.Series(dtype=object)
        out[f"failed_{name}"] = len(causes)
        out[f"planning_share_{name}"] = float((causes == "planning").mean()) if len(causes) else nan
    out["planning_share_change"] = out["planning_share_last"] - out["planning_share_first"]
    return out


def judge_causes(client, df: pd.DataFrame, prompt_file=PROMPT, progress: bool = True) -> pd.Series:
    """LLM judge's cause per failed rollout (None when its answer cannot be parsed)."""

    system = Path(prompt_file).read_text()
    convs = [
        [{"role": "system", "content": system}, {"role": "user", "content": f"Problem:\n{p}\n\nFailed solution:\n{c}"}]
        for p, c in zip(df.prompt, df.completion)
    ]
    answers = client.chat_many(convs, progress=progress, desc="judging")

    def parse(a):
        data = extract_json(a)
        cause = data.get("cause") if isinstance(data, dict) else None
        if not isinstance(cause, str):
            m = re.search(r"\b(" + "|".join(CAUSES) + r")\b", a or "", re.I)
            cause = m.group(1) if m else None
        cause = cause.strip().lower() if cause else None
        return cause if cause in CAUSES else None

    return pd.Series([parse(a) for a in answers], index=df.index)


def agreement(truth: pd.Series, judged: pd.Series) -> dict:
    """Agreement on the two categories where the judge answered: accuracy and Cohen's kappa."""
    from sklearn.metrics import cohen_kappa_score

    ok = judged.notna()
    t, j = truth[ok].map(CATEGORY), judged[ok].map(CATEGORY)
    kappa = float(cohen_kappa_score(t, j)) if len(set(t) | set(j)) > 1 else float("nan")
    return {
        "n": int(ok.sum()),
        "unparsed": int((~ok).sum()),
        "accuracy": float((t == j).mean()) if len(t) else float("nan"),
        "kappa": kappa,
    }


def counts_by_step(df: pd.DataFrame, cause_col: str = "cause", bins: int = 6) -> pd.DataFrame:
    """Failures per method and step bin by category, with the Planning & Strategy share."""
    d = df.assign(category=df[cause_col].map(CATEGORY).fillna(UNCLASSIFIED))
    edges = pd.cut(d.step, bins=min(bins, d.step.nunique()), include_lowest=True)
    d = d.assign(stage=edges.map(lambda iv: f"{int(iv.left) + 1}-{int(iv.right)}"), mid=edges.map(lambda iv: iv.mid))
    t = d.groupby(["method", "stage", "mid", "category"], observed=True).size().unstack("category", fill_value=0)
    for c in ("Planning & Strategy", "Others", UNCLASSIFIED):
        if c not in t:
            t[c] = 0
    classified = t["Planning & Strategy"] + t["Others"]  # the share is of the failures with a cause
    t["planning_share"] = (t["Planning & Strategy"] / classified).where(classified > 0)
    return t.reset_index().sort_values(["method", "mid"])


def fig4(table: pd.DataFrame):
    """Failed rollouts per step bin: counts by category (bars) and the Planning & Strategy share (lines)."""

    methods = list(dict.fromkeys(table.method))
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(4.2 * (len(methods) + 1), 3.8), squeeze=False)
    axes = axes[0]
    for ax, m in zip(axes, methods):
        t = table[table.method == m]
        ax.bar(t.stage, t["Planning & Strategy"], color=PALETTE["planning"], label="Planning & Strategy")
        ax.bar(t.stage, t["Others"], bottom=t["Planning & Strategy"], color=PALETTE["execution"], label="Others")
        if table[UNCLASSIFIED].any():
            below = t["Planning & Strategy"] + t["Others"]
            ax.bar(t.stage, t[UNCLASSIFIED], bottom=below, color="0.75", hatch="//", label=UNCLASSIFIED)
        ax.set(title=f"{m}: failed rollouts", xlabel="RL steps", ylabel="failed rollouts (count)")
        ax.tick_params(axis="x", rotation=30)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, bbox_to_anchor=(0.4, -0.08))
    ax = axes[-1]
    for m in methods:
        t = table[table.method == m]
        ax.plot(t.mid, t.planning_share, marker="o", color=PALETTE.get(m, "k"), label=m)
    if table.planning_share.isna().all():
        ax.text(
            0.5, 0.5, "no failure with a cause:\nthe judge answered off-format", ha="center", transform=ax.transAxes
        )
    ax.set(
        title="share of failures that are\nPlanning & Strategy",
        xlabel="RL step",
        ylabel="share of failed rollouts",
        ylim=(0, 1),
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside the panel: the lines may end anywhere
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# the step: notebooks/04_error_analysis.ipynb and python -m hicra.error_analysis CONFIG


@dataclasses.dataclass
class ErrorsConfig(StepConfig):
    run_dir: str = "runs/demo/errors"
    runs: list = dataclasses.field(
        default_factory=lambda: ["runs/demo/train-grpo-s0", "runs/demo/train-hicra-s0"],
        metadata={"help": "training run folders whose rollouts are analysed"},
    )
    every: int = 1  # use every N-th step's rollouts
    bins: int = 6  # step bins in the figure
    judge: bool = False  # also classify with the LLM judge
    base_url: str = "http://127.0.0.1:8000/v1"  # judge: OpenAI-compatible endpoint
    llm_model: str = "Qwen/Qwen2.5-1.5B-Instruct"  # judge: model name at that endpoint
    serve: str = ""  # judge: a model to serve here for the step (smollm2 | a folder): hicra.serve
    api_key_env: str = "OPENAI_API_KEY"  # variable holding the endpoint's API key
    n_judge: int = 200  # failed rollouts sent to the judge (random, seeded)
    unjudged: str = dataclasses.field(
        default="error",
        metadata={"help": "a judge answer in no expected format: 'error' (none parsed: stop) or 'keep' (Unclassified)"},
    )
    seed: int = 0  # seed of the judged sample

    def __post_init__(self):
        if self.unjudged not in ("error", "keep"):
            raise ValueError(f"unjudged must be 'error' or 'keep'; got {self.unjudged!r}")


def run(cfg: ErrorsConfig, progress: bool = True) -> dict:
    """The step behind notebook 04 and ``python -m hicra.error_analysis``: errors_by_step.csv, errors.json, Fig 4."""

    out = start_step(cfg, "04_error_analysis")
    df = failed_rollouts(cfg.runs, cfg.every)
    sandbox = bool(len(df)) and df.prompt.map(lambda p: bool(_TASK.search(p))).all()
    if not sandbox and not cfg.judge:
        raise ValueError(
            "these runs are not sandbox runs, so there is no oracle: classify their failures with the "
            "LLM judge (judge: true, and base_url / llm_model or serve)"
        )
    summary = {"run_dir": str(out), "n_failed": len(df), "source": "sandbox oracle" if sandbox else "LLM judge"}
    if sandbox:
        df["cause"] = oracle_causes(df)
        df = df[df.cause.notna()]
    if cfg.judge:
        sub = df.sample(min(cfg.n_judge, len(df)), random_state=cfg.seed)
        with endpoint(cfg, out) as ep:  # a local server lives only while the judge runs
            client = ChatClient(
                ep.base_url,
                ep.model,
                api_key_env=cfg.api_key_env,
                cache=out / "judge_cache.jsonl",
                concurrency=ep.concurrency,
                timeout=ep.timeout,
                max_tokens=128,
            )  # the answer is one short JSON object
            sub = sub.assign(judge=judge_causes(client, sub, progress=progress))
        sub.to_parquet(out / "judged.parquet")
        summary["judge"] = {"model": ep.label, "judged": sub.judge.value_counts(dropna=False).rename(str).to_dict()}
        if sandbox:  # the judge's agreement with the ground truth
            summary["judge"].update(agreement(sub.cause, sub.judge), oracle=sub.cause.value_counts().to_dict())
        else:  # real text: the judge's causes are the figure's (a sample of n_judge failed rollouts)
            keep = cfg.unjudged == "keep"
            df = (
                sub.assign(cause=sub.judge.fillna("unclassified"))
                if keep
                else sub.assign(cause=sub.judge)[sub.judge.notna()]
            )
            summary["n_judged"] = len(df)
    if not len(df):
        raise ValueError(
            "no failed rollout has a cause (the judge answered none in the expected format); use a stronger judge, "
            "or unjudged: keep to draw its answers as an Unclassified bar"
        )
    table = counts_by_step(df, bins=cfg.bins)
    table.to_csv(out / "errors_by_step.csv", index=False)
    summary["planning_share"] = {
        m: {"first": float(t.planning_share.iloc[0]), "last": float(t.planning_share.iloc[-1])}
        for m, t in table.groupby("method", sort=False)
    }
    setup_style()
    summary["figures"] = [save_step_figure(fig4(table), cfg, "fig4_errors")]
    write_json(out / "errors.json", summary)
    return summary


if __name__ == "__main__":
    cli_main(ErrorsConfig, run)
