"""CLI parsing: YAML recipe + ``--key value`` overrides -> a typed config dataclass, and ``--help`` from its fields.

Each step (``python -m hicra.<step> CONFIG``) and its notebook build the same config dataclass, so a papermill
parameter, a YAML key and a ``--key value`` flag mean the same thing. Every value is coerced to its field's type
(``coerce``); an unknown key is an error that names the nearest valid one ("did you mean"). HfArgumentParser's
conventions hold (``--flag`` / ``--no_flag`` for booleans, TrlParser's ``--config FILE``), so an open-r1 command
line means the same here.

    from hicra.grams.step import GramsConfig
    from hicra.stepkit.cli import load_config, parse_cli
    cfg = load_config(GramsConfig, "configs/grams_sandbox.yaml", ["--seed", "3"])
    cfg = parse_cli(GramsConfig)        # sys.argv; --help prints every option
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import sys
import textwrap
import types
import typing

import yaml

from hicra.store.io import read_yaml_mapping
from hicra.store.names import nearest


def did_you_mean(names, valid, prefix: str = "") -> str:
    """`` (did you mean 'x'?)`` for one mistyped name, `` (did you mean 'x' for 'y', ...?)`` for several; ``""``
    where none is near a valid one. ``prefix``: ``"--"`` for command-line options."""
    names = [names] if isinstance(names, str) else sorted(names)
    pairs = [(n, nearest(n, valid)) for n in names]
    pairs = [(n, m) for n, m in pairs if m]
    if not pairs:
        return ""
    if len(names) == 1:
        return f" (did you mean {prefix}{pairs[0][1]}?)" if prefix else f" (did you mean {pairs[0][1]!r}?)"
    return " (did you mean " + ", ".join(f"{prefix}{m}" if prefix else f"{m!r} for {n!r}" for n, m in pairs) + "?)"


def unknown_keys_error(what: str, unknown, valid) -> ValueError:
    """The one-line error for unknown keys: them, the nearest valid name of each ("did you mean"), the valid ones."""
    return ValueError(f"unknown {what} {sorted(unknown)}{did_you_mean(unknown, valid)}; valid: {sorted(valid)}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(key: str, value, tp):
    """``value`` as the field type ``tp`` (YAML or CLI text accepted: ``1e-4`` is a float, ``true`` a bool),
    or a ValueError naming the key and the expected type. Unions try their members in order."""
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
    hints = typing.get_type_hints(cls)
    return {k: coerce(k, v, hints[k]) if k in hints else v for k, v in data.items()}


def from_dict(cls, data: dict):
    """``cls(**data)`` with a clear error for unknown keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise unknown_keys_error(f"{cls.__name__} option(s)", unknown, names)
    return cls(**data)


def load_config(cls, path: str | None = None, argv: list[str] | None = None):
    """Defaults <- YAML file <- ``--key value`` / ``--key=value`` flags, each value coerced to its field type."""
    data: dict = read_yaml_mapping(path) if path else {}
    names = {f.name for f in dataclasses.fields(cls)}
    for key, val in split_flags(argv, bool_fields(cls)):
        if key not in names:
            raise ValueError(f"unknown option --{key}{did_you_mean(key, names, '--')}; valid: {sorted(names)}")
        data[key] = val  # raw text: typed() coerces every value by its field's type
    return from_dict(cls, typed(cls, data))


def bool_fields(*classes) -> set[str]:
    """Names of the boolean (or optional boolean) fields of ``classes``: the ones a bare ``--flag`` may set."""
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


def _field_lines(f, notes: dict, recipe: tuple = ()) -> list[str]:
    default = (
        f.default
        if f.default is not dataclasses.MISSING
        else f.default_factory()
        if f.default_factory is not dataclasses.MISSING
        else "(required)"
    )
    typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    name, values = recipe or ("", {})
    said = f"; {name} sets {values[f.name]!r}" if f.name in values and values[f.name] != default else ""
    lines = [f"  --{f.name} {typ}  (default: {default!r}{said})"]
    text = f.metadata.get("help") or notes.get(f.name, "")
    if text:
        lines += textwrap.wrap(str(text), 110, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return lines


def _own_fields(cls) -> set[str]:
    """Names of the fields this project declares on ``cls`` and its ``hicra`` bases (not TRL's / transformers')."""
    return {
        name
        for klass in cls.__mro__
        if dataclasses.is_dataclass(klass) and klass.__module__.split(".")[0] in ("hicra", "__main__")
        for name in klass.__dict__.get("__annotations__", {})
    }


def config_help(classes, first=(), examples=(), usage: str | None = None, recipe: tuple = ()) -> str:
    """The ``--help`` text of a step: usage, the module's docstring head, ``examples``, the options named in
    ``first`` (the ones a user changes most), then every option of each config class with type, default and help
    (field metadata, else the field's source comment): this project's fields before those a class inherits from
    another library (TRL's GRPOConfig, transformers' TrainingArguments). ``recipe``: ``(name, values)`` of the
    recipe used when none is given; each option it sets says so beside its default."""
    main = sys.modules.get("__main__")
    doc = (getattr(main, "__doc__", None) or classes[0].__doc__ or "").strip()
    head = doc.split("\n\n")[0]
    lines = [
        usage or f"usage: python -m {_prog()} [CONFIG.yaml] [--option value ...]",
        "",
        head,
        "",
        "A YAML file of options comes first (optional; or --config FILE, as TrlParser); each --option value "
        "overrides it. Lists and mappings are written as YAML/JSON, e.g. --runs '[a, b]'. A bare --flag sets a "
        "boolean option to true, --no_flag to false.",
    ]
    if examples:
        lines += ["", "examples:", *(f"  {e}" for e in examples)]
    fields = {f.name: (f, cls) for cls in reversed(classes) for f in dataclasses.fields(cls)}
    if first:
        lines += ["", "the options changed most:"]
        for name in first:
            f, cls = fields[name]
            lines += _field_lines(f, field_comments(cls), recipe)
    for cls in classes:
        notes, own = field_comments(cls), _own_fields(cls)
        shown = [f for f in dataclasses.fields(cls) if not f.name.startswith("_") and f.init and f.name not in first]
        theirs = [f for f in shown if f.name not in own]
        lines += ["", f"options ({cls.__name__}{', this project' if theirs else ''}):"]
        for f in (f for f in shown if f.name in own):
            lines += _field_lines(f, notes, recipe)
        if theirs:
            bases = [
                k.__name__
                for k in cls.__mro__[1:]
                if dataclasses.is_dataclass(k) and k.__module__.split(".")[0] not in ("hicra", "__main__")
            ]
            lines += ["", f"options ({cls.__name__}, inherited from {' / '.join(bases)}):"]
            for f in theirs:
                lines += _field_lines(f, notes, recipe)
    return "\n".join(lines)
