"""Answer checking and the RL reward: last ``\\boxed{}``, strict rule, math-verify.

Paper §4 (Table 1) scores with *strict* boxed matching: the final answer is
the content of the last ``\\boxed{...}`` in the response, and a response with no
``\\boxed`` is incorrect. Equivalence is decided by ``math-verify`` (symbolic
and numeric), after normalising the quirks of the shipped datasets: AIME's
``025``, a trailing ``^\\circ``, ``$...$`` wrapping, thousands separators
(GSM8K ``#### 1,000``) and AMC's ``27.0``.

Bad input (None, empty, unbalanced braces, megabyte strings, pathological
LaTeX) is *incorrect*, never an exception and never a hang: answers longer than
``MAX_ANSWER_CHARS`` are rejected before parsing, answers whose exponents or
factorials are plainly too large (``too_big``) are compared textually only, and
every other comparison runs in a worker process that is killed past a hard
deadline (``hicra.grading``), in any thread.

    from hicra.training.rewards import is_correct, accuracy_reward
    is_correct(r"... so the answer is \\boxed{\\frac{1}{2}}", "0.5")   # True
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from hicra.grading import TIMEOUT_S, _parse, verify_bounded, verify_here  # noqa: F401  (re-exported: the old in-thread path)

MAX_ANSWER_CHARS = 300
# what the trainer appends to a real-model problem's user turn (hicra.train; the rehearsal's pilot uses it too)
TRAIN_INSTRUCTION = "\nPut your final answer within \\boxed{}."
_BOXED = re.compile(r"\\boxed\s*\{")
_log = logging.getLogger(__name__)

# --------------------------------------------------------------------------
# extraction


def last_boxed(text) -> str | None:
    """Content of the last balanced ``\\boxed{...}`` (nested braces allowed), else None."""
    if not isinstance(text, str) or "\\boxed" not in text:
        return None
    for m in list(_BOXED.finditer(text))[::-1][:20]:  # bounded: no quadratic scan on hostile input
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                i += 2
                continue
            depth += (c == "{") - (c == "}")
            i += 1
        if depth == 0:
            return text[m.end() : i - 1].strip()
    return None


def normalize_answer(ans) -> str:
    """Dataset quirks removed: ``$..$``, ``^\\circ``, ``025``, ``1,000``, ``27.0``, ``\\text{}`` units."""
    if ans is None:
        return ""
    s = str(ans).strip()
    if isinstance(ans, float) and ans.is_integer():
        s = str(int(ans))
    s = s.strip().strip("$").strip()
    s = re.sub(r"^\\\(|\\\)$", "", s).strip()
    s = re.sub(r"\^\s*\{?\\circ\}?|°", "", s).strip()
    s = re.sub(r"\\[,!;: ]", "", s) if re.fullmatch(r"[\d\\,!;: .]+", s) else s  # 1\,000
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    if re.fullmatch(r"-?0+\d+", s):
        s = ("-" if s.startswith("-") else "") + s.lstrip("-").lstrip("0")
    return s


def completion_text(completion) -> str:
    """Plain text of a TRL completion: a string, or a chat list of ``{"role", "content"}``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, (list, tuple)):
        return "".join(
            completion_text(m)
            for m in completion
            if not isinstance(m, dict) or m.get("role", "assistant") == "assistant"
        )
    return ""


# --------------------------------------------------------------------------
# equivalence


# Answers that would make sympy compute for minutes (9^{99999999}, 99999999!, 9^{9^{9}}): math-verify's timeout
# works only in the main thread, so anywhere they are compared textually, never handed to it. The guard bounds
# magnitudes: an exponent that holds a power or factorial (a tower), an exponent above MAX_EXPONENT, a factorial
# of more than MAX_FACTORIAL.
MAX_EXPONENT, MAX_FACTORIAL = 10_000, 1_000
_INT = re.compile(r"\d+")


def _group(s: str, i: int) -> tuple[str, int]:
    """The operand starting at ``s[i]`` (spaces skipped): a balanced ``{...}``/``(...)`` group, a number, a
    ``\\command`` or one character; returns (its text, the index after it)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] in "{(":
        close, depth, j = "}" if s[i] == "{" else ")", 0, i
        while j < len(s):
            depth += (s[j] == s[i]) - (s[j] == close)
            j += 1
            if depth == 0:
                break
        return s[i:j], j
    m = re.compile(r"\d+(?:\.\d+)?|\\[A-Za-z]+|.").match(s, i)
    return m.group(0), m.end()


def too_big(ans: str) -> bool:
    """Would evaluating ``ans`` build a number too large to compare? (see MAX_EXPONENT, MAX_FACTORIAL)"""
    s = ans.replace("**", "^")
    for m in re.finditer(r"\^", s):
        exp, end = _group(s, m.end())
        if "^" in exp or "!" in exp or s[end:].lstrip().startswith("^"):
            return True  # a tower: 9^{9^{9}}, 9^{{9}^{9}}, 9^9^9, 2^{3!}
        if any(int(n) > MAX_EXPONENT for n in _INT.findall(exp)):
            return True
    for m in re.finditer(r"!", s):
        before = s[: m.start()].rstrip()
        if before.endswith((")", "}")):  # the group the factorial applies to
            opener = "(" if before.endswith(")") else "{"
            depth, j = 0, len(before) - 1
            while j >= 0:
                depth += (before[j] in ")}") - (before[j] in "({")
                if depth == 0 and before[j] == opener:
                    break
                j -= 1
            operand = before[max(j, 0) :]
        else:
            operand = (re.search(r"\d+$", before) or re.search(r"$", before)).group(0)
        if "!" in operand or "^" in operand or any(int(n) > MAX_FACTORIAL for n in _INT.findall(operand)):
            return True
    return False


def answers_match(pred: str, gold) -> bool:
    """True when two final answers are equal after normalisation, textually or by math-verify.
    Answers too large to evaluate (``too_big``) are compared textually only; every other comparison runs in a
    worker process with a hard deadline (``hicra.grading``), so no answer can hold the caller, in any thread."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g or len(p) > MAX_ANSWER_CHARS or len(g) > MAX_ANSWER_CHARS:
        return False
    if p == g or p.replace(" ", "") == g.replace(" ", ""):
        return True
    if too_big(p) or too_big(g):
        return False
    return _bounded(p, g)


@lru_cache(maxsize=65536)
def _bounded(p: str, g: str) -> bool:

    return verify_bounded(p, g)


def is_correct(response, gold) -> bool:
    """Strict rule: the last ``\\boxed{}`` of ``response`` must equal ``gold``; no box is incorrect."""
    try:
        pred = last_boxed(completion_text(response))
        return pred is not None and answers_match(pred, gold)
    except Exception as e:
        _log.debug("is_correct failed: %s", e)
        return False


# the last number in a text: integers, decimals, thousands separators, simple fractions, an optional sign
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?")


def last_answer(text) -> str | None:
    """Lenient extraction: the last ``\\boxed{}`` if there is one, else the last number in the text."""
    text = completion_text(text)
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    nums = _NUMBER.findall(text or "")
    return nums[-1].rstrip(",").replace(" ", "") if nums else None


def is_correct_lenient(response, gold) -> bool:
    """Lenient rule (reported beside the strict one, never instead of it): ``last_answer`` equals ``gold``."""
    try:
        pred = last_answer(response)
        return pred is not None and answers_match(pred, gold)
    except Exception as e:
        _log.debug("is_correct_lenient failed: %s", e)
        return False


def accuracy_reward(completions, answer, **kwargs) -> list[float]:
    """TRL reward function: 1.0 for a correct boxed answer, else 0.0.

    ``answer`` is the dataset column TRL forwards, one gold answer per completion. Under TRL it also logs
    ``boxed_ratio`` (the share of completions with a balanced ``\\boxed{}``) through TRL's ``log_metric``.
    """
    if len(completions) != len(answer):
        raise ValueError(f"accuracy_reward got {len(completions)} completions but {len(answer)} answers")
    log_boxed_ratio(completions, kwargs.get("log_metric"))
    return [float(is_correct(c, a)) for c, a in zip(completions, answer)]


def log_boxed_ratio(completions, log_metric=None) -> float:
    """Share of completions holding a balanced ``\\boxed{}``; sent to TRL's ``log_metric`` (the reward-function
    hook TRL passes since 1.x, averaged over processes) as ``boxed_ratio`` when given."""
    ratio = sum(map(has_box, completions)) / max(1, len(completions))
    if log_metric is not None:
        log_metric("boxed_ratio", ratio)
    return ratio


def has_box(completion) -> bool:
    """Does the completion hold a balanced ``\\boxed{}``?"""
    return last_boxed(completion_text(completion)) is not None


def format_reward(completions, **kwargs) -> list[float]:
    """TRL reward function: 1.0 when the completion contains a balanced ``\\boxed{}``."""
    return [float(has_box(c)) for c in completions]
