"""The strategic-gram step end to end: rollouts -> candidates -> labels -> review -> SG file -> quality.

``GramsConfig`` is shared by ``notebooks/01_strategic_grams.ipynb`` and
``python -m hicra.grams CONFIG``. Rollout sources:

* ``sandbox``: successful samples of the warm-started sandbox model (train tasks);
* ``sandbox-traces``: successful generator traces (no model needed);
* ``rollouts``: a training run's ``rollouts/step_*.parquet`` (glob in ``rollouts``);
* ``smollm2``: SmolLM2-135M-Instruct samples on GSM8K (real text);
* ``solutions``: the human-written solutions shipped in ``data/`` (``solutions``: a comma list of
  math500, gsm8k, minerva), correct reasoning by construction (real text, no model needed);
* ``rollouts`` also reads ``.jsonl`` files, e.g. a GPU box's R1-style traces: rows with a ``completion``
  (or ``text_column``) and optionally ``prompt`` and ``reward`` (missing reward: kept as correct).

With a sandbox source the SG set is scored against the ground truth twice: with
the whole seed list, and with every seed that overlaps a sandbox phrase held out
(the honest number: the shipped seed list shares 20 of its phrases with the world).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import random
from pathlib import Path

import pandas as pd

from hicra.data import load_benchmark
from hicra.figures import fig_grams
from hicra.grams.annotate import SEEDS, LLMAnnotator, OfflineAnnotator
from hicra.grams.mine import evidence, mine, normalize
from hicra.grams.quality import real_dev_quality, sandbox_quality
from hicra.grams.review import export_review, import_review, write_final
from hicra.models import load_model, load_tokenizer
from hicra.sandbox.build import build, load
from hicra.sandbox.config import SandboxStepConfig
from hicra.sandbox.world import ALL_GRAMS, make_tasks, make_trace, prompt, verify
from hicra.serve import Endpoint, endpoint
from hicra.stepkit.plotting import save_step_figure, setup_style
from hicra.stepkit.steps import start_step
from hicra.store.io import read_jsonl, write_json, write_parquet
from hicra.store.llm import ChatClient
from hicra.store.paths import resolve
from hicra.training.generate import chat_prompts, sample
from hicra.training.rewards import is_correct

SOURCES = ("sandbox", "sandbox-traces", "rollouts", "smollm2", "solutions")
SOLUTION_SETS = ("math500", "gsm8k", "minerva", "gsm8k-train")  # shipped sets with a written solution per problem


@dataclasses.dataclass
class GramsConfig(SandboxStepConfig):
    run_dir: str = "runs/grams"
    source: str = "sandbox"  # sandbox | sandbox-traces | rollouts | smollm2 | solutions
    rollouts: str = ""  # glob of rollouts .parquet / .jsonl files (source: rollouts)
    text_column: str = "completion"  # source rollouts: the column holding the reasoning text
    solutions: str = "math500,gsm8k,minerva"  # source solutions: shipped datasets whose solutions to mine
    n_prompts: int = 400  # prompts sampled (sources that sample)
    samples_per_prompt: int = 2  # completions per prompt
    temperature: float = 1.0  # sampling temperature
    max_new_tokens: int = 256  # completion cap (tokens)
    min_reward: float = 1.0  # keep rollouts with reward >= this (0: all)
    n_min: int = 2  # shortest n-gram mined (words)
    n_max: int = 5  # longest n-gram mined (words)
    min_df: int = 3  # a candidate appears in at least this many texts
    min_df_frac: float = 0.01  # ... and in at least this share of texts
    max_df_frac: float = 0.95  # ... and in at most this share (drops boilerplate)
    merge_ratio: float = 0.8  # drop a sub-gram seen this often only inside a longer gram
    max_candidates: int = 300  # candidates kept for labelling (most frequent first)
    annotator: str = "offline"  # offline | llm
    base_url: str = "http://127.0.0.1:8000/v1"  # llm annotator: OpenAI-compatible endpoint
    llm_model: str = "Qwen/Qwen2.5-1.5B-Instruct"  # llm annotator: model name at that endpoint
    serve: str = ""  # llm: a model to serve here for the step (smollm2 | a folder): hicra.serve
    api_key_env: str = "OPENAI_API_KEY"  # variable holding the endpoint's API key
    llm_timeout: float = 60.0  # seconds per request, in total (hicra.store.llm)
    threshold: float | None = None  # offline: None = calibrated
    veto: bool = False  # offline: also reject grams closer to an execution phrase than to any seed
    review: str = ""  # a reviewed CSV to import ("" = take the annotator's labels)
    sg_out: str = ""  # default <run_dir>/strategic_grams.json
    n_eval: int = 300  # held-out sandbox traces for precision / recall
    dev_n: int = 0  # real text: score a stratified sample of N dev phrases (0: all 247)
    seed: int = 0  # sampling and split seed

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}; got {self.source!r}")
        bad = [n for n in self.solutions.split(",") if n.strip() not in SOLUTION_SETS]
        if self.source == "solutions" and bad:
            raise ValueError(f"solutions: {bad} ship no solutions; pick from {SOLUTION_SETS}")
        if self.annotator not in ("offline", "llm"):
            raise ValueError(f"annotator must be offline or llm; got {self.annotator!r}")
        if self.source == "rollouts" and not self.rollouts:
            raise ValueError(
                "source 'rollouts' needs rollouts: a glob such as runs/demo/train-hicra-s0/rollouts/*.parquet"
            )

    @property
    def is_sandbox(self) -> bool:
        return self.source.startswith("sandbox") or self.source == "rollouts"


def _sandbox_cfg(cfg: GramsConfig):
    return cfg.sandbox_config()


def collect_rollouts(cfg: GramsConfig, progress: bool = True) -> list[dict]:
    """``[{"prompt", "completion", "reward"}]`` from the configured source."""

    if cfg.source == "rollouts":
        files = sorted(glob.glob(str(resolve(cfg.rollouts))))
        if not files:
            raise FileNotFoundError(f"no rollouts match {cfg.rollouts!r} (train first: python -m hicra.train)")

        df = pd.concat([pd.DataFrame(read_jsonl(f)) if f.endswith(".jsonl") else pd.read_parquet(f) for f in files])
        if cfg.text_column not in df.columns:
            raise ValueError(
                f"{cfg.rollouts!r} has no column {cfg.text_column!r} (columns: {list(df.columns)}); set text_column"
            )
        df = df.rename(columns={cfg.text_column: "completion"})
        for col, default in (("prompt", ""), ("reward", 1.0)):
            df[col] = df[col] if col in df.columns else default
        return df[["prompt", "completion", "reward"]].to_dict("records")
    if cfg.source == "solutions":
        rows = []
        for name in [n.strip() for n in cfg.solutions.split(",")]:
            data, split = (name[:-6], "train") if name.endswith("-train") else (name, "test")
            rows += [
                {"prompt": r["problem"], "completion": r["solution"], "reward": 1.0, "source": name}
                for r in load_benchmark(data, split=split)
                if r.get("solution")
            ]
        return rows
    if cfg.source.startswith("sandbox"):
        scfg = _sandbox_cfg(cfg)
        tasks = make_tasks(scfg.world_config(), "train", cfg.n_prompts, allow_fewer=True)
        if cfg.source == "sandbox-traces":
            rng = random.Random(cfg.seed)
            traces = [
                (t, make_trace(t, rng, scfg.world_config())) for t in tasks for _ in range(cfg.samples_per_prompt)
            ]
            return [{"prompt": prompt(t), "completion": tr.text, "reward": float(tr.correct)} for t, tr in traces]

        model, tok = load(build(scfg)["model_dir"])
        outs = sample(
            model,
            tok,
            [prompt(t) for t in tasks],
            n=cfg.samples_per_prompt,
            temperature=cfg.temperature,
            max_new_tokens=cfg.max_new_tokens,
            seed=cfg.seed,
            progress=progress,
        )
        return [
            {"prompt": prompt(t), "completion": o, "reward": float(verify(t, o))}
            for t, os_ in zip(tasks, outs)
            for o in os_
        ]

    rows = load_benchmark("gsm8k", split="train", limit=cfg.n_prompts)
    model, tok = load_model("smollm2")
    prompts = chat_prompts(tok, [r["problem"] for r in rows])
    outs = sample(
        model,
        tok,
        prompts,
        n=cfg.samples_per_prompt,
        temperature=cfg.temperature,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed,
        progress=progress,
        batch_size=16,
    )
    return [
        {"prompt": r["problem"], "completion": o, "reward": float(is_correct(o, r["answer"]))}
        for r, os_ in zip(rows, outs)
        for o in os_
    ]


def cached_rollouts(cfg: GramsConfig, run: Path, progress: bool = True) -> list[dict]:
    """``collect_rollouts``, saved to ``<run_dir>/rollouts.parquet``; reused while the sampling settings
    are unchanged (so rerunning with ``--review`` or another annotator does not sample again)."""

    keys = (
        "source",
        "rollouts",
        "solutions",
        "text_column",
        "n_prompts",
        "samples_per_prompt",
        "temperature",
        "max_new_tokens",
        "seed",
        "sandbox_seed",
        "sandbox",
    )
    want = {k: getattr(cfg, k) for k in keys}
    path, meta = run / "rollouts.parquet", run / "rollouts.json"
    if cfg.source != "rollouts" and path.exists() and meta.exists() and json.loads(meta.read_text()) == want:
        return pd.read_parquet(path).to_dict("records")
    rows = collect_rollouts(cfg, progress)

    write_parquet(path, pd.DataFrame(rows).astype({"prompt": str}))
    write_json(meta, want)
    return rows


def make_annotator(cfg: GramsConfig, exclude=(), model=None, endpoint=None):
    """``model``: an already loaded embedding model to share (offline annotator); ``endpoint``: a
    ``hicra.serve.Endpoint`` (llm annotator; default: the config's base_url and llm_model)."""

    if cfg.annotator == "offline":
        return OfflineAnnotator(threshold=cfg.threshold, exclude=list(exclude), veto=cfg.veto, model=model)

    ep = endpoint or Endpoint(cfg.base_url, cfg.llm_model, cfg.llm_model, timeout=cfg.llm_timeout)
    batch = 20  # candidates a request; an answer needs ~15-25 tokens each, so the cap stops a rambling model
    client = ChatClient(
        ep.base_url,
        ep.model,
        api_key_env=cfg.api_key_env,
        timeout=ep.timeout,
        concurrency=ep.concurrency,
        cache=resolve(cfg.run_dir) / "llm_cache.jsonl",
        max_tokens=32 * batch + 64,
    )
    return LLMAnnotator(client, batch_size=batch, label=ep.label)


def real_dev_report(annotator, cfg: GramsConfig) -> dict:
    """Precision / recall on ``data/grams/real_dev.jsonl``; for an LLM annotator also its phrase-level agreement
    (share and Cohen's kappa on strategic yes / no) with the offline annotator on the same phrases."""

    seeds = [normalize(g["gram"]) for g in json.loads(SEEDS.read_text())["grams"]]  # shipped seed list
    dev = real_dev_quality(annotator, seeds=seeds, n=cfg.dev_n, seed=cfg.seed)
    out = {k: dev[k] for k in ("all", "not_seeds", "unparsed")}
    if cfg.annotator == "llm":
        off = real_dev_quality(
            make_annotator(dataclasses.replace(cfg, annotator="offline")), seeds=seeds, n=cfg.dev_n, seed=cfg.seed
        )
        out["offline"] = {k: off[k] for k in ("all", "not_seeds")}
        out["agreement_with_offline"] = label_agreement(dev["labels"], off["labels"])
    return out


def label_agreement(a: list[bool], b: list[bool]) -> dict:
    """Share of equal yes / no labels and Cohen's kappa."""
    from sklearn.metrics import cohen_kappa_score

    kappa = float(cohen_kappa_score(a, b)) if len(set(a) | set(b)) > 1 else float("nan")
    return {"n": len(a), "agree": sum(x == y for x, y in zip(a, b)) / len(a) if a else float("nan"), "kappa": kappa}


def sandbox_tokenizer(cfg: GramsConfig):
    return load_tokenizer(build(_sandbox_cfg(cfg))["model_dir"])


def run(cfg: GramsConfig, progress: bool = True) -> dict:
    """The whole step; writes rollouts, candidates, review sheet, SG file and quality into ``run_dir``."""

    run = start_step(cfg, "01_strategic_grams")
    rollouts = cached_rollouts(cfg, run, progress)
    good = [r["completion"] for r in rollouts if (r["reward"] or 0) >= cfg.min_reward and r["completion"]]
    if not good:
        raise ValueError(
            f"none of {len(rollouts)} rollouts has reward >= {cfg.min_reward}; lower min_reward "
            "or sample more (n_prompts, samples_per_prompt)"
        )
    cands = mine(
        good,
        cfg.n_min,
        cfg.n_max,
        cfg.min_df,
        cfg.min_df_frac,
        cfg.max_df_frac,
        cfg.merge_ratio,
        cfg.max_candidates,
        progress=progress,
    )
    if not cands:
        raise ValueError(f"mining {len(good)} rollouts left no candidate; lower min_df / min_df_frac")
    evidence(cands, good, reference=list(dict.fromkeys(str(r["prompt"]) for r in rollouts if r.get("prompt"))))

    with endpoint(cfg, run) as ep:  # a local server lives only while the LLM labels (cfg.serve)
        annotator = make_annotator(cfg, endpoint=ep)
        judgements = annotator.annotate(cands)
        dev = None if cfg.is_sandbox else real_dev_report(annotator, cfg)
    pd.DataFrame([{**dataclasses.asdict(c), **dataclasses.asdict(j)} for c, j in zip(cands, judgements)]).to_csv(
        run / "candidates.csv", index=False
    )
    export_review(cands, judgements, run / "review.csv", run / "review.md")
    if cfg.review:
        grams, reviewer = import_review(resolve(cfg.review)), "person"
    else:
        grams, reviewer = (
            [{"gram": j.gram, "kind": j.kind} for j in judgements if j.strategic],
            "none (annotator labels)",
        )
    if dev is not None:  # kept even when no gram is accepted: the measurement cost the endpoint's time
        write_json(run / "real_dev.json", {"annotator": annotator.name, **dev})
    if not grams:
        unparsed = sum(j.note == "unparsed" for j in judgements)
        raise ValueError(
            f"the annotator accepted no candidate ({unparsed} of {len(judgements)} answers could not be "
            "parsed); review run_dir/review.csv by hand and pass --review"
            + ("; the dev-set report is in run_dir/real_dev.json" if dev is not None else "")
        )
    sg_path = resolve(cfg.sg_out) if cfg.sg_out else run / "strategic_grams.json"
    provenance = {
        "source": cfg.source,
        "rollouts": len(rollouts),
        "successful_rollouts": len(good),
        "annotator": annotator.name,
        "model": getattr(annotator, "label", None),
        "threshold": getattr(annotator, "threshold", None),
        "reviewed_by": reviewer,
        "review_file": cfg.review or None,
    }
    write_final(sg_path, grams, provenance)
    summary = {
        "run_dir": str(run),
        "sg_file": str(sg_path),
        "n_grams": len(grams),
        "n_candidates": len(cands),
        "n_rollouts": len(rollouts),
        "n_successful": len(good),
        "annotator": annotator.name,
        "threshold": getattr(annotator, "threshold", None),
        "precision": None,
        "recall": None,
    }
    if cfg.is_sandbox:
        tok = sandbox_tokenizer(cfg)
        q = sandbox_quality([g["gram"] for g in grams], tok, n=cfg.n_eval)
        summary.update(precision=q["precision"], recall=q["recall"], quality=q)
        if cfg.annotator == "offline" and not cfg.review:
            held = make_annotator(cfg, exclude=[g for g, _ in ALL_GRAMS], model=annotator.model)  # no second load
            hj = held.annotate(cands)
            hq = sandbox_quality([j.gram for j in hj if j.strategic] or ["\x00"], tok, n=cfg.n_eval)
            summary["holdout"] = {
                "precision": hq["precision"],
                "recall": hq["recall"],
                "n_seeds": len(held.seeds),
                "n_grams": sum(j.strategic for j in hj),
                "threshold": held.threshold,
            }
    else:  # real text: the annotator's precision / recall on the labelled dev set (and, for an LLM, its
        summary["real_dev"] = dev  # agreement with the offline annotator there)

    setup_style()
    summary["figures"] = [
        save_step_figure(fig_grams(pd.read_csv(run / "candidates.csv"), summary), cfg, "fig_strategic_grams")
    ]
    write_json(run / "grams_summary.json", summary)
    return summary
