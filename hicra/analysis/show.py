"""Look inside: the method on one batch, as views a notebook shows in one line (paper §2.1 and §3).

HICRA is GRPO whose advantage becomes ``Â = A + α·|A|`` on planning tokens (tokens inside a strategic gram). These
functions make that visible on real completions: sample a group per task, tag each token as planning (by gram
kind) or execution, take the model's entropy at every token, GRPO's A and HICRA's Â per token, the share of the
policy-gradient weight that lands on planning tokens, and what one update of each method does to the
log-probabilities of planning vs execution tokens. Views are HTML (every piece of text escaped) and matplotlib
figures, so the same view works in a notebook, a test or a script.

    from hicra.analysis import show
    batch = show.rollout_batch(model, tok, tagger, kinds, prompts, reward, group_size=4)   # as hicra.analysis.tour
    display(HTML(show.batch_html(batch, tok)))      # planning tokens by kind, entropy underline, A / Â
    show.plot_advantages(batch)                      # GRPO's A vs HICRA's Â, token by token
    show.update_table(model, batch)                  # one update of each method from the same state

The notebooks' sections "Look inside" and ``notebooks/00_tour.ipynb`` call these.
"""

from __future__ import annotations

import copy
import dataclasses
import html

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from hicra.method.advantage import grpo_advantages, hicra_advantages
from hicra.method.methods import DEFAULT_ALPHA
from hicra.method.tagger import normalize_text
from hicra.stepkit.plotting import KIND_COLOURS, PALETTE, highlight_html
from hicra.store.sgfile import read_sg_file
from hicra.training.decode import decode

ALPHA = DEFAULT_ALPHA  # the paper's α (one default: hicra.method.methods)

# --------------------------------------------------------------------------------------------------------------
# one batch: completions, planning tokens, entropies, rewards


@dataclasses.dataclass
class Batch:
    """A group of ``group_size`` completions per prompt, laid out group by group, with per-token views."""

    prompt_ids: list[list[int]]
    ids: list[np.ndarray]  # completion token ids per row
    rewards: np.ndarray  # (B,)
    group_size: int
    planning: list[np.ndarray]  # bool per token
    kinds: list[list]  # gram kind per token (None: execution)
    entropy: list[np.ndarray]  # nats per token
    texts: list[str]

    def padded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) planning mask and completion mask."""
        width = max(1, max(len(x) for x in self.ids))
        plan = torch.zeros(len(self.ids), width, dtype=torch.bool)
        mask = torch.zeros(len(self.ids), width, dtype=torch.bool)
        for i, p in enumerate(self.planning):
            plan[i, : len(p)] = torch.as_tensor(p, dtype=torch.bool)
            mask[i, : len(p)] = True
        return plan, mask

    def advantages(self, alpha: float = ALPHA) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) GRPO's A (the completion's advantage on each of its tokens) and HICRA's Â, zero on padding."""
        plan, mask = self.padded()
        A = grpo_advantages(torch.as_tensor(self.rewards, dtype=torch.float32), self.group_size)
        A_tok = A[:, None].expand_as(plan) * mask
        return A_tok, hicra_advantages(A_tok, plan, alpha) * mask


def token_kinds(tagger, kinds: dict, ids: list) -> tuple[list[np.ndarray], list[list]]:
    """Per row: the planning mask and the kind (``kinds[gram]``) of the longest gram covering each token."""
    width = max(1, max(len(x) for x in ids))
    pad = np.zeros((len(ids), width), dtype=np.int64)
    valid = np.zeros_like(pad, dtype=bool)
    for i, x in enumerate(ids):
        pad[i, : len(x)], valid[i, : len(x)] = x, True
    gid = tagger.token_grams(pad, valid)
    masks = [gid[i, : len(x)] >= 0 for i, x in enumerate(ids)]
    names = [
        [kinds.get(tagger.grams[g], "planning") if g >= 0 else None for g in gid[i, : len(x)]]
        for i, x in enumerate(ids)
    ]
    return masks, names


def gram_kinds(sg_path) -> dict:
    """``{normalised gram: kind}`` of an SG file (the tagger's spelling of each gram)."""

    return {normalize_text(g["gram"]): g.get("kind") for g in read_sg_file(sg_path)["grams"]}


def token_logps(model, prompt_ids, ids, entropy: bool = False):
    """(B, T) log-probability of each completion token under ``model`` (with its entropy in nats if asked), one
    right-padded forward pass; gradients flow when the caller enables them."""
    width = max(len(p) + len(c) for p, c in zip(prompt_ids, ids))
    T = max(1, max(len(c) for c in ids))
    x = torch.zeros(len(ids), width, dtype=torch.long)
    att = torch.zeros_like(x)
    for r, (p, c) in enumerate(zip(prompt_ids, ids)):
        x[r, : len(p) + len(c)] = torch.tensor(list(p) + list(c))
        att[r, : len(p) + len(c)] = 1
    logits = model(input_ids=x, attention_mask=att).logits.float()
    logp = torch.zeros(len(ids), T)
    ent = torch.zeros(len(ids), T)
    for r, (p, c) in enumerate(zip(prompt_ids, ids)):
        if len(c):  # position t-1 holds the distribution token t was drawn from
            lp = torch.log_softmax(logits[r, len(p) - 1 : len(p) + len(c) - 1], -1)
            logp[r, : len(c)] = lp.gather(-1, torch.as_tensor(c)[:, None]).squeeze(-1)
            if entropy:
                ent[r, : len(c)] = -(lp.exp() * lp).sum(-1).detach()
    return (logp, ent) if entropy else logp


def rollout_batch(
    model,
    tok,
    tagger,
    kinds: dict,
    prompts: list[str],
    reward,
    group_size: int = 4,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    seed: int = 0,
) -> Batch:
    """Sample ``group_size`` completions per prompt (hicra.training.decode, seeded), score them with
    ``reward(prompt_index, text) -> float`` and tag and measure every token."""

    prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts for _ in range(group_size)]
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        eos = [model.generation_config.eos_token_id, tok.eos_token_id]
        comp = decode(model, prompt_ids, max_new_tokens, temperature, eos, tok.pad_token_id)
    texts = tok.batch_decode(comp, skip_special_tokens=True)
    rewards = np.array([float(reward(i // group_size, t)) for i, t in enumerate(texts)])
    ids = [np.array(c, dtype=np.int64) for c in comp]
    with torch.no_grad():
        _, ent = token_logps(model, prompt_ids, ids, entropy=True)
    plan, names = token_kinds(tagger, kinds, ids)
    return Batch(
        prompt_ids, ids, rewards, group_size, plan, names, [ent[i, : len(x)].numpy() for i, x in enumerate(ids)], texts
    )


# --------------------------------------------------------------------------------------------------------------
# HTML views (text always escaped)

_LEGEND = " ".join(
    f'<span style="background:{c};padding:0 4px">{k}</span>' for k, c in KIND_COLOURS.items() if k is not None
)


def tokens_html(tok, ids, kinds, entropy=None, adv=None, adv_hat=None, title: str = "") -> str:
    """One completion, token by token: planning tokens shaded by their gram's kind, the entropy as a blue underline
    (darker = higher), A / Â / entropy in each token's tooltip. Every piece of text is HTML-escaped."""
    emax = float(np.max(entropy)) if entropy is not None and len(entropy) else 1.0
    parts = []
    for t, tid in enumerate(ids):
        piece = html.escape(tok.decode([int(tid)], skip_special_tokens=True)).replace("\n", "↵<br>")
        if not piece:  # EOS and other special tokens
            continue
        style = f"background:{KIND_COLOURS.get(kinds[t], KIND_COLOURS[None])};" if kinds[t] else ""
        tip = []
        if entropy is not None:
            style += f"border-bottom:3px solid rgba(31,119,180,{float(entropy[t]) / max(emax, 1e-6):.2f});"
            tip.append(f"entropy {float(entropy[t]):.2f} nats")
        if adv is not None:
            tip.append(f"A {float(adv[t]):+.2f}")
        if adv_hat is not None:
            tip.append(f"Â {float(adv_hat[t]):+.2f}")
        if kinds[t]:
            tip.append(str(kinds[t]))
        parts.append(f'<span style="{style}" title="{html.escape(" · ".join(tip))}">{piece}</span>')
    head = f"<b>{html.escape(title)}</b><br>" if title else ""
    style = "font-family:monospace;line-height:1.9;margin:8px 0"  # mathjax_ignore: no MathJax on "$" in the text
    return f'<div class="tex2jax_ignore mathjax_ignore" style="{style}">{head}{"".join(parts)}</div>'


def batch_html(batch: Batch, tok, rows=None, alpha: float = ALPHA) -> str:
    """The batch's completions (``rows``: which; default all), each headed by its reward, A and Â on its planning
    tokens, under a legend."""
    A, Ah = batch.advantages(alpha)
    out = [
        f'<div style="font-family:sans-serif">gram kinds: {_LEGEND} · underline: token entropy (darker = higher)</div>'
    ]
    for i in rows if rows is not None else range(len(batch.ids)):
        n, a = len(batch.ids[i]), float(A[i, 0]) if len(batch.ids[i]) else 0.0
        share = float(np.mean(batch.planning[i])) if n else 0.0
        title = (
            f"prompt {i // batch.group_size} · completion {i % batch.group_size} · reward {batch.rewards[i]:.0f} · "
            f"A = {a:+.2f} · Â on planning = {a + alpha * abs(a):+.2f} · {share:.0%} of {n} tokens planning"
        )
        out.append(tokens_html(tok, batch.ids[i], batch.kinds[i], batch.entropy[i], A[i, :n], Ah[i, :n], title))
    return "\n".join(out)


def text_html(text: str, tagger, kinds: dict, title: str = "") -> str:
    """Real text with its strategic grams shaded by kind (character spans of ``tagger.spans``), escaped."""

    spans = [(s, e, g, kinds.get(normalize_text(g))) for s, e, g in tagger.spans(text)]
    return highlight_html(text, spans, title=title or None)


# --------------------------------------------------------------------------------------------------------------
# A vs Â, the planning share of the gradient weight, one update


def plot_advantages(batch: Batch, rows=None, alpha: float = ALPHA):
    """GRPO's A and HICRA's Â token by token for a few completions (planning tokens shaded)."""

    A, Ah = batch.advantages(alpha)
    rows = list(rows if rows is not None else range(min(4, len(batch.ids))))
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.9 * len(rows)), sharex=True, squeeze=False)
    for ax, i in zip(axes[:, 0], rows):
        n = len(batch.ids[i])
        x = np.arange(n)
        for t in np.flatnonzero(batch.planning[i]):
            ax.axvspan(t - 0.5, t + 0.5, color=PALETTE["planning"], alpha=0.25, lw=0)
        ax.step(x, A[i, :n], where="mid", color=PALETTE["grpo"], label="GRPO: A")
        ax.step(x, Ah[i, :n], where="mid", color=PALETTE["hicra"], ls="--", label=f"HICRA: Â (α = {alpha})")
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_ylabel("advantage")
        ax.set_title(f"completion {i} · reward {batch.rewards[i]:.0f}", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("completion token (shaded: planning token)")
    axes[0, 0].legend(loc="upper right", fontsize=8, ncols=2)
    fig.tight_layout()
    return fig


def planning_weight_share(adv: torch.Tensor, planning: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of the policy-gradient weight ``Σ|advantage|`` that lands on planning tokens."""
    w = adv.abs() * mask
    total = float(w.sum())
    return float((w * planning).sum()) / total if total > 0 else 0.0


def weight_shares(batch: Batch, alpha: float = ALPHA) -> dict:
    """Planning tokens' share of the tokens, and of the gradient weight under GRPO and HICRA."""
    plan, mask = batch.padded()
    A, Ah = batch.advantages(alpha)
    return {
        "planning share of tokens": float(plan.sum()) / max(1, int(mask.sum())),
        "planning share of |A| (GRPO)": planning_weight_share(A, plan, mask),
        "planning share of |Â| (HICRA)": planning_weight_share(Ah, plan, mask),
    }


def one_update(model, batch: Batch, adv: torch.Tensor, lr: float = 1e-2) -> torch.Tensor:
    """(B, T) change of each token's log-probability after one SGD step on the token-level policy-gradient loss
    ``-Σ adv·log π / Σ mask`` (on-policy, so the ratio is 1), from a copy of ``model`` (the model is untouched)."""
    _, mask = batch.padded()
    m = copy.deepcopy(model).train()
    with torch.no_grad():
        before = token_logps(m, batch.prompt_ids, batch.ids)
    loss = -(adv * token_logps(m, batch.prompt_ids, batch.ids) * mask).sum() / mask.sum().clamp(min=1)
    loss.backward()
    torch.optim.SGD(m.parameters(), lr=lr).step()
    with torch.no_grad():
        after = token_logps(m, batch.prompt_ids, batch.ids)
    return (after - before) * mask


def update_table(model, batch: Batch, lr: float = 1e-2, alpha: float = ALPHA):
    """One update of GRPO and of HICRA from the same state: mean change of log π on planning vs execution tokens,
    in completions that were rewarded (A > 0) and that failed (A < 0). A DataFrame."""

    plan, mask = batch.padded()
    A, Ah = batch.advantages(alpha)
    rows = []
    for method, adv in (("GRPO", A), ("HICRA", Ah)):
        delta = one_update(model, batch, adv, lr)
        for sign, name in ((1, "rewarded (A > 0)"), (-1, "failed (A < 0)")):
            rowsel = (A[:, :1] * sign > 0) & mask
            for tokens, sel in (("planning", rowsel & plan), ("execution", rowsel & ~plan)):
                n = int(sel.sum())
                rows.append(
                    {
                        "method": method,
                        "completions": name,
                        "tokens": tokens,
                        "n tokens": n,
                        "mean Δ log π": float(delta[sel].mean()) if n else float("nan"),
                    }
                )
    return pd.DataFrame(rows).pivot_table(index=["completions", "tokens"], columns="method", values="mean Δ log π")
