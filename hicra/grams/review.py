"""Human review of annotated candidates, and the final SG file (paper §2.1, step 3).

``export_review`` writes one row per candidate to CSV (for a spreadsheet) and
markdown (for reading): the annotator's label, kind and score, the document
frequency, two signals from the corpus (``clause_initial``: the share of its occurrences that open a clause;
``enrichment``: log2 document-frequency ratio, rollouts vs their prompts; ``hicra.grams.mine.evidence``) and
in-context examples, plus an ``accept`` column pre-filled with the
annotator's decision. A person flips ``accept`` (yes/no), fixes ``kind``, or adds
rows for grams the annotator missed. ``import_review`` reads it back, rejecting
a bad row with an error that names its line; ``write_final`` writes the SG JSON
(grams, kinds, provenance) that the tagger and trainer load.

    export_review(cands, judgements, "runs/grams/review.csv")
    grams = import_review("runs/grams/review.csv")          # after editing
    write_final("data/grams/my_grams.json", grams, {"annotator": "offline", ...})
"""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path

from hicra.store.io import atomic_write
from hicra.store.sgfile import KINDS, write_sg_file

COLUMNS = [
    "gram",
    "accept",
    "kind",
    "label",
    "score",
    "annotator",
    "df",
    "n_words",
    "clause_initial",
    "enrichment",
    "examples",
    "note",
]
YES, NO = {"yes", "y", "1", "true", "x"}, {"no", "n", "0", "false", ""}


def _blank(x):
    return "" if x is None else x


def export_review(candidates, judgements, csv_path, md_path=None) -> Path:
    """CSV (+ markdown) review sheet; strategic candidates first, by score."""
    by = {j.gram: j for j in judgements}
    rows = []
    for c in candidates:
        j = by[c.gram]
        rows.append(
            {
                "gram": c.gram,
                "accept": "yes" if j.strategic else "no",
                "kind": j.kind or "",
                "label": j.kind if j.strategic else ("unparsed" if j.note == "unparsed" else "none"),
                "score": "" if j.score != j.score else f"{j.score:.3f}",
                "annotator": j.annotator,
                "df": c.df,
                "n_words": c.n_words,
                "clause_initial": _blank(c.clause_initial),
                "enrichment": _blank(c.enrichment),
                "examples": " || ".join(c.examples),
                "note": j.note,
            }
        )
    rows.sort(key=lambda r: (r["accept"] != "yes", -(float(r["score"]) if r["score"] else 0), r["gram"]))
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)

    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, COLUMNS)
    w.writeheader()
    w.writerows(rows)
    atomic_write(csv_path, buf.getvalue().encode("utf-8"))
    if md_path:
        lines = [
            "# Strategic-gram review",
            "",
            f"Edit `{csv_path.name}` (column `accept`: yes/no; `kind`: "
            f"{' / '.join(KINDS)}; add rows for missed grams), then import it back.",
            "",
            "| accept | gram | kind | score | df | opens a clause | enrichment | example |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            ex = r["examples"].split(" || ")[0].replace("|", "\\|")
            lines.append(
                f"| {r['accept']} | `{r['gram']}` | {r['kind']} | {r['score']} | {r['df']} | "
                f"{r['clause_initial']} | {r['enrichment']} | {ex} |"
            )
        Path(md_path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path


def import_review(csv_path) -> list[dict]:
    """Accepted grams ``[{"gram", "kind"}]`` from a reviewed CSV; a bad row raises ``ValueError`` naming its line."""
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise FileNotFoundError(
            f"review file {csv_path} not found (write one with export_review / python -m hicra.grams)"
        )
    out, seen = [], set()
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"gram", "accept", "kind"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{csv_path}:1: header lacks column(s) {sorted(missing)}")
        for row in reader:
            ln = reader.line_num
            gram, accept = (row.get("gram") or "").strip(), (row.get("accept") or "").strip().lower()
            kind = (row.get("kind") or "").strip().lower()
            if accept not in YES | NO:
                raise ValueError(f"{csv_path}:{ln}: accept must be yes or no; got {row.get('accept')!r}")
            if accept in NO:
                continue
            if not gram:
                raise ValueError(f"{csv_path}:{ln}: an accepted row needs a gram")
            if kind not in KINDS:
                raise ValueError(
                    f"{csv_path}:{ln}: gram {gram!r} is accepted but its kind is {kind!r}; "
                    f"expected one of {', '.join(KINDS)}"
                )
            if gram.lower() in seen:
                raise ValueError(f"{csv_path}:{ln}: gram {gram!r} appears twice")
            seen.add(gram.lower())
            out.append({"gram": gram, "kind": kind})
    if not out:
        raise ValueError(f"{csv_path}: no gram is accepted; an SG file needs at least one")
    return out


def write_final(path, grams: list[dict], provenance: dict) -> Path:
    """The SG JSON, with the date added to the provenance."""
    return write_sg_file(path, grams, {**provenance, "date": datetime.date.today().isoformat()})
