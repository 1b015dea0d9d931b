"""Two CPU processes (gloo) under `accelerate launch`: every method trains, the loss on every rank sees the HICRA
advantages, dynamic sampling stays in lockstep when only one rank refills, metrics are written once a step,
rollouts come from both ranks, and a checkpoint resumes across both processes. One launch of tests/mp_driver.py
(about a minute) serves all the checks, so they live in one test."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from hicra.training.trainer import METHODS

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _records(out: Path, name: str, rank: int, kind: str) -> list[dict]:
    recs = [torch.load(p) for p in sorted((out / name).glob(f"rank{rank}-*.pt"))]
    return [r for r in recs if r["kind"] == kind]


def _lines(out: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in open(out / "runs" / name / "metrics.jsonl")]


def _trl_advantage(trl: list[dict], prompt, completion) -> torch.Tensor:
    """TRL's group advantage of the row with these ids, generated on the same rank."""
    row = torch.cat([prompt, completion])
    hits = [
        b["advantages"][j]
        for b in trl
        for j in range(len(b["advantages"]))
        if torch.equal(torch.cat([b["prompt_ids"][j], b["completion_ids"][j]]), row)
    ]
    assert hits, "a row reached the loss that this rank never generated"
    return hits[0]


def test_two_processes(tiny_sandbox):
    out = tiny_sandbox / "mp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs/accelerate/cpu_2proc.yaml"),
        "--main_process_port",
        str(_free_port()),
        str(ROOT / "tests/mp_driver.py"),
        str(out),
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    assert "[mp_driver] rank 0 done" in p.stdout and "[mp_driver] rank 1 done" in p.stdout

    from hicra.method.tagger import PlanningTagger
    from hicra.sandbox.build import SandboxConfig, load, model_dir

    sys.path.insert(0, str(ROOT / "tests"))
    from mp_driver import SANDBOX

    build_dir = model_dir(SandboxConfig(**SANDBOX))
    tagger = PlanningTagger(str(build_dir / "grams.json"), load(build_dir)[1])

    # every method: one step on both ranks, one metrics line, both ranks' rollouts, the advantages of its rule
    planning = 0
    for method in METHODS:
        assert [x["step"] for x in _lines(out, method)] == [1], method
        assert json.loads((out / "runs" / method / "params.json").read_text())["processes"] == 2
        assert len(pd.read_parquet(out / "runs" / method / "rollouts" / "step_000001.parquet")) == 16  # 8 a rank
        for rank in (0, 1):
            trl, loss = _records(out, method, rank, "trl"), _records(out, method, rank, "loss")
            assert len(trl) == 1 and loss, (method, rank)
            for b in loss:
                cm = b["completion_mask"].bool()
                mask = tagger.mask(b["completion_ids"], b["completion_mask"]).bool() & cm
                for i in range(len(b["advantages"])):
                    A = _trl_advantage(trl, b["prompt_ids"][i], b["completion_ids"][i])
                    assert A != 0  # the alternating reward: every group has both rewards
                    adv = b["advantages"][i]
                    if method in ("hicra", "hicra_adaptive"):  # A + alpha|A| on planning tokens, A elsewhere
                        assert torch.allclose(adv[cm[i]], (A + b["alpha"] * A.abs() * mask[i].float())[cm[i]])
                        planning += int(mask[i].sum())
                    elif method == "hicra_gated":  # A, or A + alpha|A| on planning tokens only
                        boosted = ~torch.isclose(adv, A.expand_as(adv)) & cm[i]
                        assert not (boosted & ~mask[i]).any()
                        assert torch.allclose(adv[boosted], (A + 0.2 * A.abs()).expand(int(boosted.sum())))
                    elif method == "hicra_pr4997":  # A + alpha|A| on planning tokens (+ entropy tokens of long
                        boosted = ~torch.isclose(adv, A.expand_as(adv)) & cm[i]  # correct rows), A elsewhere
                        assert torch.allclose(adv[boosted], (A + 0.2 * A.abs()).expand(int(boosted.sum())))
                        assert not (mask[i] & ~boosted).any()  # every planning token is boosted
                        assert A > 0 or not (boosted & ~mask[i]).any()  # a failed row: planning tokens only
                    elif method == "hicra_verl":  # A, or A(1 + alpha) on the gated tokens
                        vals = adv[cm[i]]
                        assert (torch.isclose(vals, A) | torch.isclose(vals, A * 1.2)).all()
                    else:  # GRPO's (B,) advantage, unchanged
                        assert adv.dim() == 0 and adv == A
    assert planning > 0  # the mask was not empty: the HICRA checks above had something to check

    # dynamic sampling: rank 0's groups are all dead, rank 1's all live; both ran every refill round
    lines = _lines(out, "lockstep")
    assert [x["step"] for x in lines] == [1, 2]
    assert all(x["refill_rounds"] == 2 and x["live_groups"] == 0.5 for x in lines), lines
    assert len(_records(out, "lockstep", 0, "trl")) == len(_records(out, "lockstep", 1, "trl")) == 2 * 3
    for step in (1, 2):  # (1 + 2 rounds) x 8 rows x 2 ranks
        assert len(pd.read_parquet(out / "runs/lockstep/rollouts" / f"step_{step:06d}.parquet")) == 48

    # resume across both processes: steps once each, alpha identical on both ranks and in the metrics
    run = out / "runs" / "resume"
    lines = _lines(out, "resume")
    assert [x["step"] for x in lines] == [0, 1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    assert {p.name for p in (run / "checkpoint-3").glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    alphas = [{b["step"]: b["alpha"] for b in _records(out, "resume", r, "loss")} for r in (0, 1)]
    assert alphas[0] == alphas[1] and sorted(alphas[0]) == [0, 1, 2]  # the step count before each update
    assert [alphas[0][s] for s in (0, 1, 2)] == [x["alpha"] for x in lines[1:]]
