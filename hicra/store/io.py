"""File I/O of runs and steps: atomic writes, whole JSONL lines, tolerant readers.

Why: long CPU runs get killed, disks fill up, and several processes read a run while it is written. Every file a
step or a run writes goes through here: JSON, parquet and rewritten JSONL are written to a temp file in the same
folder and renamed over the target (a reader sees the old file or the new one, never half of one); a metrics line is
appended with one ``write`` and undone if the disk cuts it short; readers skip a torn last line and name the file and
line of a malformed one.

    from hicra.store.io import write_json, read_metrics
    write_json("runs/x/summary.json", {"steps": 100})
    lines = read_metrics("runs/x/metrics.jsonl")
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import yaml

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import (os.umask can only be read by setting it)


def atomic_write(path, data) -> Path:
    """Write ``data`` (text, bytes, or a function that writes the file at the path it is given) to ``path``
    through a temp file in the same folder and a rename (never a half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600: a run's files are readable as open() makes them
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
                f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------
# writers


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(path, obj) -> Path:
    """Atomic JSON write (NaN and inf written as null)."""
    return atomic_write(path, json.dumps(_clean(obj), indent=1))


def write_parquet(path, df) -> Path:
    """Atomic parquet write (temp file + rename)."""
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def append_jsonl(path, record: dict) -> None:
    """Append one JSON line with a single ``write`` and fsync it. A short write (a full disk) is undone and raised
    as ENOSPC, so the file never keeps half a line; readers (``read_metrics``) skip a torn last
    line that a kill left all the same."""

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    data = (json.dumps(_clean(record)) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            n = os.write(fd, data)
        except OSError:
            n = -1
        if n != len(data):
            os.ftruncate(fd, start)
            raise OSError(
                errno.ENOSPC,
                f"could not append a whole line to {path} (disk full?); the file is as it was before this line",
            )
        os.fsync(fd)
    finally:
        os.close(fd)


def truncate_jsonl(path, max_step: int) -> int:
    """Keep only complete lines with ``step <= max_step`` (atomic rewrite); returns lines kept."""
    if not os.path.exists(path):
        return 0
    keep = []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a kill
            if rec.get("step", 0) <= max_step:  # max_step -1: start afresh
                keep.append(line if line.endswith("\n") else line + "\n")
    atomic_write(path, "".join(keep))
    return len(keep)


# --------------------------------------------------------------------------
# readers


def read_jsonl(path) -> list[dict]:
    """The records of a JSONL file; a line that is not a JSON object is a ValueError naming the file and line
    (blank lines are skipped)."""
    p, out = Path(path), []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{i}: not a JSON line ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{p}:{i}: expected a JSON object per line, got a {type(rec).__name__}")
        out.append(rec)
    return out


def read_metrics(path) -> list[dict]:
    """The lines of a run's ``metrics.jsonl``. A torn last line (a kill or a full disk mid-write) is skipped with
    a warning; a malformed line before it is a ValueError naming the file and line."""
    p = Path(path)
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError:
            if i == len(lines):
                print(f"[hicra] {p}:{i}: skipping a torn last line (a run stopped mid-write)", file=sys.stderr)
                break
            raise ValueError(f"{p}:{i}: not a metrics line (a JSON object): {line[:80]!r}") from None
        out.append(rec)
    return out


def read_yaml_mapping(path) -> dict:
    """A YAML file that must hold a mapping; errors name the file (and the line, for malformed YAML)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} not found (see configs/ for recipes)")
    if p.is_dir():
        raise ValueError(f"{p} is a folder, not a YAML file: name a file such as configs/sandbox.yaml")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ValueError(f"{where}: malformed YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping of option: value, got a {type(data).__name__}")
    return data
