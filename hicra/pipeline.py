"""Regenerate every figure: a profile's steps in order, under papermill or as CLI steps, with its parameters.

    python -m hicra.pipeline --profile sandbox        # `make figures` / `make demo`
    python -m hicra.pipeline --profile smollm-cpu     # real-model analyses on CPU
    python -m hicra.pipeline --profile study          # `make study`: the pre-registered study
    python -m hicra.pipeline --profile paper          # on a GPU box: train GRPO + HICRA, then every figure
    python -m hicra.pipeline --profile paper --dry_run true   # anywhere: validate every step, load no model
    python -m hicra.pipeline --profile my_gpu.yaml    # a profile of your own (copy one in configs/profiles/)
    python -m hicra.pipeline --profile sandbox --force 02_train_hicra

Three parts: the profiles are data (``hicra.orchestration.profiles``, ``configs/profiles/*.yaml``); the runner
(``hicra.orchestration.runner``) executes them — steps that do not depend on each other run at the same time, up to
``--jobs``, each with its share of the CPU threads; a step is skipped when nothing it depends on changed
(notebook, parameters, input files, hashed into a stamp under ``runs/<run>/.stamps/``) and its outputs exist;
a failing step stops the pipeline after its siblings finish, naming the notebook and cell; Ctrl-C stops the
running steps and a rerun continues; every 30 s a line reports the running steps — and the report
(``hicra.orchestration.report``) gathers the headline numbers into ``figures/results_<profile>.md``. Each step's
executed notebook and log go to ``runs/<run>/executed/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hicra.orchestration.profiles import dry_run, load_profile, profile_names
from hicra.orchestration.report import results_markdown
from hicra.orchestration.runner import Step, StepFailed, run_step, run_wave, waves
from hicra.stepkit.steps import emit, install_signal_handlers
from hicra.store.paths import resolve
from hicra.store.runfolder import RunFolderError, hold


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--profile",
        default="sandbox",
        help=f"a profile in configs/profiles/ ({', '.join(profile_names())}) or a profile YAML file",
    )
    ap.add_argument(
        "--run", default=None, help="run folder: a name under runs/ or an absolute path (default: the profile's `run`)"
    )
    ap.add_argument("--figures_dir", default="figures")
    ap.add_argument(
        "--force", nargs="*", default=[], help="step names to rerun even if unchanged ('all' for every step)"
    )
    ap.add_argument("--only", nargs="*", default=[], help="run just these steps")
    ap.add_argument("--jobs", type=int, default=4, help="independent steps run at once (1: one after another)")
    ap.add_argument(
        "--profile_args",
        default="{}",
        help="JSON arguments for a profile made by a function (`from:`), "
        'e.g. \'{"steps": 50, "arms": {"grpo": 3, "hicra": 3}}\' for the study profiles',
    )
    ap.add_argument(
        "--dry_run",
        default="false",
        nargs="?",
        const="true",
        choices=["true", "false"],
        help="validate every step's config and parameters, load no model, run nothing (a bare --dry_run: true)",
    )
    ap.add_argument("--step_json", help=argparse.SUPPRESS)  # internal: run one step (see run_wave)
    ap.add_argument("--run_dir", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    install_signal_handlers()
    if a.step_json:
        step = Step(**json.loads(a.step_json))
        try:
            emit(
                {
                    "step": step.name,
                    "status": run_step(step, Path(a.run_dir), a.figures_dir, force=bool(a.force), echo=sys.stderr),
                }
            )
        except StepFailed as e:
            emit({"step": step.name, "status": "failed", "error": str(e)})
            sys.exit(1)
        return
    try:
        args = json.loads(a.profile_args)
        if not isinstance(args, dict):
            raise ValueError(f"expected a JSON object of the profile function's arguments, got {args!r}")
        run_dir, steps = load_profile(a.profile, a.run, args)
    except (json.JSONDecodeError, TypeError, ValueError, FileNotFoundError) as e:
        ap.error(f"--profile {a.profile} --profile_args {a.profile_args!r}: {e}")
    name = Path(a.profile).stem
    if a.dry_run == "true":
        try:
            checked = dry_run(steps)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        emit({"profile": name, "ok": True, "dry_run": True, "run_dir": str(run_dir), "steps": checked})
        return
    unknown = sorted((set(a.only) | set(a.force)) - {"all"} - {s.name for s in steps})
    if unknown:
        ap.error(f"unknown step(s) {unknown} in profile {a.profile}; its steps: {', '.join(s.name for s in steps)}")

    try:  # one pipeline per run folder: a second one is refused, naming the first (pid, host, start)
        with hold(run_dir):
            _run_steps(a, name, run_dir, steps)
    except RunFolderError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def _run_steps(a, name: str, run_dir: Path, steps: list[Step]) -> None:
    """Every wave of the profile's steps, then the results page and the summary line."""
    log, t_all = [], time.time()
    for wave in waves(steps):
        wave = [s for s in wave if not a.only or s.name in a.only]
        if not wave:
            continue
        shown = wave if len(wave) <= 8 else wave[:3]
        for s in shown:
            print(f"[pipeline] {s.name} ({' '.join(s.command[1:3]) if s.command else s.notebook}) ...", flush=True)
        if len(shown) < len(wave):
            print(f"[pipeline] ... and {len(wave) - len(shown)} more steps like these", flush=True)
        try:
            results = run_wave(wave, run_dir, a.figures_dir, lambda s: "all" in a.force or s.name in a.force, a.jobs)
        except KeyboardInterrupt:
            print(
                "[pipeline] stopped; finished steps are kept, a rerun continues from there", file=sys.stderr, flush=True
            )
            emit({"profile": name, "ok": False, "interrupted": True, "steps": log})
            sys.exit(130)
        log += [{"step": s.name, "status": st, "seconds": sec} for s, st, sec, _ in results]
        failed = [(s, e) for s, _, _, e in results if e is not None]
        for _, e in failed:
            print(f"[pipeline] FAILED {e}", file=sys.stderr, flush=True)
        if failed:
            emit(
                {
                    "profile": name,
                    "ok": False,
                    "failed_step": failed[0][0].name,
                    "error": str(failed[0][1]).splitlines()[0],
                    "steps": log,
                }
            )
            sys.exit(1)
    md = results_markdown(name, run_dir, log)
    (run_dir / "results.md").write_text(md)
    out = resolve(a.figures_dir) / f"results_{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    emit(
        {
            "profile": name,
            "ok": True,
            "run_dir": str(run_dir),
            "results": str(out),
            "steps": log,
            "seconds": round(time.time() - t_all, 1),
        }
    )


if __name__ == "__main__":
    main()
