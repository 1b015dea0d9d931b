"""Planning tokens vs high-entropy "fork" tokens (paper Fig 9), and the paper's claims (a) and (b) with CIs.

The 80/20 method trains only on the top-20 % highest-entropy tokens ("forks").
The paper asks how that set relates to planning tokens: before vs after RL,
what share of planning tokens are high-entropy, and what share of high-entropy
tokens are planning (claim (b)); and it reports planning tokens carrying higher
entropy than execution tokens (claim (a)). Entropies come from one forward pass
of the model over a text: its own sampled completions (``texts: samples``), or a
benchmark's human-written solutions scored token by token under the model
(``texts: solutions``, teacher-forced). Planning tokens come from ``PlanningTagger``.
``claims_ab`` gives both claims' statistics with 95 % bootstrap intervals over
problems (each resample draws whole completions, so a long one counts as one).

    recs = token_entropies(model, tok, prompts, completions)
    fork_shares(recs, tagger)        # {"planning_is_fork": .., "fork_is_planning": .., "threshold": ..}
    claims_ab(recs, tagger)          # the same, plus planning / execution entropy, each with a "ci"
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from hicra.data import load_benchmark
from hicra.method.metrics import fork_overlap
from hicra.method.tagger import PlanningTagger
from hicra.models import load_step_model, step_model_path
from hicra.sandbox.config import SandboxStepConfig
from hicra.sandbox.world import make_tasks, prompt
from hicra.stepkit.plotting import HIGHLIGHT, save_step_figure, setup_style
from hicra.stepkit.steps import cli_main, start_step
from hicra.store.io import write_json
from hicra.store.paths import REPO_ROOT, resolve
from hicra.training.generate import chat_prompts, sample


@torch.no_grad()
def token_entropies(
    model,
    tok,
    prompts: list[str],
    completions: list[str],
    batch_size: int = 16,
    progress: bool = True,
    max_logit_bytes: float = 2e9,
) -> list[dict]:
    """Per completion: its token ids and the model's next-token entropy (nats) at each of them.
    Rows go ``batch_size`` at a time, fewer where a batch's logits would pass ``max_logit_bytes`` (Gemma's 262k
    vocabulary makes one 400-token row's float32 logits 0.4 GB), and the entropy is taken over each row's
    completion positions only."""
    model.eval()
    vocab = model.get_output_embeddings().weight.shape[0]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows = [
        (tok(p, add_special_tokens=False)["input_ids"], tok(c, add_special_tokens=False)["input_ids"])
        for p, c in zip(prompts, completions)
    ]
    out, i = [], 0
    bar = tqdm(total=len(rows), desc="entropies", disable=not progress, leave=False)
    while i < len(rows):
        n = 1
        while (
            n < batch_size
            and i + n < len(rows)
            and (n + 1) * vocab * 4 * 3 * max(len(a) + len(b) for a, b in rows[i : i + n + 1]) <= max_logit_bytes
        ):
            n += 1
        chunk = rows[i : i + n]
        width = max(len(pi) + len(ci) for pi, ci in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        att = torch.zeros_like(ids)
        for r, (pi, ci) in enumerate(chunk):
            ids[r, : len(pi) + len(ci)] = torch.tensor(pi + ci)
            att[r, : len(pi) + len(ci)] = 1
        logits = model(input_ids=ids.to(model.device), attention_mask=att.to(model.device)).logits
        for r, (pi, ci) in enumerate(chunk):
            if ci:  # the entropy at position t-1 is that of the distribution token t was drawn from
                logp = torch.log_softmax(logits[r, len(pi) - 1 : len(pi) + len(ci) - 1].float(), -1)
                out.append({"ids": np.array(ci), "entropy": (-(logp.exp() * logp).sum(-1)).cpu().numpy()})
            else:
                out.append({"ids": np.array([], dtype=int), "entropy": np.array([])})
        del logits
        i += n
        bar.update(n)
    bar.close()
    return out


def fork_shares(records: list[dict], tagger, rho: float = 0.2) -> dict:
    """``planning_is_fork`` and ``fork_is_planning`` over all tokens of the records (top-rho by entropy)."""

    recs = [r for r in records if len(r["ids"])]
    if not recs:
        raise ValueError("no completion tokens to compare: sample non-empty completions first")
    T = max(len(r["ids"]) for r in recs)
    ids = torch.zeros(len(recs), T, dtype=torch.long)
    ent = torch.zeros(len(recs), T, dtype=torch.float64)
    cm = torch.zeros(len(recs), T, dtype=torch.bool)
    for i, r in enumerate(recs):
        n = len(r["ids"])
        ids[i, :n], ent[i, :n], cm[i, :n] = torch.as_tensor(r["ids"]), torch.as_tensor(r["entropy"]), True
    plan = tagger.mask(ids, cm)
    res = fork_overlap(ent, plan, cm, rho)
    res.update(planning_ratio=float(plan[cm].float().mean()), n_tokens=int(cm.sum()), rho=rho)
    return res


CLAIM_STATS = (
    "planning_entropy",
    "execution_entropy",
    "entropy_gap",
    "planning_is_fork",
    "fork_is_planning",
    "planning_ratio",
)


def claims_ab(records: list[dict], tagger, rho: float = 0.2, n_boot: int = 1000, seed: int = 0) -> dict:
    """Claim (a): mean entropy (nats) of planning vs execution tokens and their gap; claim (b): the Fig 9 shares
    (``fork_shares``' numbers and entropy ``threshold``). Point estimates pool every token; ``ci`` holds 95 %
    percentile-bootstrap intervals over problems."""

    recs = [r for r in records if len(r["ids"])]
    if not recs:
        raise ValueError("no completion tokens to score: sample non-empty completions first")
    ents = [np.asarray(r["entropy"], dtype=np.float64) for r in recs]
    plans = [tagger.mask(torch.as_tensor(r["ids"])[None])[0].numpy().astype(bool) for r in recs]

    def stats(idx) -> dict:
        e, p = np.concatenate([ents[i] for i in idx]), np.concatenate([plans[i] for i in idx])
        shares = fork_overlap(torch.from_numpy(e), torch.from_numpy(p), None, rho)
        pe = float(e[p].mean()) if p.any() else float("nan")
        xe = float(e[~p].mean()) if (~p).any() else float("nan")
        return {
            "planning_entropy": pe,
            "execution_entropy": xe,
            "entropy_gap": pe - xe,
            "planning_is_fork": shares["planning_is_fork"],
            "fork_is_planning": shares["fork_is_planning"],
            "planning_ratio": float(p.mean()),
            "threshold": shares["threshold"],
        }

    out = stats(range(len(recs)))
    out.update(
        n_problems=len(recs),
        n_tokens=int(sum(len(e) for e in ents)),
        n_planning_tokens=int(sum(p.sum() for p in plans)),
        rho=rho,
    )
    if n_boot:
        rng = np.random.default_rng(seed)
        boots = [stats(rng.integers(0, len(recs), len(recs))) for _ in range(n_boot)]
        out["ci"] = {
            k: [
                float(np.nanpercentile([b[k] for b in boots], 2.5)),
                float(np.nanpercentile([b[k] for b in boots], 97.5)),
            ]
            for k in CLAIM_STATS
        }
    return out


def fig_claims(rows):
    """Claim (a) per row (model / text): mean entropy of planning vs execution tokens with 95 % bootstrap CIs."""

    labels = [f"{r['model']}\n{r.get('texts', '')}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.5, 2.1 * len(rows)), 4.4))
    for off, key, colour, name in (
        (-0.18, "planning_entropy", COLOURS["planning"], "planning tokens"),
        (0.18, "execution_entropy", "0.75", "execution tokens"),
    ):
        vals = np.array([r[key] for r in rows])
        err = (
            np.array([[v - r["ci"][key][0], r["ci"][key][1] - v] for v, r in zip(vals, rows)]).T
            if all("ci" in r for r in rows)
            else None
        )
        ax.bar(x + off, vals, 0.36, yerr=err, capsize=4, color=colour, edgecolor="0.3", label=name)
    ax.set_xticks(x, labels, fontsize=9)
    tops = [r["ci"][k][1] if "ci" in r else r[k] for r in rows for k in ("planning_entropy", "execution_entropy")]
    top = max((t for t in tops if np.isfinite(t)), default=1.0)  # nan: a text with no planning tokens
    ax.set(
        ylabel="mean next-token entropy (nats)",
        ylim=(0, 1.25 * top),
        title="Claim (a): planning vs execution token entropy\n(95 % bootstrap CI over problems)",
    )
    ax.legend(loc="upper left", ncol=2, fontsize=9)
    fig.tight_layout()
    return fig


COLOURS = HIGHLIGHT  # the passage shades of Fig 9 (hicra.stepkit.plotting, the one colour table)


def passage_html(tok, record: dict, tagger, threshold: float, title: str = "") -> str:
    """A completion with high-entropy (blue), planning (orange) and shared (red) tokens highlighted."""
    ids = torch.as_tensor(record["ids"])[None]
    plan = tagger.mask(ids)[0].numpy()
    fork = record["entropy"] >= threshold
    parts = []
    for t, p, f in zip(record["ids"], plan, fork):
        piece = html.escape(tok.decode([int(t)])).replace("\n", "<br>")
        kind = "both" if p and f else "planning" if p else "fork" if f else None
        parts.append(f'<span style="background:{COLOURS[kind]}">{piece}</span>' if kind else piece)
    legend = " ".join(
        f'<span style="background:{c};padding:0 4px">{k}</span>'
        for k, c in (("high-entropy", COLOURS["fork"]), ("planning", COLOURS["planning"]), ("both", COLOURS["both"]))
    )
    return (
        f'<div style="font-family:monospace;line-height:1.7;margin:6px 0"><b>{html.escape(title)}</b> {legend}<br>'
        + "".join(parts)
        + "</div>"
    )


def fig9(rows):
    """Grouped bars per model/stage: share of planning tokens that are high-entropy, and vice versa.
    ``rows``: dicts with ``model``, ``stage`` (before/after RL), ``planning_is_fork``, ``fork_is_planning``, ``rho``."""

    df = pd.DataFrame(rows)
    labels = [
        f"{m}\n{s}" + (f"\n{t}" if df.get("texts", pd.Series([""])).nunique() > 1 else "")
        for m, s, t in zip(df.model, df.stage, df.get("texts", [""] * len(df)))
    ]
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 2.0 * len(df) * 2), 4.6), sharey=True)
    rho = float(df.rho.iloc[0])
    for ax, col, title, colour in (
        (axes[0], "planning_is_fork", "planning tokens that are\nhigh-entropy", COLOURS["planning"]),
        (axes[1], "fork_is_planning", "high-entropy tokens that are\nplanning", COLOURS["fork"]),
    ):
        err = None
        if "ci" in df:  # 95 % bootstrap intervals over problems
            err = np.array([[v - c[col][0], c[col][1] - v] for v, c in zip(df[col], df.ci)]).T
        bars = ax.bar(labels, df[col], yerr=err, capsize=4, color=colour, edgecolor="0.3")
        tops = df[col] if err is None else df[col] + err[1]
        for b, v, top, chance in zip(
            bars, df[col], tops, [rho] * len(df) if col == "planning_is_fork" else df.planning_ratio
        ):
            ax.text(b.get_x() + b.get_width() / 2, top + 0.02, f"{v:.2f}", ha="center", fontsize=9)
            ax.hlines(
                chance,
                b.get_x(),
                b.get_x() + b.get_width(),
                colors="0.2",
                linestyles="--",
                lw=1.2,
                label="chance level" if b is bars[0] else None,
            )
        ax.set(title=title, ylim=(0, 1), ylabel="share of tokens")
        ax.tick_params(axis="x", labelsize=9)
        ax.legend(loc="upper right", fontsize=8)
    rl = any("RL" in str(x) for x in df.stage)
    fig.suptitle(
        f"Planning vs high-entropy (top {rho:.0%}) tokens"
        + (", before vs after RL" if rl else "")
        + (" (95 % bootstrap CI over problems)" if "ci" in df else ""),
        y=1.0,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# the step: notebooks/05_fork_tokens.ipynb and python -m hicra.forks CONFIG


@dataclasses.dataclass
class ForksConfig(SandboxStepConfig):
    run_dir: str = "runs/demo/forks"
    models: dict = dataclasses.field(
        default_factory=lambda: {"warm start|before RL": "sandbox", "HICRA|after RL": "runs/demo/train-hicra-s0/final"},
        metadata={"help": '"name|stage" -> model (sandbox, smollm2, a run\'s final/ folder or a local path)'},
    )
    source: str = "sandbox"  # sandbox (validation tasks) | gsm8k (chat prompts)
    n_prompts: int = 64  # prompts sampled per model
    temperature: float = 1.0  # sampling temperature
    max_new_tokens: int = 256  # completion cap (tokens)
    texts: list = dataclasses.field(default_factory=lambda: ["samples"])  # samples (each model's own) and/or
    #                                   solutions (the benchmark's human-written ones, teacher-forced; not sandbox)
    rho: float = 0.2  # high-entropy share (the 80/20 method's 20 %)
    n_boot: int = 1000  # bootstrap resamples over problems for the CIs (0: none)
    sg_file: str = ""  # "" = the sandbox's grams (sandbox) / data/grams/seed_grams.json
    seed: int = 0  # sampling and bootstrap seed

    def __post_init__(self):
        bad = [t for t in self.texts if t not in ("samples", "solutions")]
        if bad or not self.texts:
            raise ValueError(f"texts: a list of 'samples' and/or 'solutions'; got {self.texts!r}")
        if "solutions" in self.texts and self.source == "sandbox":
            raise ValueError(
                "texts 'solutions' scores a benchmark's human-written solutions: set source to gsm8k, "
                "math500, minerva or olympiadbench"
            )


def _prompts(cfg: ForksConfig, tok) -> tuple[list[str], list[str]]:
    """Prompts, and each problem's human-written solution ("" where there is none, and on the sandbox)."""
    if cfg.source == "sandbox":
        wc = cfg.sandbox_config().world_config()
        ps = [prompt(t) for t in make_tasks(wc, "val", cfg.n_prompts, allow_fewer=True)]
        return ps, [""] * len(ps)

    rows = load_benchmark(cfg.source, limit=cfg.n_prompts)
    return chat_prompts(tok, [r["problem"] for r in rows]), [r.get("solution") or "" for r in rows]


def run(cfg: ForksConfig, progress: bool = True) -> dict:
    """Sample each model on the same prompts, score its own tokens' entropies, compare with planning tokens."""

    out = start_step(cfg, "05_fork_tokens")
    if cfg.sg_file:
        sg = resolve(cfg.sg_file)
    elif cfg.source == "sandbox":  # the world's ground-truth grams, written by the build
        sg = Path(step_model_path("sandbox", cfg)) / "grams.json"
    else:
        sg = REPO_ROOT / "data" / "grams" / "seed_grams.json"
    rows, passages = [], []
    for label, name in cfg.models.items():
        model_name, _, stage = label.partition("|")
        model, tok = load_step_model(name, cfg)
        tagger = PlanningTagger(sg, tok)
        prompts, solutions = _prompts(cfg, tok)
        for texts in cfg.texts:
            if texts == "samples":
                ps, comps = (
                    prompts,
                    [
                        c[0]
                        for c in sample(
                            model,
                            tok,
                            prompts,
                            n=1,
                            temperature=cfg.temperature,
                            max_new_tokens=cfg.max_new_tokens,
                            seed=cfg.seed,
                            progress=progress,
                        )
                    ],
                )
            else:  # teacher-forced: the model's entropy at each token of the human-written solution
                if not any(solutions):
                    raise ValueError(f"{cfg.source} ships no solutions to score; use texts: [samples]")
                ps, comps = zip(*[(p, sol) for p, sol in zip(prompts, solutions) if sol])
            recs = token_entropies(model, tok, list(ps), list(comps), progress=progress)
            c = claims_ab(recs, tagger, cfg.rho, cfg.n_boot, cfg.seed)  # Fig 9's shares, claim (a), their CIs
            rows.append({"model": model_name, "stage": stage or "", "texts": texts, "source": name, **c})
            best = max(
                range(len(recs)),
                key=lambda i: (
                    int(tagger.mask(torch.as_tensor(recs[i]["ids"])[None]).sum()) if len(recs[i]["ids"]) else -1
                ),
            )
            passages.append(passage_html(tok, recs[best], tagger, c["threshold"], f"{model_name} ({stage}, {texts})"))
    write_json(out / "forks.json", {"rows": rows, "sg_file": str(sg)})
    (out / "passages.html").write_text("\n".join(passages))
    setup_style()
    figs = [save_step_figure(fig9(rows), cfg, "fig9_forks"), save_step_figure(fig_claims(rows), cfg, "fig_claims_ab")]
    return {"run_dir": str(out), "rows": rows, "figures": figs}


if __name__ == "__main__":
    cli_main(ForksConfig, run)
