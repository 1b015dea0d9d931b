"""Strategic-gram (SG) files: the JSON the tagger and trainer load.

Paper §2.1 builds a set of strategic grams (n-grams that act as planning moves)
of three kinds: deduction, branching and backtracing. This module reads and
writes that set with its provenance, and rejects a malformed file with an error
that names the line, so a hand-edited file never silently loses grams.

Format::

    {"version": 1,
     "provenance": {"annotator": "...", "source": "...", "date": "..."},
     "grams": [
       {"gram": "let's try a different approach", "kind": "branching"},
       ...]}

    python -c "from hicra.store.sgfile import read_sg_file as r; print(len(r('data/grams/seed_grams.json')['grams']))"
"""

from __future__ import annotations

import json
from pathlib import Path

from hicra.store.io import atomic_write

KINDS = ("deduction", "branching", "backtracing")


class SGFileError(ValueError):
    """A strategic-gram file that cannot be used; the message names file and line."""


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def read_sg_file(path) -> dict:
    """Parse and validate an SG file; raises SGFileError naming the offending line."""
    path = Path(path)
    if not path.exists():
        raise SGFileError(
            f"{path}: strategic-gram file not found (build one with `python -m hicra.grams`, "
            "or use data/grams/seed_grams.json)"
        )
    if path.is_dir():
        raise SGFileError(f"{path} is a folder, not a strategic-gram JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SGFileError(f"{path}: not UTF-8 text (byte {e.start}); save the strategic-gram file as UTF-8") from None
    if not text.strip():
        raise SGFileError(f"{path}:1: strategic-gram file is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SGFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("grams"), list):
        raise SGFileError(f"{path}:1: expected an object with a 'grams' list")
    # locate each entry's line by decoding the array element by element
    # (line numbers are counted incrementally: linear in the file size, 20k grams in well under a second)
    dec, pos = json.JSONDecoder(), text.index("[", text.index('"grams"'))
    lines, last, line = [], 0, 1
    for _ in doc["grams"]:
        pos += 1
        while text[pos] in " \t\r\n,":
            pos += 1
        line += text.count("\n", last, pos)
        last = pos
        lines.append(line)
        _, pos = dec.raw_decode(text, pos)
    if not doc["grams"]:
        raise SGFileError(f"{path}:{_line(text, pos)}: the 'grams' list is empty")
    seen = set()
    for entry, ln in zip(doc["grams"], lines):
        if not isinstance(entry, dict) or not isinstance(entry.get("gram"), str) or not entry["gram"].strip():
            raise SGFileError(f"{path}:{ln}: each entry needs a non-empty string 'gram'; got {entry!r}")
        if entry.get("kind") not in KINDS:
            raise SGFileError(
                f"{path}:{ln}: gram {entry['gram']!r} has kind {entry.get('kind')!r}; "
                f"expected one of {', '.join(KINDS)}"
            )
        key = entry["gram"].strip().lower()
        if key in seen:
            raise SGFileError(f"{path}:{ln}: gram {entry['gram']!r} appears twice")
        seen.add(key)
    doc.setdefault("provenance", {})
    return doc


def write_sg_file(path, grams: list[dict], provenance: dict) -> Path:
    """Write atomically, one gram per line (diff- and review-friendly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",\n".join("    " + json.dumps(g, ensure_ascii=False) for g in grams)
    text = (
        '{\n  "version": 1,\n  "provenance": '
        + json.dumps(provenance, ensure_ascii=False)
        + ',\n  "grams": [\n'
        + body
        + "\n  ]\n}\n"
    )

    atomic_write(path, text.encode("utf-8"))
    read_sg_file(path)
    return path
