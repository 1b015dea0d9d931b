"""Planning tokens vs high-entropy "fork" tokens (paper Fig 9).

The 80/20 method trains only on the top-20 % highest-entropy tokens ("forks").
The paper asks how that set relates to planning tokens: before vs after RL,
what share of planning tokens are high-entropy, and what share of high-entropy
tokens are planning. Entropies come from one forward pass of the model over its
own sampled completions; planning tokens from ``PlanningTagger``.

    recs = token_entropies(model, tok, prompts, completions)
    fork_shares(recs, tagger)        # {"planning_is_fork": .., "fork_is_planning": .., "threshold": ..}
"""
from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hicra.config import SandboxStepConfig


@torch.no_grad()
def token_entropies(model, tok, prompts: list[str], completions: list[str], batch_size: int = 16,
                    progress: bool = True) -> list[dict]:
    """Per completion: its token ids and the model's next-token entropy (nats) at each of them."""
    model.eval()
    out = []
    for i in tqdm(range(0, len(prompts), batch_size), desc="entropies", disable=not progress, leave=False):
        rows = []
        for p, c in zip(prompts[i:i + batch_size], completions[i:i + batch_size]):
            pi = tok(p, add_special_tokens=False)["input_ids"]
            ci = tok(c, add_special_tokens=False)["input_ids"]
            rows.append((pi, ci))
        width = max(len(pi) + len(ci) for pi, ci in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        att = torch.zeros_like(ids)
        for r, (pi, ci) in enumerate(rows):
            seq = pi + ci
            ids[r, :len(seq)] = torch.tensor(seq)
            att[r, :len(seq)] = 1
        logits = model(input_ids=ids.to(model.device), attention_mask=att.to(model.device)).logits.float()
        logp = torch.log_softmax(logits, -1)
        ent = -(logp.exp() * logp).sum(-1).cpu()
        for r, (pi, ci) in enumerate(rows):
            if ci:  # the entropy at position t-1 is that of the distribution token t was drawn from
                out.append({"ids": np.array(ci), "entropy": ent[r, len(pi) - 1:len(pi) + len(ci) - 1].numpy()})
            else:
                out.append({"ids": np.array([], dtype=int), "entropy": np.array([])})
    return out


def fork_shares(records: list[dict], tagger, rho: float = 0.2) -> dict:
    """``planning_is_fork`` and ``fork_is_planning`` over all tokens of the records (top-rho by entropy)."""
    from hicra.metrics import fork_overlap
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


COLOURS = {"fork": "#9ecae1", "planning": "#fdae6b", "both": "#d62728"}


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
    legend = " ".join(f'<span style="background:{c};padding:0 4px">{k}</span>' for k, c in
                      (("high-entropy", COLOURS["fork"]), ("planning", COLOURS["planning"]), ("both", COLOURS["both"])))
    return (f'<div style="font-family:monospace;line-height:1.7;margin:6px 0"><b>{html.escape(title)}</b> {legend}<br>'
            + "".join(parts) + "</div>")


def fig9(rows):
    """Grouped bars per model/stage: share of planning tokens that are high-entropy, and vice versa.
    ``rows``: dicts with ``model``, ``stage`` (before/after RL), ``planning_is_fork``, ``fork_is_planning``, ``rho``."""
    import matplotlib.pyplot as plt
    import pandas as pd
    df = pd.DataFrame(rows)
    labels = [f"{m}\n{s}" for m, s in zip(df.model, df.stage)]
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 2.4 * len(df) * 2), 4), sharey=True)
    rho = float(df.rho.iloc[0])
    for ax, col, title, colour in (
        (axes[0], "planning_is_fork", "planning tokens that are\nhigh-entropy", COLOURS["planning"]),
        (axes[1], "fork_is_planning", "high-entropy tokens that are\nplanning", COLOURS["fork"]),
    ):
        bars = ax.bar(labels, df[col], color=colour, edgecolor="0.3")
        for b, v, chance in zip(bars, df[col], [rho] * len(df) if col == "planning_is_fork" else df.planning_ratio):
            ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", fontsize=9)
            ax.hlines(chance, b.get_x(), b.get_x() + b.get_width(), colors="0.2", linestyles="--", lw=1.2,
                      label="chance level" if b is bars[0] else None)
        ax.set(title=title, ylim=(0, 1), ylabel="share of tokens")
        ax.tick_params(axis="x", labelsize=9)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Planning vs high-entropy (top {rho:.0%}) tokens, before vs after RL", y=1.03)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# the step: notebooks/05_fork_tokens.ipynb and python -m hicra.forks CONFIG


@dataclasses.dataclass
class ForksConfig(SandboxStepConfig):
    run_dir: str = "runs/demo/forks"
    models: dict = dataclasses.field(default_factory=lambda: {
        "warm start|before RL": "sandbox", "HICRA|after RL": "runs/demo/train-hicra-s0/final"})  # "name|stage" -> model
    source: str = "sandbox"           # sandbox (validation tasks) | gsm8k (chat prompts)
    n_prompts: int = 64
    temperature: float = 1.0
    max_new_tokens: int = 256
    rho: float = 0.2                  # high-entropy share (the 80/20 method's 20 %)
    sg_file: str = ""                 # "" = the sandbox's grams (sandbox) / data/grams/seed_grams.json
    seed: int = 0


def _prompts(cfg: ForksConfig, tok) -> list[str]:
    if cfg.source == "sandbox":
        from hicra.sandbox.world import make_tasks, prompt
        wc = cfg.sandbox_config().world_config()
        return [prompt(t) for t in make_tasks(wc, "val", cfg.n_prompts, allow_fewer=True)]
    from hicra.data import load_benchmark
    from hicra.generate import chat_prompts
    return chat_prompts(tok, [r["problem"] for r in load_benchmark(cfg.source, limit=cfg.n_prompts)])


def run(cfg: ForksConfig, progress: bool = True) -> dict:
    """Sample each model on the same prompts, score its own tokens' entropies, compare with planning tokens."""
    from hicra.config import REPO_ROOT, resolve, save_step_figure, start_step, write_json
    from hicra.generate import sample
    from hicra.models import load_step_model, step_model_path
    from hicra.plotting import setup_style
    from hicra.tagger import PlanningTagger
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
        prompts = _prompts(cfg, tok)
        comps = [c[0] for c in sample(model, tok, prompts, n=1, temperature=cfg.temperature,
                                      max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, progress=progress)]
        recs = token_entropies(model, tok, prompts, comps, progress=progress)
        s = fork_shares(recs, tagger, cfg.rho)
        rows.append({"model": model_name, "stage": stage or "", "source": name, **s})
        best = max(range(len(recs)), key=lambda i: int(tagger.mask(torch.as_tensor(recs[i]["ids"])[None]).sum())
                   if len(recs[i]["ids"]) else -1)
        passages.append(passage_html(tok, recs[best], tagger, s["threshold"], f"{model_name} ({stage})"))
    write_json(out / "forks.json", {"rows": rows})
    (out / "passages.html").write_text("\n".join(passages))
    setup_style()
    return {"run_dir": str(out), "rows": rows, "figures": [save_step_figure(fig9(rows), cfg, "fig9_forks")]}


if __name__ == "__main__":
    from hicra.config import emit, parse_cli
    emit(run(parse_cli(ForksConfig)))
