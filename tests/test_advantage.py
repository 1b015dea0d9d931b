"""GRPO / HICRA advantages: hand cases and hypothesis properties (paper §3)."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hicra.advantage import grpo_advantages, hicra_advantages

adv_1d = st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=1, max_size=8)


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
    mask = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T),
                                           min_size=len(a), max_size=len(a))))
    alpha = data.draw(st.floats(0, 0.99))
    out = hicra_advantages(A, mask, alpha)
    base = A[:, None].expand(-1, T)
    assert torch.equal(hicra_advantages(A, mask, 0.0), base)                 # alpha = 0 -> GRPO
    assert torch.equal(hicra_advantages(A, torch.zeros_like(mask), alpha), base)  # empty mask -> GRPO
    assert (torch.sign(out) == torch.sign(base)).all()                       # no sign flip for alpha < 1
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
