"""Sandbox world, ground-truth spans vs the tagger, oracle, determinism, CLI."""

import json
import random
import subprocess
import sys

import pytest
import torch
from conftest import TINY

from hicra.method.tagger import normalize_text
from hicra.sandbox import ALL_GRAMS, SandboxConfig, WorldConfig, build, classify_failure, make_tasks, make_trace, verify
from hicra.sandbox.build import train_tokenizer
from hicra.sandbox.world import Task, chain_expr


@pytest.fixture(scope="module")
def world():
    wc = WorldConfig(seed=0)
    rng = random.Random(0)
    tasks = make_tasks(wc, "train", 300)
    traces = [make_trace(t, rng, wc) for t in tasks]
    return wc, tasks, traces


def test_grams_cover_three_kinds():
    grams = {g for g, _ in ALL_GRAMS}
    assert len(grams) >= 40
    assert {k for _, k in ALL_GRAMS} == {"deduction", "branching", "backtracing"}


def test_spans_are_the_phrases(world):
    _, _, traces = world
    for tr in traces:
        for s, e, g, _ in tr.spans:
            assert normalize_text(tr.text[s:e]) == g
    styles = {tr.style for tr in traces}
    assert styles == {"careful", "hasty"}
    shown = " ".join(tr.text for tr in traces)
    assert any(c.isupper() for c in shown) and "\u2019" in shown  # case and apostrophe variety


def test_verifier_and_generator_agree(world):
    _, tasks, traces = world
    for t, tr in zip(tasks, traces):
        assert verify(t, tr.text) == tr.correct
    assert all(tr.correct for tr in traces if tr.style == "careful")
    assert not all(tr.correct for tr in traces if tr.style == "hasty")


def test_verifier_rejects_bad_answers():
    t = Task([3, 7, 5], 26)
    assert verify(t, r"\boxed{3 * 7 + 5}") and verify(t, r"so \boxed{(3 * 7) + 5}")
    assert not verify(t, r"\boxed{3 * 7}")  # a number unused
    assert not verify(t, r"\boxed{26}")
    assert not verify(t, "3 * 7 + 5 = 26")  # strict: no box
    assert not verify(t, r"\boxed{__import__('os')}")


def test_oracle():
    t = Task([3, 7, 5], 26)
    assert classify_failure(t, r"Let's try 3 * 7 = 21. 21 + 5 = 26. \boxed{(3 * 7) + 5}") is None
    assert classify_failure(t, r"Let's try 3 * 7 = 24. 24 - 5 = 19. \boxed{(3 * 7) - 5}") == "execution"
    # a slip in the text does not matter when the boxed expression is right
    assert classify_failure(t, r"Let's try 3 * 7 = 24. 24 + 5 = 29. \boxed{(3 * 7) + 5}") is None
    assert classify_failure(t, r"Let's try 3 + 7 = 10. 10 * 5 = 50. \boxed{(3 + 7) * 5}") == "planning"
    assert classify_failure(t, "Let's try 3 + 7 = 10.") == "planning"


def test_splits_disjoint():
    wc = WorldConfig(seed=0)
    key = lambda t: (tuple(sorted(t.numbers)), t.target)  # noqa: E731
    train = {key(t) for t in make_tasks(wc, "train", 500)}
    val = {key(t) for t in make_tasks(wc, "val", 100)}
    assert len(val) == 100 and not train & val
    with pytest.raises(ValueError, match="split must be"):
        make_tasks(wc, "dev", 3)


def test_chain_expr():
    assert chain_expr((3, 7, 5), ("*", "+")) == "(3 * 7) + 5"


def test_tagger_recovers_ground_truth_tokens(world):
    """With the ground-truth gram list, tagger tokens == tokens overlapping ground-truth spans."""
    _, _, traces = world
    tok = train_tokenizer([tr.text for tr in traces], 512)
    from hicra.grams.quality import token_masks

    got, gt = token_masks(traces, tok, [g for g, _ in ALL_GRAMS])  # the same truth the SG quality score uses
    assert (got == gt).all(), f"{int((got != gt).sum())} tokens differ from the ground truth"
    n_tokens, n_plan = len(gt), gt.sum()
    assert 0.1 < n_plan / n_tokens < 0.7


def test_tiny_build_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "a"))
    cfg = SandboxConfig(seed=1, **TINY)
    a = build(cfg, progress=False)
    assert not a["cached"] and 0 <= a["val_accuracy"] <= 1
    assert sum(a["errors"].values()) + round(a["val_accuracy"] * 4) == 4
    assert build(cfg)["cached"]
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "b"))
    b = build(cfg, progress=False)
    from safetensors.torch import load_file

    wa = load_file(f"{a['model_dir']}/model.safetensors")
    wb = load_file(f"{b['model_dir']}/model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.load(open(f"{a['model_dir']}/grams.json"))["grams"]


def test_cli_last_line_json(tmp_path):
    env = {"HICRA_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hicra.sandbox",
            "--seed",
            "2",
            "--sandbox",
            json.dumps(TINY),
            "--n_calibration",
            "4",
            "--run_dir",
            str(tmp_path / "run"),
            "--figures_dir",
            str(tmp_path / "fig"),
        ],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"model_dir", "cached", "build_seconds", "val_accuracy", "errors", "calibration", "figures"} <= set(out)
    assert out["cached"] is False and set(out["errors"]) == {"planning", "execution"}
    assert (tmp_path / "fig" / "sandbox_calibration.png").exists() and (tmp_path / "run" / "sandbox.json").exists()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hicra.sandbox",
            "--sandbox",
            '{"difficulty": "impossible"}',
            "--run_dir",
            str(tmp_path / "run2"),
            "--figures_dir",
            str(tmp_path / "fig"),
        ],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        timeout=120,
    )
    assert r.returncode != 0 and "difficulty must be one of" in r.stderr and "Traceback" not in r.stderr


def test_cache_folder_can_move(tmp_path, monkeypatch):
    """A copied or moved cache (another machine, another user) is found at its new place."""
    import shutil

    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "a"))
    cfg = SandboxConfig(seed=2, **TINY)
    build(cfg, progress=False)
    shutil.move(str(tmp_path / "a"), str(tmp_path / "moved"))
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "moved"))
    info = build(cfg, progress=False)
    assert info["cached"] and info["model_dir"].startswith(str(tmp_path / "moved"))
    from hicra.sandbox.build import load

    load(info["model_dir"])


def test_verify_agrees_with_reasoning_gyms_scorer():
    """The fast exact verifier gives reasoning-gym's Countdown verdict on odd and ordinary answers alike."""
    import re

    from hicra.sandbox.world import Task, WorldConfig, _dataset, verify

    scorer = _dataset(WorldConfig(), 0, 1)
    exprs = [
        "3+4",
        "4 + 5 - 3 + 0",
        "(4+5)-3",
        "5-3+4*1",
        "4+5-3",
        " 4 + (5 - 3)",
        "5 - (3 - 4)",
        "3 4 5",
        "(3)(4)-5",
        "-3+5+4",
        "03+4+5",
        "3*4-5",
        "4*3*5",
        "3--4+5",
        "-(3-4)+5",
        "()",
        "4+5-3)",
        "((4+5)-3",
        "3+4+5",
        "+3+4+5",
        "4*5-3",
        "3*(4+5)",
        "(5-4)*3",
        "5*4*3",
        "3 * 4 - 5",
        "3 + 4 + 5 + 0",
    ]
    agree = 0
    for numbers in ([3, 4, 5], [3, 3, 4]):
        for target in range(-20, 70):
            task = Task(numbers, target)
            for e in exprs + [e.replace("5", "3") for e in exprs]:
                want = bool(re.fullmatch(r"[\d\s+\-*()]+", e)) and scorer.score_answer(e, task.as_entry()) == 1.0
                assert verify(task, f"so \\boxed{{{e}}}") == want, (numbers, target, e)
                agree += want
    assert agree >= 30  # the comparison includes many true verdicts, not only rejections


@pytest.mark.parametrize("regime", ["v2", "strategy", "execution"])
def test_default_and_regime_warm_starts_ship_and_install(regime, tmp_path, monkeypatch):
    """The default build (the regime map's ``v2``) and the map's other warm starts ship in data/sandbox/ and
    install into an empty cache without training (SFT's weights depend on the CPU and torch's thread count, so a
    rebuild elsewhere would start from other models); each is exactly the build its config describes (a changed
    default or regime must ship a rebuilt warm start)."""
    from dataclasses import asdict

    from hicra.regimes import REGIMES
    from hicra.sandbox.build import SHIPPED, SandboxConfig, build, load, model_dir
    from hicra.stepkit.config import from_dict

    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "cache"))
    assert REGIMES["v2"] == {}  # the v2 regime is the default build
    cfg = from_dict(SandboxConfig, REGIMES[regime])
    assert (SHIPPED / model_dir(cfg).name / "summary.json").exists(), (
        "SandboxConfig defaults changed: run `python -m hicra.sandbox --force true` and copy the cache folder "
        "into data/sandbox/ (see data/sandbox/README.md)"
        if regime == "v2"
        else f"regime {regime!r} has no shipped warm start: build it with `OMP_NUM_THREADS=1 python -m hicra.regimes "
        f"--warm_start {regime} --out /tmp/w.json` and copy its cache folder into data/sandbox/"
    )
    info = build(cfg)
    assert info["shipped"] and info["model_dir"] == str(model_dir(cfg))
    shipped = json.loads((model_dir(cfg) / "summary.json").read_text())
    # its config, with the thread count its SFT ran with where recorded (beside it: the builds predate the config
    # field; the default v2 build recorded none, data/sandbox/README.md)
    threads = {"torch_threads": shipped["torch_threads"]} if "torch_threads" in shipped else {}
    want = {k: v for k, v in asdict(cfg).items() if threads or k != "torch_threads"}
    assert {**shipped["config"], **threads} == want
    model, tok = load(info["model_dir"])
    assert sum(p.numel() for p in model.parameters()) == info["params"] and tok.vocab_size <= cfg.vocab_size
    assert "shipped" not in build(cfg) and build(cfg)["cached"]  # the second call finds the cache


def test_warm_start_validation_is_scored_once_and_reread(private_cache):
    """Every run from one warm start opens with the same validation (same model, tasks and sampling seed);
    ``validator(...).initial`` samples it once, keeps it beside the warm start, and rereads it only while the
    weights and the settings are the ones that produced it."""
    import os

    from hicra.sandbox.build import load
    from hicra.sandbox.rl import validator

    cfg = SandboxConfig(**TINY)
    info = build(cfg, progress=False)
    model, tok = load(info["model_dir"])
    val = validator(cfg, 4, k=3, max_new_tokens=12, warm_dir=info["model_dir"])
    first = val.initial(model, tok)
    assert first == val(model, tok)  # the same number a sampled step 0 gives
    [kept] = private_cache.glob("*/*/val_cache/*.json")
    kept.write_text(json.dumps({**json.loads(kept.read_text()), "val_accuracy": 0.123}))
    assert val.initial(model, tok) == 0.123  # read back, not sampled
    other = validator(cfg, 4, k=2, max_new_tokens=12, warm_dir=info["model_dir"])
    assert other.initial(model, tok) == other(model, tok)  # other settings: their own entry
    weights = next(private_cache.glob("*/*/model.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # a rebuild's weights
    assert val.initial(model, tok) == first
    assert len(list(private_cache.glob("*/*/val_cache/*.json"))) == 3
