"""The sandbox world: Countdown tasks, search-style reasoning traces, verifier, oracle.

A CPU-scale stand-in for the paper's math RL (§2, §4) where the planning /
execution split is *known*: every strategic phrase the generator writes is
recorded as a character span, so the tagger, the SG miner and the error
analysis can be scored against ground truth.

Task (reasoning-gym's ``countdown``): reach a target from the given numbers,
each used once, with + - *. A trace is a search: optional deduction hint,
attempts (left-to-right arithmetic chains) introduced by branching phrases,
checks and backtracking phrases, then a conclusion and ``\\boxed{expr}``::

    Numbers: 3 7 5. Target: 26.
    We need to reach 26. Let's try 3 + 7 = 10. 10 * 5 = 50. Let me check: 50 is not 26.
    That doesn't work. Alternatively, 3 * 7 = 21. 21 + 5 = 26. Wait, 26 equals 26.
    Therefore \\boxed{(3 * 7) + 5}

Two styles leave room for RL: *careful* traces check every attempt and
backtrack (up to 3 failures), *hasty* traces box their first attempt unchecked.
Deduction hints ("since the target is large, we should multiply") point at the
right operation but are under-used in the warm-start mix.

    python -c "from hicra.sandbox.world import *; t = make_tasks(WorldConfig(), 'val')[0]; \
               print(make_trace(t, random.Random(0), WorldConfig()).text)"
"""

from __future__ import annotations

import ast
import itertools
import random
import re
import zlib
from dataclasses import dataclass, field

from hicra.training.rewards import last_boxed

PHRASES: dict[str, dict[str, list[str]]] = {
    "deduction": {
        "open": [
            "we need to reach",
            "the goal is to get",
            "our target is",
            "we want to make",
            "first, let's aim for",
            "the problem asks for",
        ],
        "hint_big": [
            "since the target is large, we should multiply",
            "the target is big, so we can use multiplication",
            "we can use the fact that multiplying grows fast",
        ],
        "hint_big_add": [
            "since the target is large, we should add",
            "the target is big, so we can add them up",
            "we can use the fact that adding grows it",
        ],
        "hint_small": [
            "since the target is small, we should subtract",
            "the target is small, so we can use subtraction",
            "we can use the fact that subtracting shrinks it",
        ],
        "conclude": [
            "therefore",
            "so the answer is",
            "this means the answer is",
            "which gives",
            "so we have",
            "in the end",
        ],
    },
    "branching": {
        "first": ["let's try", "let's start with", "how about", "one option is", "let's consider", "maybe we can do"],
        "again": [
            "let's try a different approach:",
            "another approach:",
            "alternatively,",
            "instead, let's try",
            "what if we do",
            "let's try another order:",
            "a better approach might be",
            "on the other hand,",
        ],
    },
    "backtracing": {
        "check": [
            "let me check:",
            "wait,",
            "let's verify:",
            "but the problem says",
            "let me double-check:",
            "hold on,",
            "checking this:",
        ],
        "fail": [
            "that doesn't work.",
            "so that fails.",
            "this is wrong.",
            "let's go back.",
            "that's not right.",
            "hmm, no.",
            "that can't be it.",
        ],
    },
}
ALL_GRAMS: list[tuple[str, str]] = [(p, kind) for kind, slots in PHRASES.items() for ps in slots.values() for p in ps]


@dataclass
class WorldConfig:
    """Difficulty knobs and the warm-start mix of trace styles."""

    seed: int = 0
    n_numbers: int = 3  # numbers per task (difficulty)
    max_value: int = 12  # numbers drawn from 1..max_value
    max_target: int = 60
    min_solutions: int = 4  # keep tasks reachable by at least this many left-to-right chains
    p_careful: float = 0.6  # share of careful (check + backtrack) traces
    p_hint: float = 0.3  # share of traces opening with a deduction hint
    p_hasty_right: float = 0.5  # a hasty trace boxes a right attempt this often
    max_failures: int = 4  # failed attempts before success in careful traces
    p_case: float = 0.06  # phrase written in an unusual case (UPPER / Title)
    p_curly: float = 0.1  # curly apostrophes
    p_newline: float = 0.03  # a newline inside a phrase
    tasks: str = "reasoning_gym"  # "reasoning_gym": draw tasks with its generator (v1); "enumerate": every
    #                               (numbers, target) pair of the world, shuffled by seed (v2: exact pool sizes)
    bad_range: tuple = (-20, 150)  # failed attempts written in traces keep their steps in this range
    operators: str = "+-*"  # the operations of the world (v2: "+-", arithmetic the tiny model can learn)


# Sandbox v2 candidate (docs/sandbox.md): sums and differences of numbers 1..15 (arithmetic meant to
# be learnable), enumerated tasks (exact pool sizes: 891 SFT / 661 RL / 399 val), shorter traces.
V2 = dict(
    operators="+-",
    max_value=15,
    max_target=45,
    min_solutions=4,
    p_careful=0.5,
    max_failures=3,
    tasks="enumerate",
    bad_range=(-15, 60),
)

# v2 is the default world (docs/sandbox.md); v1 is the first shipped world (configs/sandbox_v1.yaml), with its
# easy and hard variants. A model is calibrated on the difficulties of its own family (FAMILY).
DIFFICULTY = {
    "v2": V2,
    "v1": {},
    "easy": dict(n_numbers=3, max_value=8, max_target=40, min_solutions=6),
    "hard": dict(n_numbers=4, max_value=15, max_target=99, min_solutions=1),
}
V1_FAMILY = ("easy", "v1", "hard")
FAMILY = {"v2": ("v2",), **{d: V1_FAMILY for d in V1_FAMILY}}


@dataclass
class Task:
    numbers: list[int]
    target: int
    id: str = ""

    def as_entry(self) -> dict:
        return {"metadata": {"numbers": list(self.numbers), "target": self.target}}


@dataclass
class Trace:
    text: str
    spans: list[tuple[int, int, str, str]] = field(default_factory=list)  # (start, end, gram, kind)
    style: str = "careful"
    correct: bool = True


# --------------------------------------------------------------------------
# tasks, solutions, verification


def _dataset(cfg: WorldConfig, seed: int, size: int):
    import reasoning_gym

    return reasoning_gym.create_dataset(
        "countdown",
        size=size,
        seed=seed,
        min_numbers=cfg.n_numbers,
        max_numbers=cfg.n_numbers,
        min_value=1,
        max_value=cfg.max_value,
        min_target=1,
        max_target=cfg.max_target,
        operators=tuple(cfg.operators),
    )


def chains(numbers: list[int], operators: str = "+-*"):
    """Every left-to-right chain: (order, ops, [step results])."""
    for order in itertools.permutations(numbers):
        for ops in itertools.product(operators, repeat=len(numbers) - 1):
            acc, steps = order[0], []
            for op, x in zip(ops, order[1:]):
                acc = acc + x if op == "+" else acc - x if op == "-" else acc * x
                steps.append(acc)
            yield order, ops, steps


def chain_expr(order, ops) -> str:
    e = str(order[0])
    for i, (op, x) in enumerate(zip(ops, order[1:])):
        e = f"({e} {op} {x})" if i < len(ops) - 1 else f"{e} {op} {x}"
    return e


def _bucket(numbers, target) -> int:
    return zlib.crc32(f"{sorted(numbers)}:{target}".encode()) % 10


# "train" (v1: SFT and RL share it) = "sft" + "rl" (v2: the warm start never saw the RL tasks)
SPLIT_BUCKETS = {"train": set(range(3, 10)), "val": {0, 1}, "test": {2}, "sft": {6, 7, 8, 9}, "rl": {3, 4, 5}}
_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_003, "sft": 3_000_017, "rl": 4_000_037}


def _enumerated(cfg: WorldConfig, split: str) -> list[Task]:
    """Every multiset of numbers and every target in 1..max_target reached by >= min_solutions chains."""
    out = []
    for nums in itertools.combinations_with_replacement(range(1, cfg.max_value + 1), cfg.n_numbers):
        counts: dict[int, int] = {}
        for _, _, steps in chains(list(nums), cfg.operators):
            if 1 <= steps[-1] <= cfg.max_target:
                counts[steps[-1]] = counts.get(steps[-1], 0) + 1
        for target, c in sorted(counts.items()):
            if c >= max(1, cfg.min_solutions) and _bucket(nums, target) in SPLIT_BUCKETS[split]:
                out.append(Task(list(nums), target))
    rng = random.Random(cfg.seed * 7_919 + _OFFSET[split])
    rng.shuffle(out)
    for i, t in enumerate(out):
        rng.shuffle(t.numbers)
        t.id = f"{split}-{i}"
    return out


def make_tasks(cfg: WorldConfig, split: str, n: int = 200, allow_fewer: bool = False) -> list[Task]:
    """``n`` distinct tasks solvable by a left-to-right chain. Splits are disjoint by
    construction: a problem's hash bucket decides its split. A small world may hold
    fewer than ``n``: that is an error unless ``allow_fewer``."""
    if split not in SPLIT_BUCKETS:
        raise ValueError(f"split must be one of {list(SPLIT_BUCKETS)}; got {split!r}")
    if cfg.tasks == "enumerate":
        tasks = _enumerated(cfg, split)
        if len(tasks) < n and not allow_fewer:
            raise ValueError(f"only {len(tasks)} distinct {split} tasks exist in this world; ask for fewer")
        return tasks[:n]
    if cfg.tasks != "reasoning_gym":
        raise ValueError(f"WorldConfig.tasks must be 'reasoning_gym' or 'enumerate'; got {cfg.tasks!r}")
    offset = _OFFSET[split]
    ds = _dataset(cfg, cfg.seed * 7_919 + offset, n * (12 if split in ("train", "sft", "rl") else 50) + 200)
    tasks, seen = [], set()
    for i in range(len(ds)):
        md = ds[i]["metadata"]
        key = (tuple(sorted(md["numbers"])), md["target"])
        if key in seen or _bucket(*key) not in SPLIT_BUCKETS[split]:
            continue
        if sum(s[-1] == md["target"] for _, _, s in chains(md["numbers"], cfg.operators)) < max(1, cfg.min_solutions):
            continue
        seen.add(key)
        tasks.append(Task(list(md["numbers"]), int(md["target"]), f"{split}-{i}"))
        if len(tasks) == n:
            break
    if len(tasks) < n and not allow_fewer:
        raise ValueError(f"only {len(tasks)} distinct {split} tasks exist at this difficulty; ask for fewer")
    return tasks


def prompt(task: Task) -> str:
    """The prompt; completions start right after its newline."""
    return f"Numbers: {' '.join(map(str, task.numbers))}. Target: {task.target}.\n"


_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}


def _value(node):
    """Exact value of an expression tree of integers, + - * and unary minus; None for anything else."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _value(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        a, b = _value(node.left), _value(node.right)
        return None if a is None or b is None else _OPS[type(node.op)](a, b)
    return None


def verify(task: Task, completion: str) -> bool:
    """True iff the last ``\\boxed{}`` is an expression using each number once that equals the target.

    The rule of reasoning-gym's Countdown scorer (the integers written are the task's numbers as a
    multiset, and the value equals the target), evaluated exactly on Python's own expression tree
    instead of through sympy: about 20x faster, and the reward is paid on every completion. Expressions are limited to
    integers, + - * and parentheses (``**`` and everything else score 0). tests/test_sandbox.py checks
    the verdicts against reasoning-gym's scorer."""

    expr = last_boxed(completion)
    if expr is None or len(expr) > 200 or not re.fullmatch(r"[\d\s+\-*()]+", expr) or "**" in expr:
        return False
    used = [int(x) for x in re.findall(r"\d+", expr)]
    if sorted(used) != sorted(task.numbers):
        return False
    try:  # a leading zero ("07") is a syntax error here, as it is for sympy
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return False
    return _value(tree.body) == task.target


# --------------------------------------------------------------------------
# trace generation


class _Writer:
    def __init__(self, rng: random.Random, cfg: WorldConfig):
        self.rng, self.cfg, self.parts, self.spans, self.pos = rng, cfg, [], [], 0

    def text(self, s: str):
        self.parts.append(s)
        self.pos += len(s)

    def phrase(self, kind: str, slot: str, sentence_start: bool, sep: str = " "):
        p = self.rng.choice(PHRASES[kind][slot])
        shown = p
        r = self.rng.random()
        if r < self.cfg.p_case / 3:
            shown = shown.upper()
        elif r < self.cfg.p_case:
            shown = shown.title()
        elif sentence_start:
            shown = shown[0].upper() + shown[1:]
        if "'" in shown and self.rng.random() < self.cfg.p_curly:
            shown = shown.replace("'", "\u2019")
        if " " in shown and self.rng.random() < self.cfg.p_newline:
            i = self.rng.choice([m.start() for m in re.finditer(" ", shown)])
            shown = shown[:i] + "\n" + shown[i + 1 :]
        if self.parts and not self.parts[-1].endswith(("\n", " ")):
            self.text(sep)
        self.spans.append((self.pos, self.pos + len(shown), p, kind))
        self.text(shown)


def _attempt(w: _Writer, order, ops, steps):
    acc = order[0]
    for op, x, r in zip(ops, order[1:], steps):
        w.text(f" {acc} {op} {x} = {r}.")
        acc = r


def make_trace(task: Task, rng: random.Random, cfg: WorldConfig, style: str | None = None) -> Trace:
    """One reasoning trace for ``task`` with ground-truth planning spans."""
    style = style or ("careful" if rng.random() < cfg.p_careful else "hasty")
    all_chains = list(chains(task.numbers, cfg.operators))
    good = [c for c in all_chains if c[2][-1] == task.target]
    lo, hi = cfg.bad_range
    bad = [c for c in all_chains if c[2][-1] != task.target and all(lo <= v <= hi for v in c[2])] or [
        c for c in all_chains if c[2][-1] != task.target
    ]
    w = _Writer(rng, cfg)
    w.phrase("deduction", "open", True)
    w.text(f" {task.target}.")
    hinted = None
    if rng.random() < cfg.p_hint and cfg.n_numbers >= 2:
        big = task.target > max(task.numbers) * 2
        small = task.target < max(task.numbers)
        if big or small:
            grow = "*" if "*" in cfg.operators else "+"
            w.phrase("deduction", ("hint_big" if grow == "*" else "hint_big_add") if big else "hint_small", True)
            w.text(".")
            hinted = grow if big else "-"
            good = [c for c in good if hinted in c[1]] or good
            bad = [c for c in bad if hinted in c[1]] or bad
    if style == "careful":
        attempts = rng.sample(bad, min(len(bad), rng.randint(0, cfg.max_failures))) + [rng.choice(good)]
    else:
        attempts = [rng.choice(good) if rng.random() < cfg.p_hasty_right or not bad else rng.choice(bad)]
    for k, (order, ops, steps) in enumerate(attempts):
        w.phrase("branching", "first" if k == 0 else "again", True)
        _attempt(w, order, ops, steps)
        if style == "careful":
            w.phrase("backtracing", "check", True)
            ok = steps[-1] == task.target
            w.text(f" {steps[-1]} {'equals' if ok else 'is not'} {task.target}.")
            if not ok:
                w.phrase("backtracing", "fail", True)
    order, ops, steps = attempts[-1]
    w.phrase("deduction", "conclude", True, sep="\n")
    w.text(f" \\boxed{{{chain_expr(order, ops)}}}")
    return Trace("".join(w.parts), w.spans, style, steps[-1] == task.target)


# --------------------------------------------------------------------------
# oracle: why did a rollout fail?

_STEP = re.compile(r"(-?\d+) ([+\-*]) (-?\d+) = (-?\d+)")


def classify_failure(task: Task, completion: str) -> str | None:
    """None for a correct rollout; ``"execution"`` when a written arithmetic step is wrong,
    else ``"planning"`` (wrong approach, no check, gave up, or no answer)."""
    if verify(task, completion):
        return None
    for a, op, b, r in _STEP.findall(completion):
        a, b, r = int(a), int(b), int(r)
        if (a + b if op == "+" else a - b if op == "-" else a * b) != r:
            return "execution"
    return "planning"
