"""Planning-token tagger: which completion tokens lie inside a strategic gram.

Paper §2.1: a token is a *planning token* when it overlaps an occurrence of a
strategic gram (SG) such as "let's try a different approach" in the decoded
completion; every other token is an *execution token*. HICRA (§3) amplifies the
advantage on planning tokens, and the dynamics metrics split entropy and
perplexity by this mask, so the tagger sits on the training hot path.

How: every token id of the tokenizer is turned once into the exact bytes it
contributes to decoded text (byte-level BPE, Metaspace/SentencePiece and
byte-fallback pieces are understood). A batch is then assembled as one byte
buffer with NumPy, normalised (ASCII case, curly apostrophes, whitespace runs),
and scanned once with an Aho-Corasick automaton holding all grams. Matches are
kept only at word boundaries ("so" never fires inside "also", "4 =" never inside
"24 ="), and every token touched by a match is planning. A token covered by
several grams is attributed to the longest one.

    from hicra.method.tagger import PlanningTagger
    tagger = PlanningTagger(["let's try a different approach", "wait"], tokenizer)
    mask = tagger.mask(completion_ids, completion_mask)     # (B, T) bool tensor
    tagger.spans("Wait, LET’S try a\\ndifferent approach")  # [(0, 4, 'wait'), ...]

Speed is measured by ``python bench/bench_tagger.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import ahocorasick
import numpy as np
import torch

from hicra.store.sgfile import read_sg_file

# --------------------------------------------------------------------------
# byte-level normalisation tables

_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[ord("A") : ord("Z") + 1] += 32
for _c in b"\t\n\r\x0b\x0c":
    _LOWER[_c] = 0x20
_WORD = np.zeros(256, dtype=bool)  # ASCII letters/digits/_ and any non-ASCII byte
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD[_c] = True
_WORD[0x80:] = True
SEPARATOR = b"\x00"  # stands for special tokens and row ends: never matched across


def normalize_text(text: str) -> str:
    """The normal form grams and text are compared in: lower-case ASCII,
    straight apostrophes, single spaces, stripped."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u02bc", "'")
    text = "".join(c.lower() if c.isascii() else c for c in text)
    return re.sub(r"\s+", " ", text).strip()


def _normalize_bytes(buf: np.ndarray, owner: np.ndarray, folded: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``normalize_text``'s rules to a UTF-8 byte buffer, keeping for each
    surviving byte the index (token or char) that owns it. ``folded``: case and
    whitespace were already mapped through ``_LOWER``."""
    if not folded:
        buf = _LOWER[buf]
    keep = np.ones(len(buf), dtype=bool)
    lead = np.flatnonzero(buf[:-2] == 0xE2)  # U+2018 / U+2019 = E2 80 98 / E2 80 99
    if len(lead):
        hit = lead[(buf[lead + 1] == 0x80) & ((buf[lead + 2] == 0x98) | (buf[lead + 2] == 0x99))]
        buf[hit] = 0x27
        keep[hit + 1] = keep[hit + 2] = False
    lead = np.flatnonzero(buf[:-1] == 0xCA)  # U+02BC = CA BC
    if len(lead):
        hit = lead[buf[lead + 1] == 0xBC]
        buf[hit] = 0x27
        keep[hit + 1] = False
    if not keep.all():
        buf, owner = buf[keep], owner[keep]
    space = buf == 0x20
    dup = np.zeros(len(buf), dtype=bool)
    dup[1:] = space[1:] & space[:-1]
    if dup.any():
        buf, owner = buf[~dup], owner[~dup]
    return buf, owner


# --------------------------------------------------------------------------
# token id -> bytes it contributes to decoded text


def _bytes_to_unicode() -> dict[str, int]:
    """Inverse of the GPT-2 byte-level alphabet: printable char -> raw byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _decoder_kinds(tokenizer) -> set[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(
            f"PlanningTagger needs a Hugging Face *fast* tokenizer; got {type(tokenizer).__name__}. "
            "Load it with AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    dec = json.loads(backend.to_str()).get("decoder") or {}
    stack, kinds = [dec], set()
    while stack:
        d = stack.pop()
        if isinstance(d, dict):
            kinds.add(d.get("type", ""))
            stack.extend(d.get("decoders", []) or [])
            if d.get("type") == "Replace" and d.get("pattern", {}).get("String") == "\u2581":
                kinds.add("Metaspace")
    return kinds


def token_pieces(tokenizer) -> list[bytes]:
    """For every token id, the bytes it adds to decoded text (special tokens -> separator)."""
    kinds = _decoder_kinds(tokenizer)
    vocab_size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
    toks = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    special = set(tokenizer.all_special_ids)
    special |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
    byte_level = "ByteLevel" in kinds
    if not byte_level and not ({"Metaspace", "ByteFallback", "Fuse", "Strip", "Replace"} & kinds or not kinds):
        raise ValueError(
            f"PlanningTagger does not understand this tokenizer's decoder {sorted(kinds)}; "
            "supported: ByteLevel (GPT-2/Llama-3/Qwen style) and Metaspace/SentencePiece."
        )
    b2u = _bytes_to_unicode()
    pieces: list[bytes] = []
    for i, t in enumerate(toks):
        if t is None or i in special:
            pieces.append(SEPARATOR)
        elif byte_level:
            try:
                pieces.append(bytes(b2u[c] for c in t))
            except KeyError:  # an added, non-special token written in plain text
                pieces.append(t.encode())
        elif len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            pieces.append(bytes([int(t[3:5], 16)]))
        else:
            pieces.append(t.replace("\u2581", " ").encode())
    return pieces


# --------------------------------------------------------------------------
# the tagger


def load_grams(source) -> list[str]:
    """Grams from a list of strings, a list of ``{"gram": ...}`` dicts, or an SG JSON file."""
    if isinstance(source, (str, Path)):  # a path, never a gram: "wait" would tag the letters w, a, i, t
        if not str(source).endswith(".json"):
            raise ValueError(
                f"strategic_grams: {str(source)!r} is a single string; pass a list of grams "
                f"(e.g. [{str(source)!r}]) or the path of an SG JSON file"
            )

        return [g["gram"] for g in read_sg_file(source)["grams"]]
    out = []
    for g in source:
        out.append(g["gram"] if isinstance(g, dict) else g)
    return out


class PlanningTagger:
    """Marks planning tokens (tokens overlapping a strategic gram) in token ids or text.

    Args:
        strategic_grams: gram strings, ``{"gram": ..}`` dicts, or a path to an SG JSON file.
        tokenizer: any Hugging Face fast tokenizer (byte-level BPE or Metaspace).
    """

    def __init__(self, strategic_grams, tokenizer=None):
        raw = load_grams(strategic_grams)
        grams = sorted({normalize_text(g) for g in raw if isinstance(g, str) and normalize_text(g)})
        if not grams:
            raise ValueError("PlanningTagger needs at least one non-empty strategic gram.")
        self.grams: list[str] = grams
        enc = [g.encode() for g in grams]
        self._glen = np.array([len(e) for e in enc], dtype=np.int64)
        self._gfirst_word = np.array([_WORD[e[0]] for e in enc])
        self._glast_word = np.array([_WORD[e[-1]] for e in enc])
        self._auto = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for i, e in enumerate(enc):
            self._auto.add_word(e.decode("latin-1"), i)
        self._auto.make_automaton()
        self.tokenizer = tokenizer
        if tokenizer is not None:
            pieces = token_pieces(tokenizer)
            self._sep_id = len(pieces)
            pieces.append(SEPARATOR)
            self._len = np.array([len(p) for p in pieces], dtype=np.int64)
            self._start = np.concatenate([[0], np.cumsum(self._len)[:-1]])
            self._buf = _LOWER[np.frombuffer(b"".join(pieces), dtype=np.uint8)]  # case/space folded once
            self._check_roundtrip(tokenizer)

    def _check_roundtrip(self, tokenizer) -> None:
        probe = "Let’s  try a different approach.\nWait, 24 = 4 * 6? ALSO: so we can use the fact that x=1."
        ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
        ours = np.concatenate([self._buf[self._start[i] : self._start[i] + self._len[i]] for i in ids])
        theirs = normalize_text(tokenizer.decode(ids, skip_special_tokens=True))
        if normalize_text(ours.tobytes().decode("utf-8", "replace")) != theirs:
            raise ValueError(
                f"PlanningTagger could not reproduce {type(tokenizer).__name__}'s decoding; "
                "this tokenizer's pieces are not supported."
            )

    # -- core matching over a normalised byte buffer ------------------------
    def _match(self, buf: np.ndarray, owner: np.ndarray, folded: bool = False):
        """All word-bounded occurrences: (first owner, last owner, gram idx) arrays."""
        buf, owner = _normalize_bytes(buf, owner, folded)
        text = buf.tobytes().decode("latin-1")
        hits = np.fromiter((v for m in self._auto.iter(text) for v in m), dtype=np.int64)
        if not len(hits):
            e = np.zeros(0, dtype=np.int64)
            return e, e, e
        end, gid = hits[0::2], hits[1::2]
        start = end - self._glen[gid] + 1
        word = _WORD[buf]
        n = len(buf)
        left_ok = ~self._gfirst_word[gid] | (start == 0) | ~word[np.maximum(start - 1, 0)]
        right_ok = ~self._glast_word[gid] | (end == n - 1) | ~word[np.minimum(end + 1, n - 1)]
        ok = left_ok & right_ok
        return owner[start[ok]], owner[end[ok]], gid[ok]

    def _batch(self, completion_ids, completion_mask):
        ids = completion_ids.detach().cpu().numpy() if torch.is_tensor(completion_ids) else np.asarray(completion_ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2:
            raise ValueError(f"completion_ids must be (B, T); got shape {ids.shape}")
        if self.tokenizer is None:
            raise ValueError("This PlanningTagger was built without a tokenizer; pass one to tag token ids.")
        valid = np.ones(ids.shape, dtype=bool)
        if completion_mask is not None:
            cm = (
                completion_mask.detach().cpu().numpy()
                if torch.is_tensor(completion_mask)
                else np.asarray(completion_mask)
            )
            valid = cm.reshape(ids.shape).astype(bool)
        ids = np.where((ids >= 0) & (ids < self._sep_id), ids, self._sep_id)
        empty = self._sep_id  # padding contributes a separator; matches never cross it
        flat = np.concatenate([np.where(valid, ids, empty), np.full((len(ids), 1), self._sep_id)], 1).ravel()
        lens = self._len[flat]
        tok = np.repeat(np.arange(len(flat)), lens)
        shift = self._start[flat] - (np.cumsum(lens) - lens)  # byte j of the batch = vocab byte j + shift[tok]
        buf = self._buf[np.arange(len(tok)) + shift[tok]]
        return ids.shape, valid, buf, tok

    # -- public API ----------------------------------------------------------
    def mask(self, completion_ids, completion_mask=None) -> torch.BoolTensor:
        """(B, T) bool: True where a token overlaps a strategic gram; padding is never planning."""
        shape, valid, buf, tok = self._batch(completion_ids, completion_mask)
        first, last, _ = self._match(buf, tok, folded=True)
        n = shape[0] * (shape[1] + 1)
        diff = np.zeros(n + 1, dtype=np.int32)
        np.add.at(diff, first, 1)
        np.add.at(diff, last + 1, -1)
        m = (np.cumsum(diff[:-1]) > 0).reshape(shape[0], shape[1] + 1)[:, : shape[1]] & valid
        return torch.from_numpy(m)

    def token_grams(self, completion_ids, completion_mask=None) -> np.ndarray:
        """(B, T) int64: index into ``self.grams`` of the longest gram covering each token, -1 if none."""
        shape, valid, buf, tok = self._batch(completion_ids, completion_mask)
        first, last, gid = self._match(buf, tok, folded=True)
        n = shape[0] * (shape[1] + 1)
        best = np.full(n, -1, dtype=np.int64)
        if len(gid):
            span = last - first + 1
            idx = np.repeat(first, span) + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span))
            key = np.repeat(self._glen[gid] * len(self.grams) + gid, span)
            np.maximum.at(best, idx, key)
        out = np.where(best >= 0, best % len(self.grams), -1).reshape(shape[0], shape[1] + 1)[:, : shape[1]]
        return np.where(valid, out, -1)

    def occurrences(self, completion_ids, completion_mask=None) -> list[list[str]]:
        """Per row, the grams that occur, in order of appearance (one entry per occurrence)."""
        shape, _, buf, tok = self._batch(completion_ids, completion_mask)
        first, _, gid = self._match(buf, tok, folded=True)
        rows: list[list[str]] = [[] for _ in range(shape[0])]
        order = np.lexsort((-self._glen[gid], first))
        for f, g in zip(first[order], gid[order]):
            rows[f // (shape[1] + 1)].append(self.grams[g])
        return rows

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """Character spans ``(start, end, gram)`` of every gram occurrence in ``text``, by start."""
        if not isinstance(text, str) or not text:
            return []
        buf = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8).copy()
        char = np.cumsum((buf & 0xC0) != 0x80) - 1
        first, last, gid = self._match(buf, char)
        out = sorted(zip(first.tolist(), (last + 1).tolist(), gid.tolist()), key=lambda s: (s[0], -s[1]))
        return [(s, e, self.grams[g]) for s, e, g in out]

    def text_occurrences(self, texts: Iterable[str]) -> list[list[str]]:
        """Per text, the grams that occur (one entry per occurrence), in order."""
        return [[g for _, _, g in self.spans(t)] for t in texts]

    def __repr__(self) -> str:
        tok = type(self.tokenizer).__name__ if self.tokenizer is not None else None
        return f"PlanningTagger({len(self.grams)} grams, tokenizer={tok})"
