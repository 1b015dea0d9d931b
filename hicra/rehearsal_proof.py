"""The rehearsal's proof in numbers: HICRA's advantage ran on real planning tokens with a learning signal (issue #37).

Why: a rehearsal whose rewards are all 0 has every advantage 0, so its GRPO and HICRA runs are the same run and
HICRA's ``Â = A + α|A|`` (paper §3) never acts. Every rehearsal run therefore reports, per training run and step,
from the files the runs wrote (nothing is re-run):

* the share of groups with mixed rewards (``rollouts/step_*.parquet``: consecutive ``num_generations`` rows);
* from what each process's loss received (``loss_inputs/``, written with ``save_loss_inputs``): completion tokens,
  planning tokens, tokens whose advantage is not 0 (per process), and tokens where the advantage used differs from
  the group advantage A (HICRA's Â ≠ A; 0 for GRPO by definition);
* after the last step, the parameter-space distance (L2 over all weights) between the GRPO and HICRA models
  (``final/``), and for a LoRA arm the norm of its weight update ``(α/r)·B·A`` (0 unless a signal reached it:
  ``B`` starts at 0).

    python -m hicra.rehearsal_proof --run_dir runs/paper-rehearsal     # -> runs/paper-rehearsal/proof.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from hicra.store.io import write_json
from hicra.store.paths import resolve

if TYPE_CHECKING:  # torch loads where a tensor is read, not for --help
    import torch

# --------------------------------------------------------------------------
# per step: rewards (rollouts) and what the loss received (loss_inputs)


def mixed_groups(run: Path, group_size: int) -> dict[int, tuple[int, int]]:
    """{step: (groups with mixed rewards, groups)} from the run's rollouts (TRL keeps a group's rows together)."""

    out = {}
    for f in sorted((run / "rollouts").glob("step_*.parquet")):
        df = pd.read_parquet(f)
        step = int(df["step"].iloc[0])
        mixed = n = 0
        for i in range(0, len(df) - len(df) % group_size, group_size):
            g = df.iloc[i : i + group_size]
            if len({json.dumps(list(p), default=str) for p in g["prompt"]}) != 1:
                raise ValueError(f"{f}: rows {i}..{i + group_size - 1} are not one prompt's group")
            n += 1
            mixed += g["reward"].nunique() > 1
        out[step] = (mixed, n)
    return out


def loss_input_counts(batch: dict) -> dict:
    """Token counts of one micro-batch as the loss received it."""
    cm = batch["completion_mask"].bool()
    adv = batch["advantages"]
    adv = adv.unsqueeze(1).expand_as(cm) if adv.dim() == 1 else adv
    plan = (batch["planning_mask"].bool() if "planning_mask" in batch else cm.new_zeros(cm.shape)) & cm
    group = batch["group_advantages"].unsqueeze(1).expand_as(cm)
    return {
        "tokens": int(cm.sum()),
        "planning_tokens": int(plan.sum()),
        "nonzero_advantage_tokens": int(((adv != 0) & cm).sum()),
        "hicra_changed_tokens": int(((adv != group) & cm).sum()),
    }


def step_table(run: Path) -> list[dict]:
    """One row per step: mixed-reward groups and the loss inputs' token counts, summed over processes."""
    import torch  # noqa: PLC0415  torch: only reading the loss inputs needs it, not --help

    params = json.loads((run / "params.json").read_text())
    groups = mixed_groups(run, int(params["num_generations"]))
    rows: dict[int, dict] = {}
    for f in sorted((run / "loss_inputs").glob("step_*.pt")):
        step, rank = int(f.name[5:11]), int(f.name.split("_rank")[1].split("_")[0])
        r = rows.setdefault(step, {"step": step, "nonzero_advantage_tokens_by_rank": {}})
        for k, v in loss_input_counts(torch.load(f, weights_only=True)).items():
            r[k] = r.get(k, 0) + v
            if k == "nonzero_advantage_tokens":
                by = r["nonzero_advantage_tokens_by_rank"]
                by[str(rank)] = by.get(str(rank), 0) + v
    for step, (mixed, n) in groups.items():
        rows.setdefault(step, {"step": step}).update(mixed_groups=mixed, groups=n)
    return [rows[s] for s in sorted(rows)]


# --------------------------------------------------------------------------
# after the last step: how far apart the trained weights are


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file  # noqa: PLC0415  torch: only reading weights needs it

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no .safetensors weights")
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def parameter_distance(a: Path, b: Path) -> float:
    """L2 distance between two models' weights (the tensors both hold)."""
    wa, wb = _weights(a), _weights(b)
    shared = sorted(set(wa) & set(wb))
    if not shared:
        raise ValueError(f"{a} and {b} share no weight names")
    return math.sqrt(sum(float(((wa[k].double() - wb[k].double()) ** 2).sum()) for k in shared))


def lora_update_norm(adapter: Path) -> float:
    """L2 norm of a LoRA adapter's weight update, ``sqrt(sum ||(lora_alpha / r) · B @ A||²)`` over its modules."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    w, scale = _weights(adapter), cfg["lora_alpha"] / cfg["r"]
    total = 0.0
    for k, a in w.items():
        if ".lora_A." in k:
            b = w[k.replace(".lora_A.", ".lora_B.")]
            total += float(((scale * b.double() @ a.double()) ** 2).sum())
    return math.sqrt(total)


# --------------------------------------------------------------------------
# the whole rehearsal


def proof(run_dir: Path, pairs: dict | None = None) -> dict:
    """Per training run (``train-*``), its step table and totals; per pair ``{name: [grpo, hicra]}`` of run
    folders, their parameter distance; per LoRA run, its update norm. Written to ``<run_dir>/proof.json``."""
    runs = sorted(p for p in run_dir.glob("train-*") if (p / "params.json").exists())
    out: dict = {"runs": {}, "distances": {}}
    for r in runs:
        steps = step_table(r)
        total = lambda k, steps=steps: sum(s.get(k, 0) for s in steps)  # noqa: E731
        params = json.loads((r / "params.json").read_text())
        out["runs"][r.name] = {
            "method": params.get("method"),
            "lora_r": params.get("lora_r", 0),
            "steps": steps,
            "mixed_group_share": total("mixed_groups") / total("groups") if total("groups") else None,
            "mixed_group_share_step1": (
                steps[0]["mixed_groups"] / steps[0]["groups"] if steps and steps[0].get("groups") else None
            ),
            "planning_tokens": total("planning_tokens"),
            "hicra_changed_tokens": total("hicra_changed_tokens"),
            "nonzero_advantage_tokens": total("nonzero_advantage_tokens"),
        }
        if params.get("lora_r") and (r / "final" / "adapter_config.json").exists():
            out["runs"][r.name]["lora_update_norm"] = lora_update_norm(r / "final")
    for name, (a, b) in (pairs or {}).items():
        out["distances"][name] = parameter_distance(run_dir / a / "final", run_dir / b / "final")
    write_json(run_dir / "proof.json", out)
    return out


def proof_markdown(p: dict) -> list[str]:
    """The results page's section (``hicra.orchestration.report``)."""
    lines = [
        "",
        "## Learning signal (the rehearsal's proof: non-zero advantages, HICRA's Â ≠ A, distinct checkpoints)",
        "| run | mixed-reward groups, step 1 | all steps | planning tokens per step | tokens with A ≠ 0 "
        "| tokens where Â ≠ A | LoRA update norm |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in p["runs"].items():
        s = r["steps"]
        lora = f"{r['lora_update_norm']:.3g}" if "lora_update_norm" in r else ""
        lines.append(
            f"| {name} | {_share(r['mixed_group_share_step1'])} | {_share(r['mixed_group_share'])} "
            f"| {', '.join(str(x.get('planning_tokens', '–')) for x in s)} | {r['nonzero_advantage_tokens']} "
            f"| {r['hicra_changed_tokens']} | {lora} |"
        )
    for name, d in p["distances"].items():
        lines.append(f"\nParameter-space distance after the last step, {name}: {d:.4g} (L2 over all weights)")
    return lines


def _share(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hicra.rehearsal_proof", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run_dir", required=True, help="the rehearsal's run folder (holds train-*/)")
    ap.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="GRPO_RUN,HICRA_RUN",
        help="two run folders under run_dir whose final weights are compared (repeatable)",
    )
    a = ap.parse_args(argv)
    run_dir = resolve(a.run_dir)
    if not run_dir.is_dir():
        ap.error(f"--run_dir {a.run_dir}: no such folder")
    pairs = {}
    for p in a.pair:
        parts = p.split(",")
        if len(parts) != 2:
            ap.error(f"--pair {p!r}: expected two run folders separated by a comma")
        pairs[f"{parts[0]} vs {parts[1]}"] = parts
    res = proof(run_dir, pairs)
    print(json.dumps({k: r["mixed_group_share_step1"] for k, r in res["runs"].items()} | res["distances"]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
