"""Config plumbing shared by every step: YAML recipe + CLI overrides -> dataclass.

Each step (``python -m hicra.<step> CONFIG``) and its notebook build the same
config dataclass, so a papermill parameter, a YAML key and a ``--key value``
flag mean the same thing. Unknown keys are an error that lists the valid ones.
Every step ends by printing one JSON summary line (``emit``).

    cfg = load_config(SandboxConfig, "configs/sandbox.yaml", ["--seed", "3"])
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import yaml

from hicra.io import _clean, read_yaml_mapping, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve(path) -> Path:
    """Relative paths are taken from the repository root, so notebooks and CLIs agree."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(key: str, value, tp):
    """``value`` as the field type ``tp`` (YAML or CLI text accepted: ``1e-4`` is a float, ``true`` a bool),
    or a ValueError naming the key and the expected type. Unions try their members in order."""
    import enum
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(key, value, args)
    if tp is typing.Any or tp is None:
        return value
    if tp is bool:
        return _coerce_bool(key, value)
    if tp in (int, float):
        return _coerce_number(key, value, tp)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{key}: expected a string, got {value!r}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value if isinstance(value, (str, tp)) else coerce(key, value, str)
    if origin in (list, tuple) or tp in (list, tuple):
        return _coerce_list(key, value, args[0] if args else None, (origin or tp) is tuple)
    if origin is dict or tp is dict:
        value = _yaml_text(value)  # JSON is YAML: '{"a": 1}' and '{a: 1}'
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping (e.g. {{\"a\": 1}}), got {value!r}")
        return value
    return value


def _yaml_text(value):
    """A CLI string parsed as YAML where it parses; anything else as it is."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def _coerce_union(key, value, args):
    if type(None) in args and (value is None or value in ("null", "none", "None", "~")):
        return None
    members = [a for a in args if a is not type(None)]
    if isinstance(value, str) and str in members:
        return value
    for a in members:
        try:
            return coerce(key, value, a)
        except (ValueError, TypeError):
            continue
    raise ValueError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")


def _coerce_bool(key, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise ValueError(f"{key}: expected a boolean (true/false), got {value!r}")


def _coerce_number(key, value, tp):
    num = value
    if isinstance(value, str):
        try:
            num = tp(value)
        except ValueError:
            num = None
    if not isinstance(num, bool) and isinstance(num, (int, float)):
        if tp is float:
            return float(num)
        if isinstance(num, int) or num.is_integer():
            return int(num)
    raise ValueError(f"{key}: expected {'an integer' if tp is int else 'a number (e.g. 1e-4)'}, got {value!r}")


def _coerce_list(key, value, inner, as_tuple: bool):
    value = _yaml_text(value)
    if isinstance(value, str):  # --benchmarks gsm8k or gsm8k,math500
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key}: expected a list (e.g. [1, 2]), got {value!r}")
    out = [coerce(key, v, inner) if inner not in (None, Ellipsis) else v for v in value]
    return tuple(out) if as_tuple else out


def typed(cls, data: dict) -> dict:
    """``data`` with every value coerced to its ``cls`` field type (see ``coerce``); unknown keys kept."""
    import typing

    hints = typing.get_type_hints(cls)
    return {k: coerce(k, v, hints[k]) if k in hints else v for k, v in data.items()}


def from_dict(cls, data: dict):
    """``cls(**data)`` with a clear error for unknown keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; valid: {sorted(names)}")
    return cls(**data)


def load_config(cls, path: str | None = None, argv: list[str] | None = None):
    """Defaults <- YAML file <- ``--key value`` / ``--key=value`` flags, each value coerced to its field type."""
    data: dict = read_yaml_mapping(path) if path else {}
    names = {f.name for f in dataclasses.fields(cls)}
    for key, val in split_flags(argv, bool_fields(cls)):
        if key not in names:
            raise ValueError(f"unknown option --{key}; valid: {sorted(names)}")
        data[key] = val  # raw text: typed() coerces every value by its field's type
    return from_dict(cls, typed(cls, data))


def bool_fields(*classes) -> set[str]:
    """Names of the boolean (or optional boolean) fields of ``classes``: the ones a bare ``--flag`` may set."""
    import typing

    out = set()
    for cls in classes:
        for name, tp in typing.get_type_hints(cls).items():
            if tp is bool or (typing.get_origin(tp) is not None and set(typing.get_args(tp)) == {bool, type(None)}):
                out.add(name)
    return out


def split_flags(argv: list[str] | None, bools: set[str] = frozenset()) -> list[tuple[str, str]]:
    """``--key value`` / ``--key=value`` flags -> ``[(key, raw value), ...]`` (dashes in keys become ``_``).

    HfArgumentParser's conventions hold for the boolean fields named in ``bools``: a bare ``--flag`` (nothing
    follows, or another ``--option``) is true and ``--no_flag`` false, so an open-r1 / TRL command line means
    the same here."""
    argv, out = list(argv or []), []
    while argv:
        flag = argv.pop(0)
        if not flag.startswith("--"):
            raise ValueError(f"unexpected argument {flag!r}; use --key value")
        key, eq, val = flag[2:].partition("=")
        key = key.replace("-", "_")
        if not eq and (not argv or argv[0].startswith("--")):
            if key in bools:
                val = "true"
            elif key.startswith("no_") and key[3:] in bools:
                key, val = key[3:], "false"
            else:
                raise ValueError(f"--{key} needs a value")
        elif not eq:
            val = argv.pop(0)
        out.append((key, val))
    return out


def config_path(argv: list[str]) -> str | None:
    """Take the recipe file out of ``argv``: the first argument when it is not an option (``python -m hicra.train
    RECIPE``), or TrlParser's ``--config RECIPE``; giving both is an error."""
    path = argv.pop(0) if argv and not argv[0].startswith("--") else None
    for i, flag in enumerate(argv):
        if flag == "--config" or flag.startswith("--config="):
            value = flag.partition("=")[2] if "=" in flag else (argv[i + 1] if i + 1 < len(argv) else "")
            if not value or value.startswith("--"):
                raise ValueError("--config needs a YAML file")
            if path is not None:
                raise ValueError(f"two recipe files: {path!r} and --config {value!r}; give one")
            del argv[i : i + (1 if "=" in flag else 2)]
            return value
    return path


def parse_cli(cls, argv: list[str] | None = None):
    """``[CONFIG.yaml] [--key value ...]`` (or TrlParser's ``--config CONFIG.yaml``) -> config instance.
    ``-h``/``--help`` prints every option of ``cls`` with its type, default and help, then exits; a config a user
    can fix (unknown option, wrong type, missing file) is one ``error:`` line and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(config_help((cls,)))
        raise SystemExit(0)
    try:
        return load_config(cls, config_path(argv), argv)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"error: {e}\n(python -m {_prog()} --help lists every option)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _prog() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = spec.name if spec else "hicra.<step>"
    return name[: -len(".__main__")] if name.endswith(".__main__") else name


def field_comments(cls) -> dict[str, str]:
    """``name: type = default  # comment``: the trailing comment of each field line in ``cls``'s source (and its
    dataclass bases'), where this project documents a field it gives no ``metadata={"help": ...}``."""
    import inspect
    import re

    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass.__module__.split(".")[0] not in ("hicra", "__main__"):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", src, re.M):
            out[m.group(1)] = m.group(2).strip()
    return out


def config_help(classes) -> str:
    """The ``--help`` text of a step: usage, the module's docstring head, then every option of each config class
    with type, default and help (field metadata, else the field's source comment)."""
    import textwrap

    main = sys.modules.get("__main__")
    doc = (getattr(main, "__doc__", None) or classes[0].__doc__ or "").strip()
    head = doc.split("\n\n")[0]
    lines = [
        f"usage: python -m {_prog()} [CONFIG.yaml] [--option value ...]",
        "",
        head,
        "",
        "A YAML file of options comes first (optional; or --config FILE, as TrlParser); each --option value "
        "overrides it. Lists and mappings are written as YAML/JSON, e.g. --runs '[a, b]'. A bare --flag sets a "
        "boolean option to true, --no_flag to false.",
    ]
    for cls in classes:
        notes = field_comments(cls)
        lines += ["", f"options ({cls.__name__}):"]
        for f in dataclasses.fields(cls):
            if f.name.startswith("_") or not f.init:
                continue
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else f.default_factory()
                if f.default_factory is not dataclasses.MISSING
                else "(required)"
            )
            typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            lines.append(f"  --{f.name} {typ}  (default: {default!r})")
            text = f.metadata.get("help") or notes.get(f.name, "")
            if text:
                lines += textwrap.wrap(str(text), 110, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, whatever disposition was inherited: a script's background
    job (`make test &`) starts with SIGINT ignored, and Python then installs no handler of its own; a
    scheduler's SIGTERM then stops a step like Ctrl-C does (whole metrics lines, a resumable run)."""
    import signal
    import threading

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
    import signal
    import threading

    if _watching:
        return
    _watching, parent = True, os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        print(f"[hicra] parent process {parent} is gone: stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def emit(summary: dict) -> None:
    """Print the step's one-line JSON summary (always the last stdout line)."""
    sys.stdout.flush()
    print(json.dumps(_clean(summary)), flush=True)


def weight_files(folder) -> list[list]:
    """``[name, size, mtime (s)]`` of a model folder's ``*.safetensors``: what a cached result computed from the
    model is keyed by, so a retrained or rebuilt model at the same path is a new model ([] if no folder)."""
    folder = Path(folder)
    return (
        sorted([f.name, f.stat().st_size, int(f.stat().st_mtime)] for f in folder.glob("*.safetensors"))
        if folder.is_dir()
        else []
    )


# --------------------------------------------------------------------------
# step scaffolding: the fields, folder and parameters every step shares


@dataclasses.dataclass
class StepConfig:
    """Fields of every step: its run folder, where its figures go and the tag in their names
    (``fig4_errors_<tag>.png``). Each step's config subclasses this and sets its own ``run_dir`` default."""

    run_dir: str = "runs/step"  # the step's folder: its params.json, tables and caches
    figures_dir: str = "figures"  # where figures go (PNG + PDF)
    tag: str = "sandbox"  # suffix of figure and table names, e.g. fig4_errors_<tag>.png
    figure_note: str = ""  # a line written under each of the step's figures (the rehearsal's label)


@dataclasses.dataclass
class SandboxStepConfig(StepConfig):
    """A step that can use the sandbox: which build (its seed) and ``SandboxConfig`` overrides."""

    sandbox_seed: int = 0  # which sandbox build (its seed)
    sandbox: dict = dataclasses.field(default_factory=dict)  # SandboxConfig overrides, e.g. {sft_steps: 6000}

    def sandbox_config(self):
        from hicra.sandbox.build import SandboxConfig

        return from_dict(SandboxConfig, {"seed": self.sandbox_seed, **self.sandbox})


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


def save_step_figure(fig, cfg: StepConfig, name: str) -> str:
    """Save a step's figure as ``<figures_dir>/<name>_<tag>.{png,pdf}``; returns the PNG's path."""
    import matplotlib.pyplot as plt

    from hicra.plotting import add_note, save_figure

    if getattr(cfg, "figure_note", ""):  # e.g. the rehearsal's figures say what they are, on the figure itself
        add_note(fig, cfg.figure_note)
    paths = save_figure(fig, f"{name}_{cfg.tag}", cfg.figures_dir)
    plt.close(fig)
    return str(paths[0])
