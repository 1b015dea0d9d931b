"""DAPO dynamic sampling, the arithmetic: which groups carry signal, how batches merge, which rows to keep.

Why: a group whose G rewards are all equal has advantage 0 on every token; it adds nothing to the gradient but
still dilutes DAPO's token-level loss. DAPO drops such groups and refills the batch from fresh prompts. The
trainer (``HICRATrainer._dynamic_sample``) does the TRL part (generating and scoring the refills, keeping every
process in step); these pure functions do the rest, so they are tested on hand-made tensors.

    live = live_groups(advantages, G)                     # (n_groups,) bool
    merged = concat_batches([out, refill], pad_id)        # one batch, prompts left- and completions right-padded
    rows, kept_live = select_rows(merged["advantages"], G, n_groups)
"""

from __future__ import annotations

import torch


def live_groups(advantages: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per group (rows laid out group by group): does any completion carry a non-zero advantage?"""
    adv = advantages if advantages.dim() == 1 else advantages.abs().amax(dim=1)
    if adv.numel() % group_size:
        raise ValueError(f"{adv.numel()} rows do not split into groups of {group_size}")
    return (adv.view(-1, group_size).abs() > 1e-6).any(dim=1).cpu()


def select_rows(advantages: torch.Tensor, group_size: int, n_groups: int) -> tuple[torch.Tensor, int]:
    """Rows of the ``n_groups`` groups to keep: live groups first, in batch order, then dropped ones to fill a
    fixed batch size when too few are live. Returns (row indices, live groups kept)."""
    live = live_groups(advantages, group_size)
    if len(live) < n_groups:
        raise ValueError(f"need {n_groups} groups, the merged batch has {len(live)}")
    order = torch.cat([torch.nonzero(live).flatten(), torch.nonzero(~live).flatten()])[:n_groups]
    rows = (order[:, None] * group_size + torch.arange(group_size)).flatten()
    return rows.to(advantages.device), int(live[order].sum())


def concat_batches(batches: list[dict], pad_id: int) -> dict:
    """Row-concatenate TRL generation outputs; prompts are left-padded, completions right-padded (``*_ids``
    with ``pad_id``, masks and the rest with 0); non-tensor and 0-d values come from the first batch."""
    if len(batches) == 1:
        return batches[0]
    res = {}
    for k, v in batches[0].items():
        vals = [b[k] for b in batches]
        if not isinstance(v, torch.Tensor) or v.dim() == 0:
            res[k] = v
        elif v.dim() == 1:
            res[k] = torch.cat(vals)
        else:
            width = max(x.shape[1] for x in vals)
            fill = pad_id if k.endswith("_ids") else 0
            left = k.startswith("prompt")
            res[k] = torch.cat(
                [
                    torch.nn.functional.pad(
                        x.to(torch.int64) if x.dtype == torch.bool else x,
                        (width - x.shape[1], 0) if left else (0, width - x.shape[1]),
                        value=fill,
                    ).to(x.dtype)
                    for x in vals
                ]
            )
    return res
