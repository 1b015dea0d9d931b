"""Advantages: GRPO's group-normalised advantage and HICRA's planning boost.

Paper §3. GRPO gives every token of completion i the same advantage
``A_i = (r_i - mean(r_group)) / (std(r_group) + eps)``. HICRA re-weights it per
token::

    Â_t = A + alpha * |A|   if token t is a planning token
    Â_t = A                 otherwise                         (alpha = 0.2, DEFAULT_ALPHA)

so a correct plan is reinforced by (1 + alpha) and a failed one is penalised
only by (1 - alpha): credit concentrates on strategy tokens. Pure functions on
tensors, no I/O, no TRL: the trainer and the notebooks call them directly.

The variants of the study (``token_advantages`` dispatches on the method name), and what each does
to a *negative* advantage (a failed response):

* ``hicra``: the paper's additive rule above; failed planning tokens get (1 - alpha) of the blame.
* ``hicra_gated``: the same rule on planning tokens that are also among the batch's top-20 % entropy
  tokens (``gate_share``); other planning tokens keep ``A``. Failed gated tokens: (1 - alpha) of the blame.
* ``hicra_verl``: the multiplicative rule of the VeRL-style implementation (TRL PR #4997, as issue #12
  describes it): ``A * (1 + alpha)`` on the top-30 % entropy tokens, no strategic grams, and only in
  responses that are correct (``A > 0``) and longer than their group's mean (``verl_filter``). It
  *raises* the blame on the tokens it selects, (1 + alpha) times; with the filter on (the default) it
  selects no failed response, so negative advantages stay GRPO's.
* ``hicra_adaptive``: the additive rule with alpha from ``hicra.method.alpha.AdaptiveAlpha`` each step.
* ``hicra_pr4997``: TRL PR #4997's *with-grams* rule (issue #26): ``A * (1 + alpha * sign A)``, which is the
  additive rule ``A + alpha * |A|``, on the union of the planning tokens and the top-30 % entropy tokens of
  correct responses longer than their group's mean. Failed planning tokens get (1 - alpha) of the blame, as
  under ``hicra``; the entropy half adds tokens of long correct responses only. Labelled by its source, not ours.

    from hicra.method.advantage import grpo_advantages, hicra_advantages
    A = grpo_advantages(rewards, group_size=8)          # (B,)
    A_hat = hicra_advantages(A, planning_mask, 0.2)     # (B, T)
    A_hat = token_advantages("hicra_gated", A, planning_mask, completion_mask, alpha=0.2, entropy=H, group_size=8)
"""

from __future__ import annotations

import torch

from hicra.method.methods import DEFAULT_ALPHA, REGISTRY, Method, attach_rule, declare  # noqa: F401  (re-exported: the registry's home)


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


def hicra_advantages(
    advantages: torch.Tensor, planning_mask: torch.Tensor, alpha: float = DEFAULT_ALPHA, allow_sign_flip: bool = False
) -> torch.Tensor:
    """(B, T) HICRA advantages: ``A + alpha*|A|`` on planning tokens, ``A`` elsewhere.

    Args:
        advantages: (B,) sequence-level or (B, T) token-level advantages.
        planning_mask: (B, T) bool, True on planning tokens.
        alpha: amplification in [0, 1); the paper uses 0.2. At alpha >= 1 a negative advantage on a
            planning token turns non-negative (a failed plan would be rewarded): refused unless
            ``allow_sign_flip``.
    """
    if not (alpha >= 0 and (alpha < 1 or allow_sign_flip)):
        raise ValueError(
            f"alpha must be in [0, 1) (alpha >= 1 flips the sign of negative planning advantages; "
            f"pass allow_sign_flip=True to permit it); got {alpha}"
        )
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


def high_entropy_mask(entropy: torch.Tensor, completion_mask: torch.Tensor, top_share: float) -> torch.Tensor:
    """(B, T) bool: completion tokens whose entropy is in the top ``top_share`` of this batch's completion
    tokens (at or above the ``1 - top_share`` quantile, TRL's fork-token rule on the local batch)."""
    if not 0 < top_share <= 1:
        raise ValueError(f"top_share must be in (0, 1]; got {top_share}")
    m = torch.as_tensor(completion_mask).bool()
    if entropy.shape != m.shape:
        raise ValueError(f"entropy {tuple(entropy.shape)} does not match completion_mask {tuple(m.shape)}")
    vals = entropy[m].float()
    if vals.numel() == 0:
        return torch.zeros_like(m)
    return (entropy >= torch.quantile(vals, 1 - top_share)) & m


def correct_and_longer(advantages: torch.Tensor, completion_mask: torch.Tensor, group_size: int) -> torch.Tensor:
    """(B,) bool: responses with a positive advantage (correct, under a 0/1 reward) that are longer than
    their group's mean length; rows are laid out group by group, as GRPO lays them out."""
    adv = advantages if advantages.dim() == 1 else advantages[:, 0]
    lengths = torch.as_tensor(completion_mask).sum(1).float()
    if lengths.numel() % group_size:
        raise ValueError(f"{lengths.numel()} rows do not split into groups of {group_size}")
    mean = lengths.view(-1, group_size).mean(1, keepdim=True).expand(-1, group_size).reshape(-1)
    return (adv > 0) & (lengths > mean)


def verl_hicra_advantages(
    advantages: torch.Tensor, selected: torch.Tensor, alpha: float = DEFAULT_ALPHA
) -> torch.Tensor:
    """(B, T) multiplicative rule: ``A * (1 + alpha)`` on selected tokens, ``A`` elsewhere (both signs grow)."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0; got {alpha}")
    selected = torch.as_tensor(selected).bool()
    adv = torch.as_tensor(advantages)
    if adv.ndim == 1:
        adv = adv[:, None].expand(-1, selected.shape[1])
    if adv.shape != selected.shape:
        raise ValueError(f"advantages {tuple(adv.shape)} do not match the token selection {tuple(selected.shape)}")
    return adv * (1 + alpha * selected.to(adv.dtype))


# --------------------------------------------------------------------------
# the method registry: one registration per method declares what it needs and how it re-weights; the trainer's
# method list, the config checks, the entropy pass, the study's arms and the figures' colours all read it


def register(name: str, colour: str | None = None, needs_sg: bool = False, gate_share: float | None = None, **declared):
    """Decorator registering a token rule ``fn(A, plan, completion_mask, gate, ctx) -> (advantages, selected)``
    (``gate``: the high-entropy mask when ``gate_share`` is set, else None; ``ctx``: alpha, group_size,
    verl_filter, allow_sign_flip, the method's knobs by name and its per-step state's values) as method ``name``:
    a new method is declared with its ``colour``, needs and the rest of ``hicra.method.methods.declare``'s keywords
    (``knobs``, ``state``, ``loss``, ``study_seeds``, ``fig5``) in this one call; a method declared in
    ``hicra.method.methods`` (no ``colour`` given) gets its rule."""

    def deco(fn):
        if colour is not None:
            declare(name, colour, needs_sg, gate_share, rule=fn, **declared)
        else:
            attach_rule(name, fn)
        return fn

    return deco


def register_plain(name: str, colour: str) -> None:
    """A method whose advantages are GRPO's (its difference lives in the loss: an entropy bonus, a token mask)."""
    declare(name, colour)


def token_advantages(
    method: str,
    advantages: torch.Tensor,
    planning_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    alpha: float,
    entropy: torch.Tensor | None = None,
    group_size: int = 8,
    gate_share: float | None = None,
    verl_filter: bool = True,
    allow_sign_flip: bool = False,
    knobs: dict | None = None,
):
    """(B, T) advantages of a registered method with a token rule, and the (B, T) bool mask of the tokens it
    re-weighted. ``entropy``: per-token entropies of the completions, needed by the gated methods;
    ``allow_sign_flip``: the recipe's permission for alpha >= 1 (``hicra_advantages``); ``knobs``: the method's
    other knob values and per-step state (``ctx[name]``; unset knobs get their declared defaults)."""
    m = REGISTRY.get(method)
    if m is None or m.rule is None:
        raise ValueError(
            f"token_advantages: unknown method {method!r}; one of {', '.join(n for n, x in REGISTRY.items() if x.rule)}"
        )
    gate = None
    if m.gate_share is not None:
        if entropy is None:
            raise ValueError(f"method {method!r} gates on token entropy; pass entropy=")
        gate = high_entropy_mask(entropy, completion_mask, gate_share or m.gate_share)
    ctx = {k.name: k.default for k in m.knobs}
    ctx.update(knobs or {})
    ctx.update(alpha=alpha, group_size=group_size, verl_filter=verl_filter, allow_sign_flip=allow_sign_flip)
    return m.rule(advantages, torch.as_tensor(planning_mask).bool(), completion_mask, gate, ctx)


@register("hicra")
def _hicra(A, plan, cm, gate, ctx):
    return hicra_advantages(A, plan, ctx["alpha"], ctx["allow_sign_flip"]), plan & torch.as_tensor(cm).bool()


@register("hicra_gated")
def _hicra_gated(A, plan, cm, gate, ctx):
    return hicra_advantages(A, plan & gate, ctx["alpha"], ctx["allow_sign_flip"]), plan & gate


@register("hicra_verl")
def _hicra_verl(A, plan, cm, gate, ctx):
    if ctx["verl_filter"]:
        gate = gate & correct_and_longer(A, cm, ctx["group_size"])[:, None]
    return verl_hicra_advantages(A, gate, ctx["alpha"]), gate


@register("hicra_adaptive")
def _hicra_adaptive(A, plan, cm, gate, ctx):  # the additive rule; alpha comes from hicra.method.alpha each step
    return _hicra(A, plan, cm, gate, ctx)


@register("hicra_pr4997")
def _hicra_pr4997(A, plan, cm, gate, ctx):  # planning tokens, or high-entropy tokens of long correct responses
    sel = plan | (gate & correct_and_longer(A, cm, ctx["group_size"])[:, None].to(gate.device))
    return hicra_advantages(A, sel, ctx["alpha"], ctx["allow_sign_flip"]), sel & torch.as_tensor(cm).bool()
