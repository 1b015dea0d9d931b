"""Build (or reuse) the sandbox's tokenizer and tiny warm-started model.

Paper analogue: the base model RL starts from. Here a byte-level BPE tokenizer
(digits split, so strategic grams tokenise as messily as with real tokenizers)
is trained on the world's traces, a tiny Llama is built from a config, and
TRL's ``SFTTrainer`` warm-starts it on a mix of careful and hasty traces. The
result is saved in Hugging Face format under the cache and reloaded with
``from_pretrained``, the same path a real model takes. Calibration samples the
validation set at temperature 1 and the oracle labels every failure.

    from hicra.sandbox.build import SandboxConfig, build
    info = build(SandboxConfig(seed=0))      # cached: the second call returns at once
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from hicra.method.stats import wilson
from hicra.sandbox.config import BUILD_VERSION, SandboxConfig  # noqa: F401  (SandboxConfig: re-exported)
from hicra.sandbox.world import ALL_GRAMS, FAMILY, WorldConfig, classify_failure, make_tasks, make_trace, prompt
from hicra.store.paths import cache_dir
from hicra.store.sgfile import write_sg_file

SPECIALS = ["<|endoftext|>", "<|pad|>"]


# --------------------------------------------------------------------------
# pieces


def train_tokenizer(texts: list[str], vocab_size: int, split_digits: bool = True):
    """Byte-level BPE wrapped as a fast HF tokenizer. ``split_digits``: one token per digit (v1, like
    Llama 2 / SmolLM2); else a number is pre-tokenised as one unit, so BPE learns frequent numbers as
    single tokens (v2, like GPT-2), and arithmetic becomes a lookup the tiny model can learn."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    # digits are split one per token; a preceding space stays glued to the first digit (" 2", "1")
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r" ?[0-9]" if split_digits else r" ?-?[0-9]+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token=SPECIALS[0], pad_token=SPECIALS[1])


def new_model(cfg: SandboxConfig, tok):
    import torch  # noqa: PLC0415  torch: the sandbox package stays light; only a build needs it
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    mc = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.hidden_size * 3,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.eos_token_id,
    )
    return LlamaForCausalLM(mc)


def sft_examples(cfg: SandboxConfig, wc: WorldConfig) -> list[dict]:
    rng = random.Random(cfg.seed)
    tasks = make_tasks(wc, cfg.sft_split, cfg.n_train_tasks, allow_fewer=cfg.sft_split != "train")
    return [
        {"prompt": prompt(t), "completion": make_trace(t, rng, wc).text}
        for t in tasks
        for _ in range(cfg.traces_per_task)
    ]


def warm_start(cfg: SandboxConfig, model, tok, examples: list[dict], out: Path, progress: bool = True):
    """TRL SFT on prompt/completion pairs (loss on completions only), via ``hicra.training.trainer``."""
    from hicra.training.sft import sft  # noqa: PLC0415  TRL + torch: the sandbox package stays light; only a build trains

    return sft(
        model,
        tok,
        examples,
        out / "sft",
        steps=cfg.sft_steps,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        seed=cfg.seed,
        progress=progress,
    )


def calibrate(cfg: SandboxConfig, model, tok, wc: WorldConfig, n: int | None = None, temperature: float = 1.0) -> dict:
    """Validation accuracy at temperature 1 and the oracle's failure kinds."""
    from hicra.training.generate import sample  # noqa: PLC0415  torch: only a build samples

    tasks = make_tasks(wc, "val", n or cfg.n_val, allow_fewer=True)
    outs = sample(
        model,
        tok,
        [prompt(t) for t in tasks],
        n=1,
        temperature=temperature,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed,
    )
    kinds = [classify_failure(t, o[0]) for t, o in zip(tasks, outs)]
    return {
        "val_accuracy": sum(k is None for k in kinds) / len(kinds),
        "n_val": len(kinds),
        "errors": {"planning": kinds.count("planning"), "execution": kinds.count("execution")},
        "samples": [{"prompt": prompt(t), "completion": o[0], "failure": k} for t, o, k in zip(tasks, outs, kinds)],
    }


# --------------------------------------------------------------------------
# build / load


def model_dir(cfg: SandboxConfig) -> Path:
    return cache_dir() / "sandbox" / f"{cfg.difficulty}-s{cfg.seed}-{cfg.key()}"


def build(cfg: SandboxConfig, force: bool = False, progress: bool = True) -> dict:
    """Build the world, tokenizer and warm-started model, or reuse the cached build.

    Returns the build summary (``model_dir``, ``cached``, ``build_seconds``,
    ``val_accuracy``, ``errors``); the folder also holds ``grams.json`` (the
    ground-truth SG file) and ``calibration.jsonl``.
    """
    import torch  # noqa: PLC0415  torch: the sandbox package stays light; only a build needs it

    target = model_dir(cfg)
    summary_path = target / "summary.json"
    if summary_path.exists() and not force:
        # the cache may have moved: model_dir is where it is now
        return {**json.loads(summary_path.read_text()), "model_dir": str(target), "cached": True}
    if not force and (shipped := SHIPPED / target.name / "summary.json").exists():
        return _install_shipped(shipped.parent, target)
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    wc = cfg.world_config()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)  # the recipe's, whatever runs beside this build (restored after)
    try:
        examples = sft_examples(cfg, wc)
        tok = train_tokenizer(
            [e["prompt"] + e["completion"] for e in examples[:20000]], cfg.vocab_size, cfg.split_digits
        )
        model = new_model(cfg, tok)
        losses = warm_start(cfg, model, tok, examples, work, progress)
        model.save_pretrained(work)
        tok.save_pretrained(work)
        shutil.rmtree(work / "sft", ignore_errors=True)
        write_sg_file(
            work / "grams.json",
            [{"gram": g, "kind": k} for g, k in ALL_GRAMS],
            {"annotator": "sandbox ground truth", "source": "hicra.sandbox.world.PHRASES", "seed": cfg.seed},
        )
        model, tok = load(work)
        cal = calibrate(cfg, model, tok, wc)
        with open(work / "calibration.jsonl", "w") as f:
            for s in cal.pop("samples"):
                f.write(json.dumps(s) + "\n")
        summary = {
            "model_dir": str(target),
            "build_seconds": round(time.time() - t0, 1),
            **cal,
            "params": sum(p.numel() for p in model.parameters()),
            "sft_final_loss": losses[-1]["loss"] if losses else None,
            "torch_threads": torch.get_num_threads(),  # SFT's weights depend on it (data/sandbox/README.md)
            "config": asdict(cfg),
        }
        (work / "summary.json").write_text(json.dumps(summary, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)  # atomic: a killed build leaves only a .building- folder
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(work, ignore_errors=True)
    return {**summary, "cached": False}


def build_apart(cfg: SandboxConfig) -> dict:
    """``build`` for rank 0 of a launched job: a build that needs SFT runs in a child process stripped of the
    job's distributed environment. (In the job's own process the SFT trainer would join the job's process
    group while the other ranks wait at a barrier: a deadlock.) Cached or shipped builds are read directly."""

    if not ((model_dir(cfg) / "summary.json").exists() or (SHIPPED / model_dir(cfg).name / "summary.json").exists()):
        dist = (
            "RANK",
            "LOCAL_RANK",
            "WORLD_SIZE",
            "LOCAL_WORLD_SIZE",
            "GROUP_RANK",
            "ROLE_RANK",
            "MASTER_ADDR",
            "MASTER_PORT",
            "TORCHELASTIC_RUN_ID",
            "ACCELERATE_USE_CPU",
        )
        env = {k: v for k, v in os.environ.items() if k not in dist}
        code = (
            "import json, sys; from hicra.sandbox.build import SandboxConfig, build; "
            "build(SandboxConfig(**json.loads(sys.argv[1])))"
        )
        subprocess.run([sys.executable, "-c", code, json.dumps(asdict(cfg))], env=env, check=True)
    return build(cfg)


SHIPPED = Path(__file__).resolve().parents[2] / "data" / "sandbox"


def _install_shipped(src: Path, target: Path) -> dict:
    """Copy a warm start shipped in ``data/sandbox/`` (same config hash) into the cache.

    The default build (seed 0) and the regime map's ``strategy`` and ``execution`` warm starts ship, built on
    the project's 2-core machine (data/sandbox/README.md): every clone starts RL from the same weights (SFT on
    different CPUs, or with another torch thread count, gives other weights: warm starts 4 points apart), and
    the demo skips ~9 min of SFT. ``--force true`` rebuilds it here."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".installing-"))
    try:
        for f in src.iterdir():
            if f.is_file() and f.name != "README.md":
                shutil.copy2(f, work / f.name)
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = json.loads((target / "summary.json").read_text())
    return {**summary, "model_dir": str(target), "cached": True, "shipped": True}


def load(path):
    """(model, tokenizer) of a sandbox build, via ``from_pretrained`` like any HF model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    return model.eval(), tok


def calibration_by_difficulty(
    cfg: SandboxConfig, model, tok, difficulties=None, n: int | None = None, temperature: float = 1.0
):
    """DataFrame: accuracy with Wilson 95% CI and oracle error counts per difficulty (default: those of
    the model's own family, hicra.sandbox.world.FAMILY)."""

    rows = []
    for d in difficulties or FAMILY.get(cfg.difficulty, (cfg.difficulty,)):
        c = dataclasses.replace(cfg, difficulty=d)
        r = calibrate(c, model, tok, c.world_config(), n=n, temperature=temperature)
        k = sum(s["failure"] is None for s in r["samples"])
        p, lo, hi = wilson(k, len(r["samples"]))
        rows.append(
            {
                "difficulty": d,
                "n": len(r["samples"]),
                "accuracy": p,
                "ci_lo": lo,
                "ci_hi": hi,
                "planning_errors": r["errors"]["planning"],
                "execution_errors": r["errors"]["execution"],
            }
        )
    return pd.DataFrame(rows)
