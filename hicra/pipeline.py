"""Regenerate every figure: the notebooks in order, under papermill, with a profile's parameters.

    python -m hicra.pipeline --profile sandbox        # `make figures` / `make demo`
    python -m hicra.pipeline --profile smollm-cpu     # real-model analyses on CPU
    python -m hicra.pipeline --profile sandbox --force 02_train_hicra

Each step is one notebook execution; its executed copy goes to
``runs/<run>/executed/``. Steps that do not depend on each other (``Step.needs``)
run at the same time, up to ``--jobs``, each kernel with its share of the CPU
threads (``OMP_NUM_THREADS``): on 2 cores the gram mining and the three sandbox
training runs finish together in ~6 min, against ~9 min one after another.
A step is skipped when nothing it depends on changed: the notebook, its
parameters, the files it reads (library modules, configs, earlier steps'
outputs) are hashed into a stamp under ``runs/<run>/.stamps/``, and its
declared outputs must still exist. A failing step stops the pipeline (after
its siblings finish) with a message naming the notebook and the cell. At the
end, ``results_<profile>.md`` in ``figures/`` gathers the headline numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from hicra.config import REPO_ROOT, emit, install_signal_handlers, resolve, write_json

LIB = ["hicra/config.py", "hicra/plotting.py"]
LABEL = {"grpo": "GRPO", "hicra": "HICRA", "entropy_reg": "entropy_reg", "fork_tokens": "fork_tokens"}


@dataclasses.dataclass
class Step:
    name: str
    notebook: str
    params: dict
    inputs: list          # files / folders (relative to the repo) whose contents the step depends on
    outputs: list         # files that must exist for the step to count as done
    needs: tuple | None = None   # steps that must finish first (None: every earlier step)
    progress: tuple | None = None  # (JSONL file, total): the pipeline reports its last line's "step" / total
    command: list | None = None    # a CLI step (e.g. python -m hicra.train ...) instead of a notebook
    keep_done: bool = False        # done once its outputs exist, whatever changed since (a study's finished runs)


def sandbox_profile(run: str = "demo", steps: int = 60, val_n: int = 500, methods=("grpo", "hicra", "entropy_reg")):
    """Sized for the 15-minute demo on 2 cores (v2 build included); `make study` is the multi-seed comparison.
    Validation is the recipe's precise set: avg@2 on all 399 validation tasks, every 20 steps."""
    r = f"runs/{run}"
    train = [f"{r}/train-{m}-s0" for m in methods]
    sb = ["hicra/sandbox", "hicra/generate.py", "hicra/decode.py", "hicra/tagger.py"]
    out = [
        Step("00_sandbox", "00_sandbox.ipynb", {"run_dir": r, "n_calibration": 100}, sb + LIB, [f"{r}/sandbox.json"]),
        Step(
            "01_strategic_grams",
            "01_strategic_grams.ipynb",
            {"run_dir": f"{r}/grams", "tag": "sandbox", "n_prompts": 400, "samples_per_prompt": 2},
            sb + LIB + ["hicra/grams", "hicra/figures.py", "data/grams"],
            [f"{r}/grams/grams_summary.json"],
            needs=("00_sandbox",),
        ),
    ]
    for m, d in zip(methods, train):
        out.append(
            Step(
                f"02_train_{m}",
                "02_train.ipynb",
                {
                    "run_dir": d,
                    "method": m,
                    "seed": 0,
                    "max_steps": steps,
                    "val_every": 20,
                    "val_n": val_n,
                    "overwrite": True,
                },  # a rerun replaces the step's run; its files move to replaced-*/
                sb
                + LIB
                + [
                    "configs/sandbox.yaml",
                    "hicra/train.py",
                    "hicra/trainer.py",
                    "hicra/advantage.py",
                    "hicra/dynamics.py",
                    "hicra/metrics.py",
                ],
                [f"{d}/summary.json"],
                needs=("00_sandbox",),
                progress=(f"{d}/metrics.jsonl", steps),
            )
        )  # training uses the build's ground-truth grams, not 01's
    trained = ("00_sandbox",) + tuple(f"02_train_{m}" for m in methods)
    out += [
        Step(
            "03_dynamics",
            "03_dynamics.ipynb",
            {"run_dir": r, "runs": train, "tag": "sandbox"},
            LIB + ["hicra/figures.py"] + [f"{d}/metrics.jsonl" for d in train],
            [f"{r}/final_accuracy.csv"],
            trained,
        ),
        Step(
            "04_error_analysis",
            "04_error_analysis.ipynb",
            {"run_dir": f"{r}/errors", "runs": train, "tag": "sandbox"},
            LIB + ["hicra/errors.py"] + [f"{d}/summary.json" for d in train],
            [f"{r}/errors/errors.json"],
            trained,
        ),
        Step(
            "05_fork_tokens",
            "05_fork_tokens.ipynb",
            {
                "run_dir": f"{r}/forks",
                "tag": "sandbox",
                "n_prompts": 64,
                "models": {
                    "warm start|before RL": "sandbox",
                    **{f"{LABEL[m]}|after RL": f"{d}/final" for m, d in zip(methods, train) if m != "entropy_reg"},
                },
            },
            sb + LIB + ["hicra/forks.py", "hicra/metrics.py"] + [f"{d}/summary.json" for d in train],
            [f"{r}/forks/forks.json"],
            trained,
        ),
        Step(
            "06_evaluate",
            "06_evaluate.ipynb",
            {
                "run_dir": f"{r}/eval",
                "tag": "sandbox",
                "limit": 100,
                "k": {"sandbox": 2},
                "models": {
                    "Base": "sandbox",
                    **{LABEL[m]: f"{d}/final" for m, d in zip(methods, train) if m != "entropy_reg"},
                },
            },
            sb + LIB + ["hicra/evaluate.py", "hicra/rewards.py"] + [f"{d}/summary.json" for d in train],
            [f"{r}/eval/eval.json"],
            trained,
        ),
    ]
    return out


def smollm_profile(run: str = "smollm-cpu"):
    r = f"runs/{run}"
    return [Step("01_strategic_grams", "01_strategic_grams.ipynb",
                 {"run_dir": f"{r}/grams", "tag": "smollm2", "source": "smollm2", "n_prompts": 96,
                  "temperature": 0.7, "min_reward": 0.0, "veto": True},
                 LIB + ["hicra/grams", "hicra/generate.py", "hicra/decode.py", "hicra/figures.py"],
                 [f"{r}/grams/grams_summary.json"]),
            Step("05_fork_tokens", "05_fork_tokens.ipynb",
                 {"run_dir": f"{r}/forks", "tag": "smollm2", "source": "gsm8k", "n_prompts": 32, "temperature": 0.7,
                  "max_new_tokens": 256, "models": {"SmolLM2-135M-Instruct|before RL": "smollm2"},
                  "sg_file": f"{r}/grams/strategic_grams.json"},
                 LIB + ["hicra/forks.py", f"{r}/grams/strategic_grams.json"], [f"{r}/forks/forks.json"]),
            Step("06_evaluate", "06_evaluate.ipynb",
                 {"run_dir": f"{r}/eval", "tag": "smollm2", "models": {"SmolLM2-135M-Instruct": "smollm2"},
                  "benchmarks": ["gsm8k", "math500"], "limit": 50, "temperature": 0.6, "top_p": 0.95,
                  "max_new_tokens": 512, "batch_size": 25},
                 LIB + ["hicra/evaluate.py", "hicra/rewards.py"], [f"{r}/eval/eval.json"])]


def _study(name):
    def make(**kw):
        from hicra import study
        return getattr(study, name)(**kw)
    return make


PROFILES = {"sandbox": sandbox_profile, "smollm-cpu": smollm_profile, "study": _study("study_profile"),
            "study-quick": _study("quick_profile"), "study-alpha": _study("alpha_profile")}
RUN = {"sandbox": "demo", "study-alpha": "study"}  # default folder under runs/ (else the profile's name)


# --------------------------------------------------------------------------
# stamps: skip what did not change


def _hash_paths(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        full = resolve(p)
        files = sorted(x for x in full.rglob("*") if x.is_file() and "__pycache__" not in x.parts) if full.is_dir() \
            else [full] if full.exists() else []
        h.update(f"{p}:{len(files)}".encode())
        for f in files:
            h.update(str(f.relative_to(REPO_ROOT) if f.is_relative_to(REPO_ROOT) else f).encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def step_key(step: Step, figures_dir: str) -> str:
    blob = json.dumps({"nb": step.command or _hash_paths([str(_notebook(step))]), "params": step.params,
                       "figures": figures_dir, "inputs": _hash_paths(step.inputs)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _run_command(step: Step, stamp: Path, key: str, echo) -> str:
    """Run a CLI step; Ctrl-C (a KeyboardInterrupt here) reaches it as SIGINT, so it can stop cleanly."""
    t0 = time.time()
    p = subprocess.Popen([sys.executable if c == "python" else c for c in step.command], cwd=REPO_ROOT,
                         stdout=echo, stderr=echo)
    try:
        rc = p.wait()
    except KeyboardInterrupt:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
        raise
    if rc:
        raise StepFailed(f"step {step.name}: `{' '.join(step.command[:4])} ...` exited with code {rc}")
    missing = [o for o in step.outputs if not resolve(o).exists()]
    if missing:
        raise StepFailed(f"step {step.name}: the command ran but did not write {missing}")
    write_json(stamp, {"key": key, "seconds": round(time.time() - t0, 1),
                       "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return "ran"


def _notebook(step: Step) -> Path:
    return Path(step.notebook) if Path(step.notebook).is_absolute() else REPO_ROOT / "notebooks" / step.notebook


class StepFailed(RuntimeError):
    pass


def run_step(step: Step, run_dir: Path, figures_dir: str, force: bool = False, echo=None) -> str:
    """Execute one notebook unless its stamp says nothing changed; returns "ran" or "skipped".

    ``echo``: a file that receives the kernel's stdout and stderr as they come (the step's log)."""
    import papermill as pm
    stamp = run_dir / ".stamps" / f"{step.name}.json"
    key = step_key(step, figures_dir)
    done = step.keep_done or (stamp.exists() and json.loads(stamp.read_text()).get("key") == key)
    if done and not force and all(resolve(o).exists() for o in step.outputs):
        return "skipped"
    if step.command:
        return _run_command(step, stamp, key, echo)
    out = run_dir / "executed" / f"{step.name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        pm.execute_notebook(str(_notebook(step)), str(out), cwd=str(REPO_ROOT / "notebooks"),
                            parameters={**step.params, "figures_dir": figures_dir}, progress_bar=False,
                            stdout_file=echo, stderr_file=echo,
                            kernel_name="python3")
    except pm.PapermillExecutionError as e:
        first = next((ln for ln in (e.source or "").splitlines() if ln.strip() and not ln.startswith("#")), "")
        import nbformat

        cells = [
            c
            for c in nbformat.read(out, as_version=4).cells
            if "papermill-error-cell-tag" not in c.metadata.get("tags", [])
        ]  # papermill's banner cells
        injected = sum("injected-parameters" in c.metadata.get("tags", []) for c in cells[: e.cell_index])
        raise StepFailed(
            f"step {step.name}: {_notebook(step).name} failed in cell {e.cell_index - injected + 1} "
            f"(`{first.strip()[:80]}`): {e.ename}: {e.evalue}\n  executed copy with the traceback: {out}"
        ) from None
    missing = [o for o in step.outputs if not resolve(o).exists()]
    if missing:
        raise StepFailed(f"step {step.name}: {_notebook(step).name} ran but did not write {missing}")
    write_json(
        stamp, {"key": key, "seconds": round(time.time() - t0, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    )
    return "ran"


# --------------------------------------------------------------------------
# results summary


def results_markdown(profile: str, run_dir: Path, log: list[dict]) -> str:
    """Each step's headline numbers, from the files the steps wrote."""
    shown = run_dir.relative_to(REPO_ROOT) if run_dir.is_relative_to(REPO_ROOT) else run_dir
    lines = [f"# Results: profile `{profile}`", "", f"Run folder: `{shown}`;"
             " regenerate with `python -m hicra.pipeline --profile " + profile + "`.", "",
             "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {x['step']} | {x['status']} | {x.get('seconds', '')} |" for x in log]

    def j(p):
        p = run_dir / p
        return json.loads(p.read_text()) if p.exists() else None
    if (s := j("sandbox.json")):
        lines += ["", "## Sandbox warm start", f"val accuracy {s['val_accuracy']:.3f}; oracle failures {s['errors']}"]
    if (g := j("grams/grams_summary.json")):
        lines += ["", "## Strategic grams", f"{g['n_grams']} grams from {g['n_candidates']} candidates, "
                  f"{g['n_successful']} successful rollouts; annotator {g['annotator']}"]
        if g.get("precision") is not None:
            lines.append(f"token-level precision {g['precision']:.3f}, recall {g['recall']:.3f}"
                         + (f"; seeds overlapping the sandbox held out: precision {g['holdout']['precision']:.3f}, "
                            f"recall {g['holdout']['recall']:.3f}" if g.get("holdout") else ""))
    if (run_dir / "final_accuracy.csv").exists():
        lines += ["", "## Final validation accuracy (03_dynamics)", (run_dir / "final_accuracy.csv").read_text()]
    if (e := j("errors/errors.json")):
        lines += ["", "## Error analysis (oracle)", f"{e['n_failed']} failed rollouts; Planning & Strategy share, "
                  "first -> last step bin: " + ", ".join(f"{m} {v['first']:.2f} -> {v['last']:.2f}"
                                                         for m, v in e["planning_share"].items())]
    if (f := j("forks/forks.json")):
        lines += [
            "",
            "## Planning vs fork tokens",
            "| model | stage | planning that is high-entropy | high-entropy that is planning |",
            "|---|---|---|---|",
        ] + [
            f"| {r['model']} | {r['stage']} | {r['planning_is_fork']:.3f} | {r['fork_is_planning']:.3f} |"
            for r in f["rows"]
        ]
    if (st := j("study.json")):
        lines += ["", f"## The study ({st['runs']} finished runs; seeds per arm {st['arms']})",
                  "| paper claim | result | verdict |", "|---|---|---|"]
        lines += [f"| {c['claim']} | {c['result']} | {c['verdict']} |" for c in st["claims"]]
    if (run_dir / "eval" / "table1.md").exists():
        lines += [
            "",
            "## Evaluation (Table 1 layout; avg@k in %, 95 % bootstrap CI)",
            (run_dir / "eval" / "table1.md").read_text(),
        ]
    return "\n".join(lines) + "\n"


def waves(steps: list[Step]) -> list[list[Step]]:
    """Group steps into waves: each wave's steps need only steps of earlier waves."""
    names = [s.name for s in steps]
    level: dict[str, int] = {}
    for i, s in enumerate(steps):
        needs = names[:i] if s.needs is None else s.needs
        unknown = [n for n in needs if n not in level]
        if unknown:
            raise ValueError(f"step {s.name} needs {unknown}, which are not earlier steps of the profile")
        level[s.name] = 1 + max((level[n] for n in needs), default=-1)
    return [[s for s in steps if level[s.name] == k] for k in range(max(level.values(), default=-1) + 1)]


def _child(step: Step, run_dir: Path, figures_dir: str, force: bool) -> list[str]:
    """Command line that runs one step in its own process (``python -m hicra.pipeline --step_json``)."""
    return [sys.executable, "-m", "hicra.pipeline", "--step_json", json.dumps(dataclasses.asdict(step)),
            "--run_dir", str(run_dir), "--figures_dir", figures_dir] + (["--force", "all"] if force else [])


def _progress(step: Step, t0: float) -> str:
    """`name m:ss` plus, for steps that declare a JSONL progress file, `step k/n` from its last line."""
    minutes, seconds = divmod(int(time.time() - t0), 60)
    out = f"{step.name} {minutes}:{seconds:02d}"
    if step.progress:
        path, total = step.progress
        try:
            with open(resolve(path), "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 4096))
                out += f" (step {json.loads(f.read().splitlines()[-1])['step']}/{total})"
        except (OSError, IndexError, KeyError, ValueError):
            pass
    return out


def run_wave(wave: list[Step], run_dir: Path, figures_dir: str, force, jobs: int, tick: float = 30.0) -> list[tuple]:
    """Run a wave's steps, up to ``jobs`` at once, each in its own process (when several run
    together, each with OMP_NUM_THREADS = cores / their number).

    Returns ``(step, status, seconds, error)`` for each step; a failure does not
    stop its siblings (their stamps let a rerun skip them). Every ``tick``
    seconds a line reports the running steps. Ctrl-C (or SIGINT to this process
    alone; ``main`` turns SIGTERM into the same) is passed on to the step
    processes, which shut their kernels down.
    Each step's stderr goes to ``<run_dir>/executed/<step>.log``.
    """
    install_signal_handlers()
    width = max(1, min(jobs, len(wave)))
    env = {**os.environ}
    if width > 1:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // width)))  # a user's own setting wins
        names = [s.name for s in wave]
        print(f"[pipeline] together ({width} at once, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}): "
              + ", ".join(names if len(names) <= 8 else names[:3] + [f"... ({len(names)} steps)"]), flush=True)
    procs, started, finished, lock, stopping = [], {}, [], threading.Lock(), threading.Event()

    def one(step):
        log = run_dir / "executed" / f"{step.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with lock:
            if stopping.is_set():
                return step, "cancelled", 0.0, None
            with open(log, "w") as err:
                p = subprocess.Popen(_child(step, run_dir, figures_dir, force(step)), env=env, cwd=REPO_ROOT,
                                     stdout=subprocess.PIPE, stderr=err, text=True,
                                     start_new_session=True)  # signals reach it once, through run_wave
            procs.append(p)
            started[step.name] = t0 = time.time()
        stdout, _ = p.communicate()
        with lock:
            started.pop(step.name, None)
            finished.append(step.name)
        try:
            res = json.loads((stdout.strip().splitlines() or ["{}"])[-1])
        except json.JSONDecodeError:
            res = {}
        status = res.get("status") if p.returncode == 0 and res.get("status") in ("ran", "skipped") else \
            "stopped" if stopping.is_set() else "failed"
        err = None if status in ("ran", "skipped") else StepFailed(
            res.get("error") or f"step {step.name} exited with code {p.returncode}; its log: {log}")
        print(f"[pipeline] {step.name}: {status} in {time.time() - t0:.0f} s", flush=True)
        return step, status, round(time.time() - t0, 1), err

    pool = ThreadPoolExecutor(width)
    futures = [pool.submit(one, s) for s in wave]
    by_name = {s.name: s for s in wave}
    try:
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=tick)
            with lock:
                running = [_progress(by_name[n], t) for n, t in started.items()]
            if pending and running:
                count = f"{len(finished)}/{len(wave)} done · " if len(wave) > width else ""
                print(f"[pipeline] {count}running: " + " · ".join(running), flush=True)
        return [f.result() for f in futures]
    except KeyboardInterrupt:
        with lock:
            stopping.set()
        print("[pipeline] interrupted: stopping the running steps ...", file=sys.stderr, flush=True)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="sandbox", choices=sorted(PROFILES))
    ap.add_argument("--run", default=None,
                    help="run folder: a name under runs/ or an absolute path (default: demo, or the profile name)")
    ap.add_argument("--figures_dir", default="figures")
    ap.add_argument(
        "--force", nargs="*", default=[], help="step names to rerun even if unchanged ('all' for every step)"
    )
    ap.add_argument("--only", nargs="*", default=[], help="run just these steps")
    ap.add_argument("--jobs", type=int, default=4, help="independent steps run at once (1: one after another)")
    ap.add_argument("--profile_args", default="{}", help="JSON keyword arguments of the profile, e.g. "
                    '\'{"steps": 50, "arms": {"grpo": 3, "hicra": 3}}\' for the study profiles')
    ap.add_argument("--step_json", help=argparse.SUPPRESS)   # internal: run one step (see run_wave)
    ap.add_argument("--run_dir", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    install_signal_handlers()
    if a.step_json:
        step = Step(**json.loads(a.step_json))
        try:
            emit({"step": step.name, "status": run_step(step, Path(a.run_dir), a.figures_dir, force=bool(a.force),
                                                        echo=sys.stderr)})
        except StepFailed as e:
            emit({"step": step.name, "status": "failed", "error": str(e)})
            sys.exit(1)
        return
    try:
        kwargs = json.loads(a.profile_args)
        steps = PROFILES[a.profile](**kwargs, **({"run": a.run} if a.run else {}))
    except (json.JSONDecodeError, TypeError) as e:
        ap.error(f"--profile_args {a.profile_args!r}: {e}")
    unknown = sorted(set(a.only) | (set(a.force) - {"all"}) - {s.name for s in steps})
    if unknown:
        ap.error(f"unknown step(s) {unknown} in profile {a.profile}; its steps: {', '.join(s.name for s in steps)}")
    run_dir = resolve(a.run if a.run and a.run.startswith("/") else f"runs/{a.run or RUN.get(a.profile, a.profile)}")
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
            print("[pipeline] stopped; finished steps are kept, a rerun continues from there",
                  file=sys.stderr, flush=True)
            emit({"profile": a.profile, "ok": False, "interrupted": True, "steps": log})
            sys.exit(130)
        log += [{"step": s.name, "status": st, "seconds": sec} for s, st, sec, _ in results]
        failed = [(s, e) for s, _, _, e in results if e is not None]
        for _, e in failed:
            print(f"[pipeline] FAILED {e}", file=sys.stderr, flush=True)
        if failed:
            emit({"profile": a.profile, "ok": False, "failed_step": failed[0][0].name,
                  "error": str(failed[0][1]).splitlines()[0], "steps": log})
            sys.exit(1)
    md = results_markdown(a.profile, run_dir, log)
    (run_dir / "results.md").write_text(md)
    out = resolve(a.figures_dir) / f"results_{a.profile}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    emit({"profile": a.profile, "ok": True, "run_dir": str(run_dir), "results": str(out), "steps": log,
          "seconds": round(time.time() - t_all, 1)})


if __name__ == "__main__":
    main()
