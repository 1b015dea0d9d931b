"""The tour's inputs: the shipped sandbox warm start, its tasks and grams, and SmolLM2's shipped completions.

``notebooks/00_tour.ipynb`` shows the method on one batch (paper §2.1 planning tokens, §3 HICRA's advantage) in
about a minute on 2 cores, no training. Its parameters fill ``TourConfig``; ``setup`` loads what it needs (the
warm start ships in ``data/sandbox/``: nothing is trained) and the views come from ``hicra.analysis.show``.

    cfg = TourConfig(n_tasks=2, group_size=4)
    t = setup(cfg)                   # model, tokenizer, tagger, kinds, prompts, reward
    batch = show.rollout_batch(t.model, t.tok, t.tagger, t.kinds, t.prompts, t.reward, cfg.group_size)
"""

from __future__ import annotations

import dataclasses
import json

from hicra.analysis.show import gram_kinds
from hicra.method.methods import DEFAULT_ALPHA
from hicra.method.tagger import PlanningTagger
from hicra.sandbox import SandboxConfig, load, make_tasks, prompt, verify
from hicra.sandbox.build import build
from hicra.store.paths import resolve


@dataclasses.dataclass
class TourConfig:
    seed: int = 0  # sandbox world and sampling seed
    sandbox: dict = dataclasses.field(default_factory=dict)  # SandboxConfig overrides (tests: a tiny model)
    n_tasks: int = 3  # Countdown tasks in the batch
    group_size: int = 4  # completions per task (GRPO's G)
    max_new_tokens: int = 96  # completion cap (tokens)
    temperature: float = 1.0
    alpha: float = DEFAULT_ALPHA  # HICRA's α (the paper's)
    lr: float = 0.01  # SGD step of the one-update comparison
    real_text_file: str = "data/smollm2_samples/gsm8k.jsonl"  # SmolLM2 completions shipped in data/
    sg_file: str = "data/grams/seed_grams.json"  # the real-text strategic grams
    n_real: int = 2  # real completions shown

    def __post_init__(self):
        for name in ("n_tasks", "group_size", "max_new_tokens", "n_real"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (GRPO's advantage compares a group); got {self.group_size}")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must be in [0, 1); got {self.alpha}")


@dataclasses.dataclass
class Tour:
    model: object
    tok: object
    tagger: object
    kinds: dict
    prompts: list
    reward: object
    model_dir: str


def setup(cfg: TourConfig) -> Tour:
    """The sandbox warm start (the shipped build for the default config, else built into the cache), its
    ground-truth gram tagger, ``n_tasks`` validation tasks as prompts and the oracle's reward."""

    sc = SandboxConfig(seed=cfg.seed, **cfg.sandbox)
    model_dir = build(sc, progress=False)["model_dir"]
    model, tok = load(model_dir)
    tasks = make_tasks(sc.world_config(), "val", cfg.n_tasks)
    grams = resolve(model_dir) / "grams.json"
    reward = lambda i, text: float(verify(tasks[i], text))  # noqa: E731
    return Tour(
        model, tok, PlanningTagger(grams, tok), gram_kinds(grams), [prompt(t) for t in tasks], reward, model_dir
    )


def real_text(cfg: TourConfig) -> tuple[list[dict], object, dict]:
    """The ``n_real`` shipped SmolLM2 completions holding the most strategic grams (file order among ties), a
    character-level tagger of the real-text grams and their kinds."""

    rows = [json.loads(x) for x in resolve(cfg.real_text_file).read_text().splitlines() if x.strip()]
    tagger = PlanningTagger(resolve(cfg.sg_file))
    rows.sort(key=lambda r: -len(tagger.spans(r["completion"])))  # stable: the richest in grams first
    return rows[: cfg.n_real], tagger, gram_kinds(resolve(cfg.sg_file))
