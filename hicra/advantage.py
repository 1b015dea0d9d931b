"""Advantages: GRPO's group-normalised advantage and HICRA's planning boost.

Paper §3. GRPO gives every token of completion i the same advantage
``A_i = (r_i - mean(r_group)) / (std(r_group) + eps)``. HICRA re-weights it per
token::

    Â_t = A + alpha * |A|   if token t is a planning token
    Â_t = A                 otherwise                         (alpha = 0.2)

so a correct plan is reinforced by (1 + alpha) and a failed one is penalised
only by (1 - alpha): credit concentrates on strategy tokens. Pure functions on
tensors, no I/O, no TRL: the trainer and the notebooks call them directly.

    from hicra.advantage import grpo_advantages, hicra_advantages
    A = grpo_advantages(rewards, group_size=8)          # (B,)
    A_hat = hicra_advantages(A, planning_mask, 0.2)     # (B, T)
"""
from __future__ import annotations

import torch


def grpo_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Group-normalised advantages for ``B = n_groups * group_size`` rewards laid out group by group.

    Args:
        rewards: (B,) scalar reward per completion.
        group_size: completions per prompt (GRPO's G).
        scale: divide by the group's std (GRPO); False gives Dr. GRPO's mean-centring only.
    """
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards must be (B,) with B a multiple of group_size={group_size}; got {tuple(rewards.shape)}"
        )
    g = rewards.view(-1, group_size)
    adv = g - g.mean(dim=1, keepdim=True)
    if scale:
        adv = adv / (g.std(dim=1, keepdim=True) + eps)
    return adv.reshape(-1)


def hicra_advantages(advantages: torch.Tensor, planning_mask: torch.Tensor, alpha: float = 0.2,
                     allow_sign_flip: bool = False) -> torch.Tensor:
    """(B, T) HICRA advantages: ``A + alpha*|A|`` on planning tokens, ``A`` elsewhere.

    Args:
        advantages: (B,) sequence-level or (B, T) token-level advantages.
        planning_mask: (B, T) bool, True on planning tokens.
        alpha: amplification in [0, 1); the paper uses 0.2. At alpha >= 1 a negative advantage on a
            planning token turns non-negative (a failed plan would be rewarded): refused unless
            ``allow_sign_flip``.
    """
    if not (alpha >= 0 and (alpha < 1 or allow_sign_flip)):
        raise ValueError(f"alpha must be in [0, 1) (alpha >= 1 flips the sign of negative planning advantages; "
                         f"pass allow_sign_flip=True to permit it); got {alpha}")
    planning_mask = torch.as_tensor(planning_mask).bool()
    if planning_mask.ndim != 2:
        raise ValueError(f"planning_mask must be (B, T); got {tuple(planning_mask.shape)}")
    adv = torch.as_tensor(advantages)
    if adv.ndim == 1:
        adv = adv[:, None].expand(-1, planning_mask.shape[1])
    if not torch.isfinite(adv).all():
        raise ValueError("advantages contain NaN or inf (a reward function returned a non-finite value?)")
    if adv.shape != planning_mask.shape:
        raise ValueError(f"advantages {tuple(adv.shape)} do not match planning_mask {tuple(planning_mask.shape)}")
    planning_mask = planning_mask.to(adv.device)
    return adv + alpha * adv.abs() * planning_mask.to(adv.dtype)
