"""Step scaffolding: the fields, folder and parameters every step shares, its summary line and its signals.

A step is one function ``run(cfg) -> summary`` on a ``StepConfig`` subclass, called by its notebook and by its
CLI twin. ``start_step`` makes the run folder and records ``params.json``; ``from_params`` builds a notebook's
config from its parameters cell; ``cli_main`` is a step's ``python -m`` face (a user's mistake is one ``error:``
line); ``emit`` prints the one-line JSON summary; ``install_signal_handlers`` makes SIGTERM stop a step as Ctrl-C
does.

    from hicra.stepkit.steps import StepConfig, start_step, emit
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from hicra.stepkit.cli import from_dict, parse_cli
from hicra.store.io import _clean, write_json
from hicra.store.paths import resolve

# --------------------------------------------------------------------------
# the fields, folder and parameters every step shares


@dataclasses.dataclass
class StepConfig:
    """Fields of every step: its run folder, where its figures go and the tag in their names
    (``fig4_errors_<tag>.png``). Each step's config subclasses this and sets its own ``run_dir`` default."""

    run_dir: str = "runs/step"  # the step's folder: its params.json, tables and caches
    figures_dir: str = "figures"  # where figures go (PNG + PDF)
    tag: str = "sandbox"  # suffix of figure and table names, e.g. fig4_errors_<tag>.png
    figure_note: str = ""  # a line written under each of the step's figures (the rehearsal's label)


def start_step(cfg, name: str) -> Path:
    """Make the step's run folder and record its parameters (``params.json``); returns the folder."""
    out = resolve(cfg.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "params.json", {"step": name, **dataclasses.asdict(cfg)})
    return out


def from_params(cls, namespace: dict):
    """A notebook's config from its parameters cell: every field of ``cls`` found in ``namespace`` (the
    notebook's ``globals()``), so a field is named once, in the parameters cell."""
    return from_dict(cls, {f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace})


# --------------------------------------------------------------------------
# the summary line, the command line's errors and the signals

DEBUG = "HICRA_DEBUG"  # set to 1: a user's mistake raises with its traceback instead of one error line


def user_errors(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, with what a user can fix (a missing input file or folder, a model path that does
    not exist, an unknown name, a bad value: ``FileNotFoundError`` / ``ValueError`` with a message that says what
    to do) printed as one ``error:`` line and exit code 2 instead of a traceback (``HICRA_DEBUG=1`` keeps it)."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        if os.environ.get(DEBUG) == "1":
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def cli_main(cls, run, argv=None) -> dict:
    """A step's ``python -m`` face: the command line parsed into ``cls`` (``hicra.stepkit.cli.parse_cli``: ``--help``,
    "did you mean" for an unknown option), the step run under ``user_errors``, its summary printed last."""
    install_signal_handlers()
    summary = user_errors(run, parse_cli(cls, argv))
    emit(summary)
    return summary


def emit(summary: dict) -> None:
    """Print the step's one-line JSON summary (always the last stdout line)."""
    sys.stdout.flush()
    print(json.dumps(_clean(summary)), flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, whatever disposition was inherited: a script's background
    job (`make test &`) starts with SIGINT ignored, and Python then installs no handler of its own; a
    scheduler's SIGTERM then stops a step like Ctrl-C does (whole metrics lines, a resumable run)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        if os.environ.get(PARENT_WATCH) == "1":
            watch_parent()


# set by the pipeline for its steps: each CLI it starts (and what those start) stops when its parent is gone
PARENT_WATCH = "HICRA_WATCH_PARENT"
_watching = False


def watch_parent(every: float = 1.0) -> None:
    """Stop this process as Ctrl-C would (SIGTERM to itself: the handler above, a resumable stop) once its parent
    is gone: a pipeline killed with SIGKILL cannot stop its steps, and they would train on for hours."""
    global _watching
    if _watching:
        return
    _watching, parent = True, os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        print(f"[hicra] parent process {parent} is gone: stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
