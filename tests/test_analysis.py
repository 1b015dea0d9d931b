"""Error analysis (Fig 4: oracle, LLM judge on a loopback server, agreement) and planning vs fork tokens (Fig 9)."""

import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY

from hicra import error_analysis as ER
from hicra import forks as FK
from hicra.sandbox.world import WorldConfig, make_tasks, make_trace, prompt, verify

_STEP = re.compile(r"(-?\d+) ([+\-*]) (-?\d+) = (-?\d+)")


def _wrong_step(text):
    return any(
        (int(a) + int(b) if o == "+" else int(a) - int(b) if o == "-" else int(a) * int(b)) != int(r)
        for a, o, b, r in _STEP.findall(text)
    )


@pytest.fixture
def run_dir(tmp_path):
    """A run folder with two steps of failed and correct sandbox rollouts (some with a wrong step)."""
    wc, rng = WorldConfig(), random.Random(0)
    tasks = make_tasks(wc, "train", 40)
    d = tmp_path / "train-hicra-s0"
    (d / "rollouts").mkdir(parents=True)
    (d / "params.json").write_text(json.dumps({"method": "hicra", "seed": 0}))
    for step in (1, 2):
        rows = []
        for i, t in enumerate(tasks[step * 10 : step * 10 + 20]):
            tr = make_trace(t, rng, wc, style="hasty")
            text = tr.text
            if i % 3 == 0:  # corrupt the first written result: an execution error
                m = _STEP.search(text)
                text = text[: m.start(4)] + str(int(m.group(4)) + 1) + text[m.end(4) :]
            rows.append(
                {
                    "prompt": prompt(t),
                    "completion": text,
                    "reward": float(verify(t, text)),
                    "step": step,
                    "planning_spans": "[]",
                }
            )
        pd.DataFrame(rows).to_parquet(d / "rollouts" / f"step_{step:06d}.parquet")
    return d


def test_oracle_counts_by_step(run_dir):
    df = ER.failed_rollouts([run_dir])
    assert len(df) > 0 and (df.reward < 1).all() and set(df.method) == {"hicra"}
    df["cause"] = ER.oracle_causes(df)
    assert set(df.cause) <= {"planning", "calculation"}
    assert (df.cause == "calculation").tolist() == [_wrong_step(c) for c in df.completion]
    t = ER.counts_by_step(df)
    assert t["Planning & Strategy"].sum() + t["Others"].sum() == len(df)
    assert ((0 <= t.planning_share) & (t.planning_share <= 1)).all()
    fig = ER.fig4(t)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="not a sandbox prompt"):
        ER.oracle_causes(pd.DataFrame({"prompt": ["What is 2+2?"], "completion": ["5"]}))
    with pytest.raises(FileNotFoundError, match="rollouts"):
        ER.failed_rollouts([run_dir.parent / "nothing"])


class _Judge(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        sol = body["messages"][-1]["content"].split("Failed solution:\n", 1)[1]
        if "Target: 1" in body["messages"][-1]["content"][:40]:
            content = "I cannot decide."  # malformed: no cause
        else:
            content = json.dumps({"cause": "calculation" if _wrong_step(sol) else "planning", "reason": "x"})
        self._answer(content)

    def _answer(self, content: str):
        data = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_judge_agrees_with_oracle_on_loopback(run_dir, tmp_path):
    from hicra.store.llm import ChatClient

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        client = ChatClient(
            f"http://127.0.0.1:{srv.server_address[1]}/v1", "judge", api_key_env=None, cache=tmp_path / "judge.jsonl"
        )
        df = ER.failed_rollouts([run_dir])
        truth, judged = ER.oracle_causes(df), ER.judge_causes(client, df, progress=False)
    finally:
        srv.shutdown()
    a = ER.agreement(truth, judged)
    assert a["n"] + a["unparsed"] == len(df) and a["accuracy"] == 1.0
    assert a["unparsed"] == sum("Target: 1" in p[:40] for p in df.prompt)


def test_fork_shares_and_entropies(tiny_sandbox):
    from hicra.method.tagger import PlanningTagger
    from hicra.sandbox.build import SandboxConfig, build, load

    model, tok = load(build(SandboxConfig(**TINY))["model_dir"])
    wc, rng = WorldConfig(), random.Random(1)
    tasks = make_tasks(wc, "val", 4)
    prompts = [prompt(t) for t in tasks]
    comps = [make_trace(t, rng, wc).text for t in tasks]
    recs = FK.token_entropies(model, tok, prompts, comps, batch_size=3, progress=False)
    assert [len(r["ids"]) for r in recs] == [len(tok(c, add_special_tokens=False)["input_ids"]) for c in comps]
    # the entropy at completion token 0 is that of the next-token distribution after the prompt
    ids = torch.tensor([tok(prompts[0], add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        p = torch.softmax(model(ids).logits[0, -1].float(), -1)
    assert recs[0]["entropy"][0] == pytest.approx(float(-(p * p.log()).sum()), rel=1e-4)
    tagger = PlanningTagger(["let's try", "let me check:", "wait,", "that doesn't work.", "therefore"], tok)
    s = FK.fork_shares(recs, tagger, rho=0.2)
    assert 0 <= s["planning_is_fork"] <= 1 and 0 <= s["fork_is_planning"] <= 1 and 0 < s["planning_ratio"] < 1
    assert FK.fork_shares(recs, tagger, rho=1.0)["planning_is_fork"] == 1.0  # every token is a fork
    html = FK.passage_html(tok, recs[0], tagger, s["threshold"], "test")
    assert FK.COLOURS["planning"] in html and FK.COLOURS["fork"] in html
    fig = FK.fig9([{"model": "m", "stage": "before RL", **s}, {"model": "m", "stage": "after RL", **s}])
    assert len(fig.axes) == 2


def test_claims_ab_exact_values_and_bootstrap_over_problems(tiny_sandbox):
    """Claim (a) and (b) statistics on hand-made entropies: planning tokens get 2.0 nats, execution 0.5."""
    from hicra.method.tagger import PlanningTagger
    from hicra.sandbox.build import SandboxConfig, build, load

    _, tok = load(build(SandboxConfig(**TINY))["model_dir"])
    tagger = PlanningTagger(["let's try"], tok)
    recs = []
    for text in ("let's try 3 + 4 = 7. \\boxed{7}", "5 + 6 = 11, let's try 11 - 2 = 9"):
        ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"])
        plan = tagger.mask(ids[None])[0]
        assert 0 < int(plan.sum()) < len(ids)
        recs.append({"ids": ids.numpy(), "entropy": (0.5 + 1.5 * plan.double()).numpy()})
    n_plan = sum(int(tagger.mask(torch.as_tensor(r["ids"])[None]).sum()) for r in recs)
    ratio = n_plan / sum(len(r["ids"]) for r in recs)
    c = FK.claims_ab(recs, tagger, rho=ratio, n_boot=200, seed=0)
    assert c["planning_entropy"] == pytest.approx(2.0) and c["execution_entropy"] == pytest.approx(0.5)
    assert c["entropy_gap"] == pytest.approx(1.5) and c["planning_ratio"] == pytest.approx(ratio)
    # the top-rho set with rho = the planning share is exactly the planning tokens
    assert c["planning_is_fork"] == pytest.approx(1.0) and c["fork_is_planning"] == pytest.approx(1.0)
    assert c["n_problems"] == 2 and c["ci"]["entropy_gap"] == pytest.approx([1.5, 1.5])
    # heterogeneous problems: the interval spans the per-problem values and contains the pooled estimate
    recs[1] = {**recs[1], "entropy": recs[1]["entropy"] * 2}
    c = FK.claims_ab(recs, tagger, rho=0.2, n_boot=300, seed=0)
    lo, hi = c["ci"]["planning_entropy"]
    assert 2.0 - 1e-9 <= lo < c["planning_entropy"] < hi <= 4.0 + 1e-9
    assert FK.claims_ab(recs, tagger, rho=0.2, n_boot=0).get("ci") is None
    s = FK.fork_shares(recs, tagger, rho=0.2)  # the step reports claims_ab's shares as Fig 9's: the same numbers
    assert {k: c[k] for k in s} == pytest.approx(s)
    fig = FK.fig_claims([{"model": "m", "texts": "samples", **c}])
    assert len(fig.axes) == 1
    # a text where the tagger finds no planning token: nan statistics still draw (the tiny sandbox's case)
    none = FK.claims_ab(
        [{"ids": recs[0]["ids"][:1], "entropy": recs[0]["entropy"][:1]}], PlanningTagger(["zzz"], tok), n_boot=20
    )
    assert none["planning_ratio"] == 0 and np.isnan(none["planning_entropy"])
    assert len(FK.fig_claims([{"model": "m", "texts": "samples", **none}]).axes) == 1


def _real_text_run(tmp_path):
    """A hand-made run in the shape a GPU recipe writes: chat prompts from a math set, no validation lines."""
    d = tmp_path / "train-hicra-s0"
    (d / "rollouts").mkdir(parents=True)
    (d / "params.json").write_text(json.dumps({"method": "hicra", "seed": 0}))
    from hicra.method.dynamics import RECORD_KEYS

    lines = [
        {**{k: 0.5 for k in RECORD_KEYS}, "step": s, "reward": 0.1 * s, "method": "hicra", "seed": 0} for s in (1, 2, 3)
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    for s in (1, 2, 3):
        pd.DataFrame(
            [
                {
                    "prompt": [{"role": "user", "content": "Let $x$ be ... Find x."}],
                    "completion": c,
                    "reward": 0.0,
                    "step": s,
                }
                for c in ("3 + 4 = 8, so \\boxed{8}", "I give up")
            ]
        ).to_parquet(d / "rollouts" / f"step_{s:06d}.parquet")
    return d


def test_figures_and_fig4_on_a_real_text_run(tmp_path):
    """The rehearsal found both: runs without validation get a final table of training reward (not a KeyError),
    and Fig 4 on real text needs the judge (a clear error without one; with one, the judge's causes are the
    figure's), not the sandbox oracle."""
    from hicra.figures import FiguresConfig
    from hicra.figures import run as figures_run

    d = _real_text_run(tmp_path)
    res = figures_run(
        FiguresConfig(run_dir=str(tmp_path / "f"), figures_dir=str(tmp_path / "fig"), runs=[str(d)], tag="t")
    )
    assert res["final_column"] == "reward" and res["final_accuracy"][0]["reward"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="no oracle"):
        ER.run(ER.ErrorsConfig(run_dir=str(tmp_path / "e"), figures_dir=str(tmp_path / "fig"), runs=[str(d)]))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        s = ER.run(ER.ErrorsConfig(run_dir=str(tmp_path / "e"), **_judged(tmp_path, d, srv)), progress=False)
    finally:
        srv.shutdown()
    assert s["source"] == "LLM judge" and s["n_judged"] == 6 and "accuracy" not in s["judge"]
    assert s["planning_share"]["hicra"]["first"] == 0.5  # one arithmetic slip, one give-up per step
    assert (tmp_path / "fig" / "fig4_errors_t.png").exists()


def _judged(tmp_path, run, srv) -> dict:
    """ErrorsConfig fields for Fig 4 of ``run`` judged by the loopback server ``srv``."""
    return dict(
        figures_dir=str(tmp_path / "fig"),
        runs=[str(run)],
        judge=True,
        base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1",
        llm_model="judge",
        api_key_env="",
        bins=3,
        tag="t",
    )


class _OffFormatJudge(_Judge):
    """A judge too small to follow the format (the rehearsal's SmolLM2 answers the math problem instead)."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer("The answer is $k = 2015$.")


def test_an_off_format_judge_stops_fig4_unless_its_answers_are_kept_as_unclassified(tmp_path):
    d = _real_text_run(tmp_path)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _OffFormatJudge)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    cfg = _judged(tmp_path, d, srv)
    try:
        with pytest.raises(ValueError, match="unjudged: keep"):
            ER.run(ER.ErrorsConfig(run_dir=str(tmp_path / "e1"), **cfg), progress=False)
        s = ER.run(ER.ErrorsConfig(run_dir=str(tmp_path / "e2"), unjudged="keep", **cfg), progress=False)
    finally:
        srv.shutdown()
    table = pd.read_csv(tmp_path / "e2" / "errors_by_step.csv")
    assert table[ER.UNCLASSIFIED].sum() == s["n_judged"] > 0  # every failure drawn, none given a cause
    assert table[["Planning & Strategy", "Others"]].sum().sum() == 0 and table.planning_share.isna().all()
    assert (tmp_path / "fig" / "fig4_errors_t.png").exists()
    with pytest.raises(ValueError, match="unjudged must be"):
        ER.ErrorsConfig(unjudged="skip")
