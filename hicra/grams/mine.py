"""Mining candidate strategic grams from successful rollouts (paper §2.1, step 1).

Text is normalised (lower case, curly apostrophes, whitespace) and cut into
*chunks* at anything that is not prose: digits, operators, LaTeX, brackets,
and after a sentence end (``.``, ``!``, ``?``). Inside a chunk, every run of
``n_min..n_max`` words is a candidate; commas and colons ride along inside a
gram and a gram may end with punctuation ("that doesn't work.", "hold on,").
Candidates are counted by document frequency, kept inside a frequency band,
and a gram is dropped when a longer gram containing it occurs in at least
``merge_ratio`` of its documents (it is explained by the longer one).

    from hicra.grams.mine import mine
    cands = mine(texts, n_min=2, n_max=5)          # -> list[Candidate], most frequent first
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from hicra.method.tagger import PlanningTagger

_ITEM = re.compile(r"\\[a-z]+|[a-z]+(?:['\-][a-z]+)*|[,:;]|[.!?]+|\S")
_WORD = re.compile(r"[a-z]")
SOFT, HARD_END = set(",:;"), set(".!?")


@dataclass
class Candidate:
    gram: str
    n_words: int
    df: int  # documents containing it
    examples: list[str] = field(default_factory=list)
    clause_initial: float | None = None  # share of its occurrences that open a clause (``evidence``)
    enrichment: float | None = None  # log2 document-frequency ratio, reasoning vs reference text


def normalize(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").replace("\u2018", "'").split())


def chunks(text: str) -> list[tuple[str, ...]]:
    """Prose runs of a text as item tuples (words and , : ; . ! ?), split at non-prose and after . ! ?"""
    out, cur = [], []
    for item in _ITEM.findall(normalize(text)):
        if _WORD.match(item) and item[0].isalpha():
            cur.append(item)
        elif item in SOFT or item[0] in HARD_END:
            if cur:
                cur.append(item[0])
            if item[0] in HARD_END and cur:
                out.append(tuple(cur))
                cur = []
        else:  # digits, operators, LaTeX: a hard boundary
            if cur:
                out.append(tuple(cur))
            cur = []
    if cur:
        out.append(tuple(cur))
    return out


def render(items: tuple[str, ...]) -> str:
    """Items back to text: punctuation attached to the word before it."""
    s = ""
    for it in items:
        s += it if (it in SOFT or it in HARD_END) or not s else " " + it
    return s


def _grams(chunk: tuple[str, ...], n_min: int, n_max: int):
    """Word runs of n_min..n_max words starting at a word, with trailing punctuation as its own variant;
    a sentence end only ends a gram."""
    L = len(chunk)
    for i in range(L):
        if chunk[i] in SOFT or chunk[i] in HARD_END:
            continue
        words = 0
        for j in range(i, L):
            it = chunk[j]
            if it in HARD_END:
                if words >= n_min:
                    yield chunk[i : j + 1]
                break
            if it not in SOFT:
                words += 1
                if words > n_max:
                    break
            if words >= n_min:
                yield chunk[i : j + 1]


def count(texts, n_min: int = 2, n_max: int = 5, progress: bool = True) -> tuple[Counter, int]:
    """Document frequency of every gram (as item tuples); returns (counter, number of documents)."""
    df: Counter = Counter()
    n = 0
    for text in tqdm(texts, desc="mining n-grams", disable=not progress, mininterval=1.0):
        n += 1
        seen = set()
        for ch in chunks(text):
            seen.update(_grams(ch, n_min, n_max))
        df.update(seen)
    return df, n


def merge_subgrams(df: dict, merge_ratio: float = 0.8) -> dict:
    """Drop a gram when a longer kept gram containing it covers >= merge_ratio of its documents."""
    keep = dict(df)
    for g in sorted(df, key=len, reverse=True):
        if g not in keep:
            continue
        for i in range(len(g)):
            for j in range(i + 1, len(g) + 1):
                sub = g[i:j]
                if sub != g and sub in keep and df[g] >= merge_ratio * df[sub]:
                    del keep[sub]
    return keep


def mine(
    texts,
    n_min: int = 2,
    n_max: int = 5,
    min_df: int = 3,
    min_df_frac: float = 0.01,
    max_df_frac: float = 0.95,
    merge_ratio: float = 0.8,
    max_candidates: int = 300,
    n_examples: int = 3,
    progress: bool = True,
) -> list[Candidate]:
    """Candidates from successful rollouts, most frequent first (see the module docstring)."""
    texts = list(texts)
    if n_min < 1 or n_max < n_min:
        raise ValueError(f"need 1 <= n_min <= n_max; got n_min={n_min}, n_max={n_max}")
    df, n = count(texts, n_min, n_max, progress)
    if n == 0:
        raise ValueError("no rollouts to mine: pass successful completions (non-empty texts)")
    lo, hi = max(min_df, min_df_frac * n), max_df_frac * n
    band = {g: c for g, c in df.items() if lo <= c <= hi}
    kept = merge_subgrams(band, merge_ratio)
    top = sorted(kept.items(), key=lambda kv: (-kv[1], render(kv[0])))[:max_candidates]
    cands = [Candidate(render(g), sum(1 for x in g if x not in SOFT and x not in HARD_END), c) for g, c in top]
    if n_examples and cands:
        _attach_examples(cands, texts, n_examples)
    return cands


def _attach_examples(cands: list[Candidate], texts: list[str], k: int) -> None:
    """Up to ``k`` in-context snippets per candidate (the gram in [[...]] with 60 characters around)."""

    tagger = PlanningTagger([c.gram for c in cands])
    by_gram = {c.gram: c for c in cands}
    missing = len(cands)
    for text in texts:
        for s, e, g in tagger.spans(text):
            c = by_gram.get(g)
            if c is not None and len(c.examples) < k:
                snippet = f"...{text[max(0, s - 60) : s]}[[{text[s:e]}]]{text[e : e + 60]}..."
                c.examples.append(" ".join(snippet.split()))
                missing -= len(c.examples) == k
        if missing <= 0:
            break


_CLAUSE_END = set(".,;:!?\n")


def evidence(cands: list[Candidate], texts: list[str], reference: list[str] = ()) -> None:
    """Two signals beside an annotator's label, filled in place (for the review sheet; issue #13):

    * ``clause_initial``: the share of the gram's occurrences in ``texts`` that open a clause (text start or
      after ``. , ; : ! ?`` or a newline): discourse markers ("note that", "by symmetry") open clauses, names of
      quantities ("the number of") sit inside them;
    * ``enrichment``: log2 of (documents of ``texts`` containing it + 1) / (documents of ``reference`` + 1), each
      per document; ``reference`` is plain text of the same domain, the problem statements: a question's words
      ("how many", "find how") are as common there, a reasoning move is not.

    Measured on the dev set (data/grams/real_dev.jsonl, the shipped solutions against their problems): ROC AUC
    0.76 (clause_initial) and 0.71 (enrichment) alone, but neither separates the annotator's remaining errors,
    so they inform the reviewer and decide nothing."""

    if not cands:
        return
    tagger = PlanningTagger([c.gram for c in cands])
    occ, initial, docs = Counter(), Counter(), Counter()
    for text in texts:
        seen = set()
        for s, _, g in tagger.spans(text):
            occ[g] += 1
            before = text[max(0, s - 40) : s].rstrip(" \t")
            initial[g] += not before or before[-1] in _CLAUSE_END
            seen.add(g)
        docs.update(seen)
    ref = Counter(g for t in reference for g in {g for _, _, g in tagger.spans(t)})
    n_t, n_r = max(1, len(texts)), max(1, len(reference))
    for c in cands:
        c.clause_initial = round(initial[c.gram] / occ[c.gram], 3) if occ[c.gram] else None
        c.enrichment = (
            round(math.log2((docs[c.gram] + 1) / n_t) - math.log2((ref[c.gram] + 1) / n_r), 3) if reference else None
        )
