"""Issue 38 ("never lose a run", part 3): what a hostile user found after part 2. Each test failed on the code
before its fix: NaN weights with exit 0, NaN sampling options, a grader that hangs a thread, a user's file
replaced, a server that exhausts memory, a resume that mixes two runs; and the weak spots' one-line errors."""

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import ROOT, TINY, TINY_ROLLOUTS, sandbox_recipe, send_json

from hicra.store.runfolder import RunFolderError
from hicra.train import run

RUN = sandbox_recipe(**TINY_ROLLOUTS, val_every=0, val_n=4, val_k=1, save_steps=1, sandbox=TINY, method="grpo")


def _flags(d):
    return [
        x for k, v in d.items() if k != "sandbox" for x in (f"--{k}", json.dumps(v) if not isinstance(v, str) else v)
    ] + ["--sandbox", json.dumps(TINY)]


def _train(*argv, timeout=300):
    """The CLI in a child process, on the shared tiny build (HICRA_CACHE set by the tiny_sandbox fixture)."""
    return subprocess.run(
        [sys.executable, "-m", "hicra.train", *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


# --------------------------------------------------------------------------
# 1. a NaN model with exit 0


def test_an_update_that_makes_the_weights_non_finite_stops_the_run(tiny_sandbox):
    """lr 1e39 is finite as a Python float, infinite in fp32: loss and gradient norm of step 1 are finite (they
    come before the update), the weights after it are not. The run must stop at step 1 (exit 2, one line, advice
    that works), with no checkpoint or final model."""
    d = tiny_sandbox / "nan-weights"
    res = _train("--run_dir", str(d), *_flags(RUN), "--max_steps", "2", "--learning_rate", "1e39")
    err = res.stderr
    assert res.returncode == 2 and "error: step 1: the update left" in err and "non-finite" in err, err[-2000:]
    assert "Traceback" not in err and "lower learning_rate" in err and "--overwrite true" in err
    assert not (d / "final").exists() and not list(d.glob("checkpoint-*")) and not (d / "summary.json").exists()


def test_the_last_good_checkpoint_has_finite_weights(tiny_sandbox):
    """A checkpoint that is complete but whose weights are NaN is not 'good': the guard names the one before."""
    import math

    import torch
    from safetensors.torch import load_file, save_file

    from hicra.training.trainer import NonFiniteError, require_finite  # the trainer's guard (hicra.training.finite)

    d = tiny_sandbox / "two"
    run({**RUN, "run_dir": str(d), "max_steps": 2})
    f = d / "checkpoint-2" / "model.safetensors"
    weights = load_file(str(f))
    save_file({k: torch.full_like(v, math.nan) if v.is_floating_point() else v for k, v in weights.items()}, str(f))
    with pytest.raises(NonFiniteError, match=r"Last good checkpoint: .*checkpoint-1\."):
        require_finite({"loss": math.nan}, 3, d)


# --------------------------------------------------------------------------
# 2. NaN sampling and optimiser options: tests/test_safety.py::test_dry_run_fails_where_the_real_run_would


# --------------------------------------------------------------------------
# 3. the grader in a worker thread

HOSTILE = [
    r"\frac{1}{" + r"1+\frac{1}{" * 19 + "2" + "}" * 19 + "}",  # a 20-level continued fraction
    r"10^{9}!",
    r"\Gamma(10^{9})",
    r"\binom{10^{9}}{10^{8}}",
    r"9^{9999 \cdot 9999}",
    r"(9^{9999})^{9999}",
    r"{9^{9999}}^{9999}",
    r"\left(9^{9999}\right)^{9999}",
    r"\prod_{n=1}^{9999} n^{9999}",
]


def test_no_answer_holds_a_worker_thread():
    """Each answer the probe found (> 60 s, or never returning: a big-integer power holds the interpreter lock)
    returns, incorrect, while a watchdog waits; a watchdog join, not a timing."""
    from hicra.training.rewards import is_correct

    for answer in HOSTILE:
        assert len(answer) <= 300
        out = {}
        t = threading.Thread(
            target=lambda a=answer, out=out: out.update(r=is_correct(rf"\boxed{{{a}}}", "5")), daemon=True
        )
        t.start()
        t.join(60)
        assert not t.is_alive() and out == {"r": False}, answer


def test_the_grading_worker_is_reused_and_replaced_after_its_deadline():
    from hicra import grading

    assert grading.verify_bounded(r"\frac{1}{2}", "0.5") and grading.verify_bounded("x+y", "y+x")
    pid = grading.worker_pids()
    assert len(pid) == 1 and not grading.verify_bounded("3", "4") and grading.worker_pids() == pid  # reused
    assert grading.verify_bounded(r"\frac{2}{4}", "0.5", deadline=0.0) is False  # past its deadline: killed
    assert pid[0] not in grading.worker_pids()
    assert grading.verify_bounded(r"\frac{3}{6}", "0.5")  # a fresh worker grades the next answer


# --------------------------------------------------------------------------
# 4. a user's file destroyed


def test_a_folder_with_foreign_files_is_refused_and_left_as_it_was(tmp_path):
    d = tmp_path / "R"
    d.mkdir()
    (d / "README.md").write_text("notes\n")
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(RunFolderError, match=r"holds files that are not a run's \(README.md\)"):
            run({**RUN, "run_dir": str(d), "max_steps": 1, **flags})
    assert sorted(p.name for p in d.iterdir()) == ["README.md"] and (d / "README.md").read_text() == "notes\n"
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        run({**RUN, "run_dir": str(f), "max_steps": 1})
    assert f.read_text() == "x"


def test_overwrite_moves_only_run_files_and_trl_s_model_card_is_the_run_s(tiny_sandbox):
    d = tiny_sandbox / "run"
    run({**RUN, "run_dir": str(d), "max_steps": 1})
    assert "trained using [TRL]" in (d / "README.md").read_text()  # TRL's model card: the run's own file
    run({**RUN, "run_dir": str(d), "max_steps": 1, "overwrite": True})
    (aside,) = d.glob("replaced-*")
    assert (aside / "README.md").exists() and (aside / "metrics.jsonl").exists()


# --------------------------------------------------------------------------
# 5. memory exhaustion from a server, and the client's weak spots


class _Handler(BaseHTTPRequestHandler):
    counts: dict = {}

    def log_message(self, *a):
        pass

    def do_POST(self):
        mode = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["model"]
        self.counts[mode] = self.counts.get(mode, 0) + 1
        if mode == "flood":  # 1 MiB chunks for ever (until the client hangs up)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
            try:
                while True:
                    self.wfile.write(b"[" * 2**20)
            except OSError:
                return
        if mode == "down":
            time.sleep(0.2)  # every worker thread holds a request when the first one fails
            return self._send(500, {"error": "boom"})
        content = "" if mode == "empty" else "ok"
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})

    def _send(self, code, obj):
        send_json(self, code, obj)


@pytest.fixture
def server():
    _Handler.counts = {}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_a_server_that_streams_for_ever_cannot_fill_the_memory(server):
    from hicra.store.llm import ChatClient, LLMError

    c = ChatClient(server, "flood", api_key_env=None, timeout=60, max_retries=0, max_response_bytes=4 * 2**20)
    out = {}

    def ask():
        try:
            c.chat([{"role": "user", "content": "x"}])
        except LLMError as e:
            out["err"] = str(e)

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    t.join(50)  # a watchdog: within the 60 s timeout, so only the size cap can end the request
    assert not t.is_alive() and "sent more than 4,194,304 bytes" in out.get("err", ""), out
    with pytest.raises(ValueError, match="max_response_bytes must be a positive integer"):
        ChatClient(server, "m", max_response_bytes=0)


def test_a_failed_chat_many_sends_no_queued_request_and_never_caches_an_empty_answer(server, tmp_path):
    from hicra.store.llm import ChatClient, LLMError

    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(40)]
    c = ChatClient(server, "down", api_key_env=None, max_retries=0, concurrency=8)
    with pytest.raises(LLMError, match="HTTP 500"):
        c.chat_many(convs, progress=False)
    assert _Handler.counts["down"] <= 8  # the requests in flight when the first failed, no queued one
    c = ChatClient(server, "empty", api_key_env=None, max_retries=1, backoff=0.01, cache=tmp_path / "c.jsonl")
    with pytest.raises(LLMError, match="no text"):
        c.chat(convs[0])
    assert c.cached(convs[0]) is None and not (tmp_path / "c.jsonl").exists()


# --------------------------------------------------------------------------
# 6. a silent mixed run


def test_a_resume_without_params_json_is_checked_against_the_run_s_own_record(tiny_sandbox):
    """params.json and summary.json deleted: the checkpoint's own record (then the metrics lines) still says what
    run this is; a resume as another method and seed is refused, and one that cannot be checked too."""
    d = tiny_sandbox / "run"
    hicra0 = {**RUN, "run_dir": str(d), "method": "hicra", "seed": 0}
    run({**hicra0, "max_steps": 2})
    (d / "params.json").unlink()
    (d / "summary.json").unlink()
    before = (d / "metrics.jsonl").read_text()
    other = {**hicra0, "max_steps": 3, "resume": True, "method": "grpo", "seed": 9}
    with pytest.raises(RunFolderError, match=r"other settings: method 'hicra' -> 'grpo'.*seed 0 -> 9"):
        run(other)
    with pytest.raises(RunFolderError, match=r"--max_steps 1, but .*checkpoint-2 is at step 2"):
        run({**hicra0, "max_steps": 1, "resume": True})
    for c in d.glob("checkpoint-*/hicra_params.json"):  # checkpoints written before they carried the record
        c.unlink()
    with pytest.raises(RunFolderError, match=r"method 'hicra' -> 'grpo'; seed 0 -> 9 \(from its metrics lines"):
        run(other)
    (d / "metrics.jsonl").write_text("")
    with pytest.raises(RunFolderError, match="cannot check that .* is the same run"):
        run(other)
    (d / "metrics.jsonl").write_text(before)
    (d / "params.json").write_text(json.dumps({**hicra0, "max_steps": 2, "weight_decay": None}))  # NaN stored
    with pytest.raises(RunFolderError, match=r"cannot check .* weight_decay: expected a number.*start afresh"):
        run({**hicra0, "max_steps": 3, "resume": True})  # by an older version: refused in one line
    (d / "params.json").unlink()
    assert run({**hicra0, "max_steps": 3, "resume": True})["steps"] == 3  # the run's own settings resume it
    assert {json.loads(x)["method"] for x in (d / "metrics.jsonl").read_text().splitlines()} == {"hicra"}


# --------------------------------------------------------------------------
# weak spots: one line that says what to do, or safe behaviour


def _cli(*argv, timeout=300):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_a_second_pipeline_on_one_run_folder_is_refused_and_names_the_first(tmp_path):
    import os

    from hicra.store.runfolder import hold

    run_dir = tmp_path / "p"
    with hold(run_dir):  # a pipeline of this process holds the folder
        res = _cli("-m", "hicra.pipeline", "--profile", "sandbox", "--run", str(run_dir), "--jobs", "1")
    assert res.returncode == 2 and f"in use by pid {os.getpid()}" in res.stderr, res.stderr[-2000:]
    assert "pick another --run" in res.stderr and "Traceback" not in res.stderr
    assert not (run_dir / ".pipeline.lock").exists() and not (run_dir / "executed").exists()


def test_a_profile_cannot_name_a_function_outside_hicra(tmp_path):
    marker = tmp_path / "ran"
    p = tmp_path / "evil.yaml"
    p.write_text(f"run: x\nfrom: os:system\nargs: {{command: 'touch {marker}'}}\n")
    res = _cli("-m", "hicra.pipeline", "--profile", str(p), "--dry_run", "true")
    assert res.returncode == 2 and "must name a hicra function" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["-m", "hicra.study", "--run_dir", "{empty}"], "no finished runs"),
        (["-m", "hicra.study", "--run_dir", "{torn}"], r"metrics.jsonl:2: not a metrics line"),
        (["-m", "hicra.study", "--run_dir", "{novals}"], "have no validation points"),
        (["-m", "hicra.study", "{evil}"], "could not determine a constructor for the tag"),
        (["-m", "hicra.figures", "--runs", "[{torn}/train-grpo-s0]", "--run_dir", "{out}"], r"metrics.jsonl:2"),
        (["-m", "hicra.regimes", "--run_dir", "{empty}"], "no regime folders"),
        (["-m", "hicra.regimes", "--run_dir", "{empty}", "--until", "-5"], "--until must be a step >= 0"),
    ],
)
def test_study_regimes_and_figures_say_what_is_wrong_in_one_line(tmp_path, argv, message):
    import re

    (tmp_path / "empty").mkdir()
    for name, lines in (("torn", '{"step": 0}\n{"ste\n{"step": 2}\n'), ("novals", '{"step": 0}\n{"step": 1}\n')):
        d = tmp_path / name / "train-grpo-s0"
        d.mkdir(parents=True)
        (d / "summary.json").write_text("{}")
        (d / "params.json").write_text(json.dumps({"method": "grpo", "seed": 0}))  # what a run is read from
        (d / "metrics.jsonl").write_text(lines)
    (tmp_path / "evil.yaml").write_text('run_dir: !!python/object/apply:os.system ["echo hi"]\n')
    names = {k: tmp_path / k for k in ("empty", "torn", "novals", "out")} | {"evil": tmp_path / "evil.yaml"}
    res = _cli(*[a.format(**names) for a in argv], "--figures_dir", str(tmp_path / "figs"))
    assert res.returncode == 2 and re.search(message, res.stderr), res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def test_a_run_started_on_a_full_disk_says_so_and_leaves_no_empty_lock(small_disk):
    from hicra.store.runfolder import claim

    d = small_disk / "run"
    d.mkdir()
    with open(small_disk / "filler", "wb", buffering=0) as fill:
        try:
            while True:
                fill.write(b"x" * 512)
        except OSError:
            pass
    with pytest.raises(OSError, match=r"could not write the lock .*no space left on its disk; free space"):
        with claim(d, resume=False, overwrite=False):
            pass
    assert not (d / ".lock").exists()
