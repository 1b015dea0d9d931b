"""GRPO / HICRA advantages: hand cases and hypothesis properties (paper §3)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hicra.method.advantage import grpo_advantages, hicra_advantages

# subnormal floats excluded: A * (1 - alpha) can round a subnormal A to 0, which is underflow, not a sign flip
adv_1d = st.lists(st.floats(-10, 10, allow_nan=False, width=32, allow_subnormal=False), min_size=1, max_size=8)


def test_grpo_group_normalisation():
    a = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0]), group_size=3)
    assert torch.allclose(a[:3].mean(), torch.tensor(0.0), atol=1e-6)
    assert a[0] > 0 > a[1] and a[1] == a[2]
    assert torch.allclose(grpo_advantages(torch.ones(4), 2), torch.zeros(4))


def test_hicra_hand_case():
    A = torch.tensor([1.0, -1.0])
    m = torch.tensor([[True, False], [True, False]])
    assert torch.allclose(hicra_advantages(A, m, 0.2), torch.tensor([[1.2, 1.0], [-0.8, -1.0]]))


@settings(max_examples=200, deadline=None)
@given(adv_1d, st.integers(1, 6), st.data())
def test_properties(a, T, data):
    A = torch.tensor(a)
    mask = torch.tensor(
        data.draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=len(a), max_size=len(a)))
    )
    alpha = data.draw(st.floats(0, 0.99))
    out = hicra_advantages(A, mask, alpha)
    base = A[:, None].expand(-1, T)
    assert torch.equal(hicra_advantages(A, mask, 0.0), base)  # alpha = 0 -> GRPO
    assert torch.equal(hicra_advantages(A, torch.zeros_like(mask), alpha), base)  # empty mask -> GRPO
    assert (torch.sign(out) == torch.sign(base)).all()  # no sign flip for alpha < 1
    pos, neg = mask & (base > 0), mask & (base < 0)
    assert torch.allclose(out[pos], base[pos] * (1 + alpha))
    assert torch.allclose(out[neg], base[neg] * (1 - alpha))
    assert torch.equal(out[~mask], base[~mask])


@given(st.integers(1, 4), st.integers(1, 5))
def test_token_level_input(B, T):
    A = torch.randn(B, T)
    m = torch.ones(B, T, dtype=torch.bool)
    assert torch.allclose(hicra_advantages(A, m, 0.5), A + 0.5 * A.abs())


def test_shape_errors():
    import pytest

    with pytest.raises(ValueError, match="do not match"):
        hicra_advantages(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiple of group_size"):
        grpo_advantages(torch.zeros(5), 2)


# --- the study's variants: exact values on hand-made batches -------------------------------------------------
from hicra.method.advantage import correct_and_longer, high_entropy_mask, token_advantages  # noqa: E402


def _batch():
    """Two groups of 2: group 0 = (correct, long), (failed, short); group 1 = (failed, long), (correct, short)."""
    A = torch.tensor([1.0, -1.0, -0.5, 0.5])
    cm = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])
    plan = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]]).bool()
    H = torch.tensor([[0.9, 0.1, 0.8, 0.2], [0.7, 0.3, 9.0, 9.0], [0.6, 0.85, 0.05, 9.0], [0.4, 9.0, 9.0, 9.0]])
    return A, cm, plan, H  # 9.0 sits on padding: never counted, never selected


def test_high_entropy_mask_counts_completion_tokens_only():
    A, cm, plan, H = _batch()
    # 10 completion tokens; the top 20 % are the two largest real entropies, 0.9 and 0.85
    want = torch.zeros(4, 4, dtype=torch.bool)
    want[0, 0] = want[2, 1] = True
    assert torch.equal(high_entropy_mask(H, cm, 0.2), want)
    assert not high_entropy_mask(H, torch.zeros_like(cm), 0.2).any()
    with pytest.raises(ValueError, match="top_share"):
        high_entropy_mask(H, cm, 0.0)


def test_correct_and_longer():
    A, cm, _, _ = _batch()  # lengths 4, 2 | 3, 1: group means 3 and 2
    assert correct_and_longer(A, cm, 2).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="groups of 3"):
        correct_and_longer(A, cm, 3)


def test_hicra_gated_boosts_planning_and_high_entropy_only():
    A, cm, plan, H = _batch()
    out, boosted = token_advantages("hicra_gated", A, plan, cm, alpha=0.2, entropy=H, group_size=2)
    want = A[:, None].expand(-1, 4).clone()
    want[0, 0] = 1.2  # planning, entropy 0.9 (top 20 %), A > 0: x(1 + alpha)
    want[2, 1] = -0.5 * 0.8  # planning, entropy 0.85, A < 0: x(1 - alpha), less blame
    assert torch.allclose(out, want) and boosted.sum() == 2
    # planning tokens outside the gate (row 0 col 1, row 1 col 0, row 2 col 2, row 3 col 0) keep A
    assert out[1, 0] == -1.0 and out[3, 0] == 0.5


def test_hicra_verl_is_multiplicative_and_filtered():
    A, cm, plan, H = _batch()
    # top 30 % of 10 completion tokens = 3 tokens: 0.9, 0.85, 0.8
    out, sel = token_advantages("hicra_verl", A, plan, cm, alpha=0.2, entropy=H, group_size=2)
    want = A[:, None].expand(-1, 4).clone()
    want[0, 0] = want[0, 2] = 1.2  # row 0 is correct and longer than its group: both gated tokens x 1.2
    assert torch.allclose(out, want) and sel.sum() == 2  # row 2's 0.85 token: failed, filtered out
    out, sel = token_advantages("hicra_verl", A, plan, cm, alpha=0.2, entropy=H, group_size=2, verl_filter=False)
    want[2, 1] = -0.5 * 1.2  # unfiltered: a failed response's gated token gets MORE blame
    assert torch.allclose(out, want) and sel.sum() == 3
    # no strategic grams involved: the planning mask does not change the result
    assert torch.equal(
        token_advantages("hicra_verl", A, ~plan, cm, 0.2, entropy=H, group_size=2)[0],
        token_advantages("hicra_verl", A, plan, cm, 0.2, entropy=H, group_size=2)[0],
    )


def test_hicra_pr4997_is_the_additive_rule_on_planning_or_long_correct_high_entropy_tokens():
    """TRL PR #4997's with-grams rule: A * (1 + alpha * sign A) = A + alpha|A| on planning tokens united with the
    top-30 % entropy tokens of correct responses longer than their group's mean (hand-computed on _batch)."""
    A, cm, plan, H = _batch()
    out, sel = token_advantages("hicra_pr4997", A, plan, cm, alpha=0.2, entropy=H, group_size=2)
    want = A[:, None].expand(-1, 4).clone()
    want[0, :3] = 1.2  # row 0: planning c0, c1; c2 is a top-30 % entropy token of a long correct row
    want[1, 0] = -0.8  # planning token of a failed response: (1 - alpha) of the blame
    want[2, 1] = want[2, 2] = -0.4  # row 2's 0.85 token is planning anyway; a failed row adds no entropy tokens
    want[3, 0] = 0.6
    assert torch.allclose(out, want) and int(sel.sum()) == 7
    assert torch.allclose(out, A[:, None] * (1 + 0.2 * torch.sign(A)[:, None] * sel))  # the PR's own form


def test_token_advantages_plain_hicra_and_errors():
    A, cm, plan, H = _batch()
    for m in ("hicra", "hicra_adaptive"):
        out, boosted = token_advantages(m, A, plan, cm, alpha=0.2)
        assert torch.equal(out, hicra_advantages(A, plan, 0.2)) and torch.equal(boosted, plan & cm.bool())
    with pytest.raises(ValueError, match="entropy"):
        token_advantages("hicra_gated", A, plan, cm, alpha=0.2)
    with pytest.raises(ValueError, match="unknown method"):
        token_advantages("grpo", A, plan, cm, alpha=0.2)


def test_adaptive_alpha_rule():
    from hicra.method.alpha import AdaptiveAlpha

    ctl = AdaptiveAlpha(alpha_max=0.4, alpha_window=2, alpha_plateau=0.01, alpha_guard=0.5)
    assert ctl.alpha == 0  # no history: start as GRPO
    for ppl in (1.30, 1.28, 1.20, 1.18):  # window means 1.29 -> 1.19: a 7.8 % drop, still consolidating
        ctl.update({"ppl_execution": ppl, "entropy_planning": 0.6})
    assert ctl.state() == {"alpha": 0.0, "alpha_plateau": 0.0, "alpha_guard": 1.0}
    for ppl in (1.19, 1.19):  # 1.19 -> 1.19: plateau
        ctl.update({"ppl_execution": ppl, "entropy_planning": 0.6})
    assert ctl.alpha == pytest.approx(0.4)
    ctl.update({"ppl_execution": 1.18, "entropy_planning": 0.2})  # 1.19 -> 1.185: a 0.42 % drop, p = 0.58
    ctl.update({"ppl_execution": 1.19, "entropy_planning": 0.2})  # back to 1.19 -> 1.185 vs 1.19 last window
    s = ctl.state()  # planning entropy 0.2 against 0.6 at the start: g = 0.2 / 0.3
    assert s["alpha_guard"] == pytest.approx(2 / 3)
    assert s["alpha"] == pytest.approx(0.4 * s["alpha_plateau"] * 2 / 3)
    ctl.update({"step": 0, "val_accuracy": 0.3})  # lines without dynamics are skipped
    assert len(ctl.ppl) == 8
    with pytest.raises(ValueError, match="alpha_max"):
        AdaptiveAlpha(alpha_max=1.0)
