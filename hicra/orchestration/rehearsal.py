"""A profile as another profile plus listed differences: the CPU rehearsal of the GPU ``paper`` profile (issue #29).

Why: the ``paper`` profile (GRPO and HICRA on a paper recipe through accelerate, then Fig 3/4/5/9 and Table 1 on
the checkpoints) is otherwise validated only by its dry run. ``overlay`` loads the base profile's steps and
changes only what a CPU cannot run or afford, every change written in the overlay profile's YAML
(``configs/profiles/paper-rehearsal.yaml``): flags appended to the training commands (a real HF-format model for
Qwen, no vLLM, fp32, tiny sizes), strings replaced everywhere (the accelerate config, model ids), parameters of the
analysis steps (sizes, the judge served here), optionally extra training arms (LoRA), and a ``proof`` step that
reports the learning signal the training runs had (``hicra.rehearsal_proof``: mixed-reward groups, planning tokens,
tokens where HICRA's Â ≠ A, the GRPO-HICRA parameter distance). Everything else, steps, notebooks, code paths, is
the base profile's.

    make rehearsal                                   # python -m hicra.pipeline --profile paper-rehearsal --jobs 1
    python -m hicra.pipeline --profile paper-rehearsal --dry_run true
"""

from __future__ import annotations

import copy

from hicra.orchestration.profiles import load_profile, map_strings
from hicra.orchestration.runner import Step
from hicra.store.paths import resolve


def overlay(
    run: str,
    base: str,
    replace: dict | None = None,
    train_flags: list | None = None,
    params: dict | None = None,
    steps: int | None = None,
    arms: dict | None = None,
    proof: dict | None = None,
) -> list[Step]:
    """The steps of profile ``base`` in the folder ``run``, with: every string equal to a key of ``replace``
    replaced by its value; ``train_flags`` appended to each training command (``hicra.train``; later flags win);
    ``params`` merged into the named steps' notebook parameters; progress totals set to ``steps``; and for each
    ``arms`` entry ``{name: {from: step, flags: [...]}}`` a copy of training step ``from`` with its own folder and
    extra flags, added to the analyses' run lists; with ``proof`` ``{pairs: [[grpo_run, hicra_run], ...]}`` (run
    folder names), a step ``rehearsal-proof`` after the training steps that writes ``<run>/proof.json``."""

    _, base_steps = load_profile(base, run=str(resolve(run)))  # the folder as given (load_profile adds runs/ to names)
    unknown = sorted(set(params or {}) - {s.name for s in base_steps})
    if unknown:
        raise ValueError(f"overlay params name steps {unknown} that profile {base!r} does not have")
    table = replace or {}
    swap = lambda v: table.get(v, v)  # noqa: E731
    out = []
    for s in base_steps:
        s = copy.deepcopy(s)
        s.command, s.params, s.outputs = (map_strings(x, swap) for x in (s.command, s.params, s.outputs))
        if s.command and "hicra.train" in s.command:
            s.command = [*s.command, *map(str, train_flags or [])]
            if steps and s.progress:
                s.progress = (s.progress[0], steps)
        s.params = {**s.params, **(params or {}).get(s.name, {})}
        out.append(s)
    for name, spec in (arms or {}).items():
        src = next((s for s in out if s.name == spec["from"]), None)
        if src is None or not src.command:
            raise ValueError(f"arm {name!r}: {spec.get('from')!r} is not a training step of {base!r}")
        old = src.command[src.command.index("--run_dir") + 1]
        new = f"{old.rsplit('/', 1)[0]}/{name}"
        arm = Step(
            name,
            outputs=[f"{new}/summary.json"],
            needs=(src.name,),
            keep_done=src.keep_done,
            progress=(f"{new}/metrics.jsonl", steps or src.progress[1]) if src.progress else None,
            command=[new if c == old else c for c in src.command] + [str(f) for f in spec.get("flags", [])],
        )
        out.insert(out.index(src) + 1, arm)
        for s in out:  # the analyses read the new arm too, after it has trained
            if isinstance(s.params.get("runs"), list) and old in s.params["runs"]:
                s.params["runs"] = [*s.params["runs"], new]
                s.needs = tuple(s.needs or ()) + (name,) if s.needs is not None else None
    if proof is not None:
        out.append(_proof_step(out, proof))
    return out


def _proof_step(steps: list[Step], proof: dict) -> Step:
    """``python -m hicra.rehearsal_proof`` on the training runs' folder, once every training step has finished."""
    train = [s for s in steps if s.command and "hicra.train" in s.command]
    if not train:
        raise ValueError("proof: the profile has no training step")
    folder = train[0].command[train[0].command.index("--run_dir") + 1].rsplit("/", 1)[0]
    pairs = [f"--pair={a},{b}" for a, b in proof.get("pairs", [])]
    return Step(
        "rehearsal-proof",
        outputs=[f"{folder}/proof.json"],
        needs=tuple(s.name for s in train),
        command=["python", "-m", "hicra.rehearsal_proof", "--run_dir", folder, *pairs],
    )
