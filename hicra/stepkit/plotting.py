"""Figure helpers: one style, one saver (PNG + PDF into figures/), span highlighting.

Every paper-figure notebook ends with ``save_figure(fig, "fig3_dynamics_sandbox")``
so the files are named after the figure they reproduce and look alike.
``highlight_html`` renders a completion with its planning spans coloured, the
way the paper's Fig 2/9 show passages.

    from hicra.stepkit.plotting import setup_style, save_figure
    setup_style(); fig, ax = plt.subplots(); save_figure(fig, "demo", "figures")
"""

from __future__ import annotations

import html
from collections import ChainMap
from pathlib import Path

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "inline")) else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hicra.method.methods import METHOD_COLOURS  # noqa: E402
from hicra.store.paths import resolve  # noqa: E402

# the one colour table: token kinds, then each method's colour from its registration (read live, so a method
# registered after this import has its colour too)
PALETTE = ChainMap(
    {"planning": "#d95f02", "execution": "#1b9e77", "fork": "#7570b3", "shared": "#e7298a", "base": "#7f7f7f"},
    METHOD_COLOURS,
)
HIGHLIGHT = {"fork": "#9ecae1", "planning": "#fdae6b", "both": "#d62728"}  # Fig 9: fork / planning shades
KIND_COLOURS = {"deduction": "#fdb863", "branching": "#b2abd2", "backtracing": "#f4a582", None: "#ffe08a"}


def setup_style() -> None:
    """Fixed, legible defaults for every figure."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=1.05)
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 160,
            "savefig.bbox": "tight",
            "axes.titleweight": "bold",
            "legend.frameon": False,
        }
    )


def save_figure(fig, name: str, figures_dir="figures") -> list[Path]:
    """Write ``<figures_dir>/<name>.png`` and ``.pdf``; returns both paths."""
    d = resolve(figures_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = [d / f"{name}.png", d / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p)
    return paths


def add_note(fig, text: str) -> None:
    """A red line under everything already drawn (axes, tick labels, a legend placed below the panels): the
    rehearsal's and the demo's figures say what they are on the figure itself, clear of any legend."""
    fig.canvas.draw()
    bottom = fig.get_tightbbox(fig.canvas.get_renderer()).y0 / fig.get_figheight()  # inches -> figure fraction
    fig.text(0.5, min(bottom, 0.0) - 0.02, text, ha="center", va="top", fontsize=11, color="firebrick", weight="bold")


def highlight_html(text: str, spans, title: str | None = None) -> str:
    """HTML of ``text`` with ``(start, end, gram[, kind])`` spans shaded by kind."""
    marks = np.zeros(len(text), dtype=object)
    marks[:] = None
    on = np.zeros(len(text), dtype=bool)
    for s in spans:
        on[s[0] : s[1]] = True
        marks[s[0] : s[1]] = s[3] if len(s) > 3 else None
    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and on[j] == on[i] and marks[j] == marks[i]:
            j += 1
        chunk = html.escape(text[i:j]).replace("\n", "<br>")
        out.append(
            f'<span style="background:{KIND_COLOURS.get(marks[i], "#ffe08a")}">{chunk}</span>' if on[i] else chunk
        )
        i = j
    head = f"<b>{html.escape(title)}</b><br>" if title else ""
    # mathjax_ignore (MathJax 3+, JupyterLab 4) and tex2jax_ignore (MathJax 2): else text between two "$" (prices
    # in real text) is typeset as LaTeX
    style = "font-family:monospace;line-height:1.6;margin:6px 0"
    return f'<div class="tex2jax_ignore mathjax_ignore" style="{style}">{head}{"".join(out)}</div>'


def save_step_figure(fig, cfg, name: str) -> str:
    """Save a step's figure as ``<figures_dir>/<name>_<tag>.{png,pdf}``; returns the PNG's path."""
    if getattr(cfg, "figure_note", ""):  # e.g. the rehearsal's figures say what they are, on the figure itself
        add_note(fig, cfg.figure_note)
    paths = save_figure(fig, f"{name}_{cfg.tag}", cfg.figures_dir)
    plt.close(fig)
    return str(paths[0])
