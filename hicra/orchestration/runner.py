"""The pipeline's runner: steps, stamps, and waves of steps run in parallel under the core budget.

A step is a notebook executed under papermill with parameters, or a CLI command (a study's training run). It is
skipped when its stamp says nothing it depends on changed (notebook, parameters, hashed input files) and its
outputs exist; a ``keep_done`` step counts as done once its outputs exist. ``run_wave`` runs independent steps
together, each in its own process with its share of the CPU threads, reports progress every 30 s, and passes
Ctrl-C on to them. Profiles (``hicra.orchestration.profiles``) say which steps; ``hicra.pipeline`` is the command.

    from hicra.orchestration.runner import Step, run_wave, waves
"""

from __future__ import annotations

import ast
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

from hicra.stepkit.steps import PARENT_WATCH, install_signal_handlers
from hicra.store.io import write_json
from hicra.store.paths import REPO_ROOT, resolve


@dataclasses.dataclass
class Step:
    name: str
    notebook: str = ""  # the notebook it runs ("" for a CLI step: ``command``)
    params: dict = dataclasses.field(default_factory=dict)  # the notebook's parameters
    inputs: list = dataclasses.field(default_factory=list)  # files / folders (relative to the repo) it depends on
    outputs: list = dataclasses.field(default_factory=list)  # files that must exist for the step to count as done
    needs: tuple | None = None  # steps that must finish first (None: every earlier step)
    progress: tuple | None = None  # (JSONL file, total): the pipeline reports its last line's "step" / total
    command: list | None = None  # a CLI step (e.g. python -m hicra.train ...) instead of a notebook
    keep_done: bool = False  # done once its outputs exist, whatever changed since (a study's finished runs)


# --------------------------------------------------------------------------
# stamps: skip what did not change


def _hash_paths(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        full = resolve(p)
        files = (
            sorted(x for x in full.rglob("*") if x.is_file() and "__pycache__" not in x.parts)
            if full.is_dir()
            else [full]
            if full.exists()
            else []
        )
        h.update(f"{p}:{len(files)}".encode())
        for f in files:
            h.update(str(f.relative_to(REPO_ROOT) if f.is_relative_to(REPO_ROOT) else f).encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def step_key(step: Step, figures_dir: str, root: Path = REPO_ROOT) -> str:
    """A step's stamp: its notebook or command, parameters, declared ``inputs`` (data, recipes) and every
    ``hicra`` module its code imports (``code_files``): editing any of them re-runs the step."""
    code = [str(p) for p in code_files(step, root)]
    blob = json.dumps(
        {
            "nb": step.command or _hash_paths([str(notebook_path(step.notebook))]),
            "params": step.params,
            "figures": figures_dir,
            "inputs": _hash_paths(step.inputs),
            "code": _hash_paths(code),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def code_files(step: Step, root: Path = REPO_ROOT) -> list[Path]:
    """The ``hicra`` source files a step runs: the transitive closure of ``hicra`` imports (module-level and
    inside functions, read with ``ast``) from its entry point: a command's ``-m hicra.<module>``, or the code
    cells of its notebook. Package ``__init__`` files and the prompts a module reads come along."""

    if step.command:
        cmd = [str(c) for c in step.command]
        entries = {cmd[i + 1] for i, c in enumerate(cmd[:-1]) if c == "-m" and cmd[i + 1].startswith("hicra")}
        sources = []
    else:
        import nbformat

        nb = nbformat.read(notebook_path(step.notebook), as_version=4)
        entries, sources = (
            set(),
            [
                "\n".join(line for line in c.source.splitlines() if not line.lstrip().startswith(("%", "!")))
                for c in nb.cells
                if c.cell_type == "code"
            ],
        )

    def file_of(module: str) -> Path | None:
        base = root / Path(*module.split("."))
        for f in (base.with_suffix(".py"), base / "__init__.py"):
            if f.exists():
                return f
        return None

    def imported(tree) -> set[str]:
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name.split(".")[0] == "hicra"}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hicra":
                out.add(node.module)
                out |= {f"{node.module}.{a.name}" for a in node.names if file_of(f"{node.module}.{a.name}")}
        return out

    todo = set(entries)
    for src in sources:
        try:
            todo |= imported(ast.parse(src))
        except SyntaxError:
            todo.add("hicra")  # an unparsable cell: the whole package, to be safe
    seen, files = set(), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}  # importing a.b.c runs a and a.b first
        f = file_of(mod)
        if f is None:
            continue
        files.add(f)
        todo |= imported(ast.parse(f.read_text()))
    prompts = list((root / "hicra" / "prompts").glob("*.md"))  # package data a module reads by its file name
    sources = [f.read_text() for f in files]
    files |= {p for p in prompts if any(p.name in src for src in sources)}
    return sorted(files)


def command_line(command: list) -> list[str]:
    """A step's command with ``python`` and ``accelerate launch`` bound to this environment's interpreter."""
    cmd = [str(c) for c in command]
    if cmd[:2] == ["accelerate", "launch"]:
        return [sys.executable, "-m", "accelerate.commands.launch", *cmd[2:]]
    return [sys.executable if c == "python" else c for c in cmd]


def _run_command(step: Step, echo) -> None:
    """Run a CLI step; Ctrl-C (a KeyboardInterrupt here) reaches it as SIGINT, so it can stop cleanly."""
    p = subprocess.Popen(command_line(step.command), cwd=REPO_ROOT, stdout=echo, stderr=echo)
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


def notebook_path(notebook: str) -> Path:
    """A step's notebook: an absolute path, or a name under notebooks/."""
    return Path(notebook) if Path(notebook).is_absolute() else REPO_ROOT / "notebooks" / notebook


class StepFailed(RuntimeError):
    pass


def run_step(step: Step, run_dir: Path, figures_dir: str, force: bool = False, echo=None) -> str:
    """Execute one step (notebook or command) unless its stamp says nothing changed; returns "ran" or "skipped".

    ``echo``: a file that receives the step's stdout and stderr as they come (the step's log)."""
    stamp = run_dir / ".stamps" / f"{step.name}.json"
    key = step_key(step, figures_dir)
    done = step.keep_done or (stamp.exists() and json.loads(stamp.read_text()).get("key") == key)
    if done and not force and all(resolve(o).exists() for o in step.outputs):
        return "skipped"
    t0 = time.time()
    if step.command:
        _run_command(step, echo)
    else:
        _run_notebook(step, run_dir, figures_dir, echo)
    missing = [o for o in step.outputs if not resolve(o).exists()]
    if missing:
        what = f"`{' '.join(step.command[:4])} ...`" if step.command else notebook_path(step.notebook).name
        raise StepFailed(f"step {step.name}: {what} ran but did not write {missing}")
    write_json(
        stamp, {"key": key, "seconds": round(time.time() - t0, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    )
    return "ran"


KERNEL_START_TRIES = 3  # jupyter_client picks a free port and the kernel binds it later; kernels started at the
# same moment can take each other's port ("Address already in use", then "Kernel died before replying to kernel_info")


def _run_notebook(step: Step, run_dir: Path, figures_dir: str, echo) -> None:
    """Execute the step's notebook under papermill; a failing cell becomes a StepFailed naming it."""
    import papermill as pm

    out = run_dir / "executed" / f"{step.name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for attempt in range(1, KERNEL_START_TRIES + 1):
            try:
                pm.execute_notebook(
                    str(notebook_path(step.notebook)),
                    str(out),
                    cwd=str(REPO_ROOT / "notebooks"),
                    parameters={**step.params, "figures_dir": figures_dir},
                    progress_bar=False,
                    stdout_file=echo,
                    stderr_file=echo,
                    kernel_name="python3",
                )
                break
            except RuntimeError as e:  # the kernel never started, so no cell ran: starting again is safe
                if "before replying to kernel_info" not in str(e) or attempt == KERNEL_START_TRIES:
                    raise
                print(
                    f"[pipeline] {step.name}: its kernel died while starting ({e}; kernels started together can "
                    f"race for a TCP port); starting it again ({attempt + 1}/{KERNEL_START_TRIES})",
                    file=echo or sys.stderr,
                    flush=True,
                )
                time.sleep(1 + attempt)
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
            f"step {step.name}: {notebook_path(step.notebook).name} failed in cell {e.cell_index - injected + 1} "
            f"(`{first.strip()[:80]}`): {e.ename}: {e.evalue}\n  executed copy with the traceback: {out}"
        ) from None


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
    return [
        sys.executable,
        "-m",
        "hicra.pipeline",
        "--step_json",
        json.dumps(dataclasses.asdict(step)),
        "--run_dir",
        str(run_dir),
        "--figures_dir",
        figures_dir,
    ] + (["--force", "all"] if force else [])


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
    together, each with OMP_NUM_THREADS = cores / their number; a step alone gets every core, explicitly).

    Returns ``(step, status, seconds, error)`` for each step; a failure does not
    stop its siblings (their stamps let a rerun skip them). Every ``tick``
    seconds a line reports the running steps. Ctrl-C (or SIGINT to this process
    alone; ``main`` turns SIGTERM into the same) is passed on to the step
    processes, which shut their kernels down.
    Each step's stderr goes to ``<run_dir>/executed/<step>.log``.
    """
    install_signal_handlers()
    width = max(1, min(jobs, len(wave)))
    env = {**os.environ, PARENT_WATCH: "1"}  # a step (and what it starts) stops if this pipeline is killed
    # every step's thread count is set, a wave of one too (torch's own default follows the machine's load): a user's
    # own OMP_NUM_THREADS wins; the training profiles also pass --torch_threads, the sandbox build its torch_threads
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // width)))
    if width > 1:
        names = [s.name for s in wave]
        print(
            f"[pipeline] together ({width} at once, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}): "
            + ", ".join(names if len(names) <= 8 else names[:3] + [f"... ({len(names)} steps)"]),
            flush=True,
        )
    procs, started, finished, lock, stopping = [], {}, [], threading.Lock(), threading.Event()

    def one(step):
        log = run_dir / "executed" / f"{step.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with lock:
            if stopping.is_set():
                return step, "cancelled", 0.0, None
            with open(log, "w") as err:
                p = subprocess.Popen(
                    _child(step, run_dir, figures_dir, force(step)),
                    env=env,
                    cwd=REPO_ROOT,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    start_new_session=True,
                )  # signals reach it once, through run_wave
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
        status = (
            res.get("status")
            if p.returncode == 0 and res.get("status") in ("ran", "skipped")
            else "stopped"
            if stopping.is_set()
            else "failed"
        )
        err = (
            None
            if status in ("ran", "skipped")
            else StepFailed(res.get("error") or f"step {step.name} exited with code {p.returncode}; its log: {log}")
        )
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
