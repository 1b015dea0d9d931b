"""Answer extraction and grading on the shipped datasets' quirks and on hostile input."""

import time

import pytest

from hicra.training.rewards import accuracy_reward, format_reward, is_correct, last_boxed, normalize_answer


def test_last_boxed():
    assert last_boxed(r"a \boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{ {a}_{b} }") == "{a}_{b}"
    assert last_boxed(r"\boxed {7}") == "7"
    assert last_boxed(r"\boxed{1} \boxed{2") == "1"  # unbalanced last box: previous one
    assert last_boxed("no box") is None and last_boxed(None) is None


@pytest.mark.parametrize(
    "response, gold",
    [
        (r"\boxed{25}", "025"),  # AIME leading zeros
        (r"\boxed{336}", r"336^\circ"),  # AIME25 degree
        (r"\boxed{336^\circ}", "336"),
        (r"\boxed{27}", "27.0"),  # AMC floats
        (r"\boxed{27}", 27.0),
        (r"\boxed{1000}", "1,000"),  # GSM8K separators
        (r"\boxed{1,000}", "1000"),
        (r"\boxed{\frac{1}{2}}", "0.5"),
        (r"\boxed{\dfrac12}", r"$\frac{1}{2}$"),  # $...$ wrapping, OlympiadBench
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\boxed{x^2+2x+1}", "(x+1)^2"),
    ],
)
def test_equivalent(response, gold):
    assert is_correct("so the answer is " + response, gold)


@pytest.mark.parametrize(
    "response, gold",
    [
        ("The answer is 25.", "25"),  # strict: no box -> incorrect
        (r"\boxed{24}", "25"),
        (r"\boxed{}", "0"),
        (r"\boxed{\frac{1}{3}}", "0.33"),
    ],
)
def test_incorrect(response, gold):
    assert not is_correct(response, gold)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        12,
        r"\boxed{",
        r"\boxed{{{{",
        "}" * 10,
        "x" * 1_000_000 + r"\boxed{3}",
        r"\boxed{" * 50_000,
        r"\boxed{" + r"\frac{" * 400 + "}" * 400 + "}",
        r"\boxed{10^{10^{10^{10^{10}}}}}",
        r"\boxed{\sqrt{\sqrt{\sqrt{x}}}" + "}",
    ],
)
def test_bad_input_is_incorrect_and_fast(bad):
    t0 = time.time()
    assert is_correct(bad, "1") is False or bad == "x" * 1_000_000 + r"\boxed{3}"
    assert time.time() - t0 < 30, "grading must not hang"  # a hang guard, not a speed goal


def test_large_string_is_graded():
    assert is_correct("x" * 1_000_000 + r"\boxed{3}", "3")


def test_trl_reward_functions():
    plain = [r"\boxed{4}", "4", r"\boxed{5}"]
    chat = [[{"role": "assistant", "content": c}] for c in plain]
    assert accuracy_reward(plain, answer=["4", "4", "4"]) == [1.0, 0.0, 0.0]
    assert accuracy_reward(chat, answer=["4", "4", "4"]) == [1.0, 0.0, 0.0]
    assert format_reward(plain) == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="2 answers"):
        accuracy_reward(plain, answer=["4", "4"])


def test_normalize_answer():
    assert normalize_answer("$025$") == "25"
    assert normalize_answer("1,234,567") == "1234567"
    assert normalize_answer(None) == ""


def test_reward_functions_log_boxed_ratio_through_trl_log_metric():
    from hicra.sandbox.rl import sandbox_reward
    from hicra.training.rewards import accuracy_reward

    seen = []
    log = lambda name, value: seen.append((name, value))  # noqa: E731  TRL's log_metric(name, value)
    assert accuracy_reward(["so \\boxed{4}", "it is 4", "\\boxed{5}"], ["4", "4", "4"], log_metric=log) == [1, 0, 0]
    sandbox_reward(["\\boxed{3 * 7 + 5}", "no box"], numbers=[[3, 7, 5]] * 2, target=[26, 26], log_metric=log)
    assert seen == [("boxed_ratio", 2 / 3), ("boxed_ratio", 0.5)]
    assert accuracy_reward(["\\boxed{4}"], ["4"]) == [1.0]  # outside TRL: no hook, no error
