"""Metrics on hand-computed cases."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from hicra.method import metrics as M
from hicra.method import stats as S


def test_semantic_entropy():
    assert M.semantic_entropy([["a", "b"], ["a", "b"]]) == pytest.approx(1.0)
    assert M.semantic_entropy([["a"], ["a", "a"]]) == 0.0
    assert M.semantic_entropy([]) == 0.0
    # p = (2/3, 1/3)
    assert M.semantic_entropy(Counter({"wait": 2, "so": 1})) == pytest.approx(0.9182958, abs=1e-6)


def test_conditional_entropy():
    # x=a -> y uniform over 2 (1 bit), x=b -> y fixed (0 bits); p(a)=p(b)=1/2
    pairs = [("a", "1"), ("a", "2"), ("b", "3"), ("b", "3")]
    assert M.conditional_entropy(pairs) == pytest.approx(0.5)
    assert M.conditional_entropy([]) == 0.0


def test_following_ngrams():
    text = "Wait, let me check: 3 plus 4 is 7"
    assert M.following_ngrams(text, [(0, 4, "wait"), (6, 18, "let me check")], n=2) == [
        ("wait", ", let"),
        ("let me check", ": 3"),
    ]


def test_split_token_stats():
    logp = torch.log(torch.tensor([[0.5, 0.25, 1.0], [0.5, 0.5, 0.1]]))
    ent = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    plan = torch.tensor([[True, False, False], [True, False, False]])
    cm = torch.tensor([[1, 1, 1], [1, 1, 0]])
    s = M.split_token_stats(logp, ent, plan, cm)
    assert s["ppl_planning"] == pytest.approx(2.0)
    # execution tokens: 0.25, 1.0, 0.5 -> exp(-mean log) = (0.125)^(-1/3) = 2
    assert s["ppl_execution"] == pytest.approx(2.0)
    assert s["entropy_planning"] == pytest.approx(2.5)
    assert s["entropy_execution"] == pytest.approx((2 + 3 + 5) / 3)
    assert s["planning_ratio"] == pytest.approx(2 / 5)
    assert math.isnan(M.split_token_stats(logp, ent, torch.zeros_like(plan), cm)["ppl_planning"])


def test_relative():
    assert np.allclose(M.relative([2.0, 1.0, 4.0]), [1.0, 0.5, 2.0])


def test_fork_overlap():
    ent = torch.tensor([[0.1, 5.0, 4.0, 0.2, 0.3]])
    plan = torch.tensor([[False, True, False, False, True]])
    r = M.fork_overlap(ent, plan, rho=0.4)  # top-2: positions 1, 2
    assert r["fork_is_planning"] == pytest.approx(0.5)
    assert r["planning_is_fork"] == pytest.approx(0.5)


def test_pass_at_k_and_avg():
    assert M.pass_at_k([4], [0], 2)[0] == 0.0
    assert M.pass_at_k([4], [4], 2)[0] == 1.0
    assert M.pass_at_k([4], [1], 2)[0] == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))
    assert M.pass_at_k([5], [2], 1)[0] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="at least 8"):
        M.pass_at_k([4], [1], 8)
    assert M.avg_at_k([[1, 0, 0, 1], [1, 1, 1, 1]]) == pytest.approx(0.75)


def test_intervals():
    m, lo, hi = S.t_interval([1.0, 2.0, 3.0])
    assert m == 2.0 and lo < 2.0 < hi and hi - lo == pytest.approx(2 * 2.4841377, rel=1e-4)
    m, lo, hi = S.bootstrap_ci([0, 1] * 50, seed=1)
    assert m == 0.5 and 0.38 < lo < 0.5 < hi < 0.62


def test_stats_on_hand_numbers():
    """The one implementation of each interval: Wilson for 7/20 (Wilson 1927: 0.181-0.567), a t-interval, a
    percentile bootstrap that cannot leave the data's range, and empty or constant input."""
    p, lo, hi = S.wilson(7, 20)
    assert p == 0.35 and lo == pytest.approx(0.1812, abs=1e-3) and hi == pytest.approx(0.5671, abs=1e-3)
    assert all(math.isnan(x) for x in S.wilson(0, 0))
    m, lo, hi = S.t_interval([0.1, 0.2, 0.3, None, float("nan")])
    assert m == pytest.approx(0.2) and hi - m == pytest.approx(0.1 * 4.3027 / math.sqrt(3), rel=1e-3)
    m, lo, hi = S.bootstrap_ci([0.0, 0.0, 1.0, 1.0, 1.0], seed=3)
    assert m == 0.6 and 0.0 <= lo <= m <= hi <= 1.0
    assert S.bootstrap_ci([1.0, 1.0]) == (1.0, 1.0, 1.0)
