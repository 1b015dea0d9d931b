"""A real OpenAI-compatible endpoint on this machine, for the SG annotator (paper §2.1) and the error judge (§4).

Why: both LLM steps talk to ``/v1/chat/completions`` (``hicra.store.llm.ChatClient``). On a GPU box that is a vLLM
server with a large model; on a CPU laptop it is ``transformers serve`` with a model that ships here. This module
resolves a model name the way the steps do (``smollm2`` -> the packaged GGUF, dequantized once to a plain
Hugging Face folder; a local folder with a chat template; a hub id where the hub is reachable), starts the
server as a child process, waits until ``/health`` answers and the model is listed, and stops it again.

    python -m hicra.serve smollm2 --port 8000        # one command; prints one JSON line (base_url, model) when ready
    # then, in another shell: python -m hicra.grams ... --annotator llm --base_url http://127.0.0.1:8000/v1 \\
    #     --llm_model <the printed model>     (or let a step start its own: --serve smollm2)

    with LocalServer("smollm2") as srv:               # a free port; the server is stopped on exit, even on errors
        client = ChatClient(srv.base_url, srv.model, concurrency=1, timeout=600)  # CPU: one request at a time

The same client commands point at a GPU box's server unchanged: ``python -m hicra.serve Qwen/Qwen2.5-7B-Instruct
--device cuda --host 0.0.0.0`` (or ``vllm serve Qwen/Qwen2.5-7B-Instruct``) there, and ``--base_url
http://HOST:8000/v1 --llm_model Qwen/Qwen2.5-7B-Instruct`` here (docs/real-text.md, "Strategic grams").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from hicra.models import _resolve, shipped_hf_dir

# the child: `transformers serve`, plus a watchdog that ends it when its parent is gone (a parent killed with
# SIGKILL, or with SIGTERM before it installed a handler, cannot stop it; an orphan would hold the port and cores)
_CHILD = """
import os, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from transformers.cli.transformers import app
app()
"""


class ServerError(RuntimeError):
    """The server could not be started; the message says why and shows the end of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_path(name: str) -> str:
    """What ``transformers serve`` loads for a step's model name: a local folder, or a hub id as given."""

    path, kw = _resolve(name)
    if kw:  # a GGUF folder: serve its dequantized copy
        return str(shipped_hf_dir("smollm2"))
    return str(Path(path).resolve()) if Path(path).exists() else path


class LocalServer:
    """``transformers serve MODEL`` as a child process. ``base_url`` and ``model`` are what a ChatClient needs
    (the server is pinned to one model and refuses requests naming another)."""

    def __init__(
        self,
        model: str = "smollm2",
        port: int = 0,
        host: str = "127.0.0.1",
        startup_timeout: float = 300.0,
        log: str | os.PathLike | None = None,
        device: str = "cpu",
    ):
        if not 0 <= port < 65536:
            raise ValueError(f"port must be 0 (any free port) or 1-65535; got {port}")
        self.name, self.host, self.port, self.device = model, host, port or free_port(), device
        self.startup_timeout = startup_timeout
        self.log_path = Path(log) if log else Path(tempfile.mkstemp(prefix="hicra-serve-", suffix=".log")[1])
        self.model = None
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def start(self) -> LocalServer:
        with socket.socket() as s:
            if s.connect_ex((self.host, self.port)) == 0:
                raise ServerError(
                    f"port {self.port} on {self.host} is already in use: stop what listens there "
                    "or pass another --port (0 picks a free one)"
                )
        self.model = model_path(self.name)
        cmd = [
            sys.executable,
            "-c",
            _CHILD,
            "serve",
            self.model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--device",
            self.device,
            "--log-level",
            "warning",
        ]
        env = {**os.environ, "HF_HUB_DISABLE_UPDATE_CHECK": "1", "TOKENIZERS_PARALLELISM": "false"}
        with open(self.log_path, "wb") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"`transformers serve {self.model}` exited with code {self.proc.returncode} before "
                    f"it was ready (needs `pip install 'transformers[serving]'`; log {self.log_path}):\n"
                    + self._log_tail()
                )
            try:
                ids = [m["id"] for m in httpx.get(self.base_url + "/models", timeout=2).json()["data"]]
                if self.model in ids:
                    return self
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerError(
            f"`transformers serve {self.model}` was not ready after {self.startup_timeout:.0f} s "
            f"(log {self.log_path}):\n" + self._log_tail()
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclasses.dataclass
class Endpoint:
    """Where a step's LLM answers, and how hard to ask: a CPU server here generates for one request at a time, so
    its client sends one at a time and waits long (a queue of concurrent requests would time out)."""

    base_url: str
    model: str
    label: str
    concurrency: int = 8
    timeout: float = 60.0


@contextlib.contextmanager
def endpoint(cfg, run_dir):
    """The ``Endpoint`` of a step's LLM while the block runs: a ``LocalServer`` for ``cfg.serve`` (log in
    ``run_dir/server.log``), stopped afterwards; with ``cfg.serve`` empty, the step's ``base_url`` / ``llm_model``."""
    timeout = getattr(cfg, "llm_timeout", 60.0)
    if not cfg.serve:
        yield Endpoint(cfg.base_url, cfg.llm_model, cfg.llm_model, 8, timeout)
        return
    with LocalServer(cfg.serve, log=Path(run_dir) / "server.log") as srv:
        yield Endpoint(srv.base_url, srv.model, f"{cfg.serve} (transformers serve)", 1, max(timeout, 600.0))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m hicra.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", default="smollm2", help="smollm2 | a local model folder | a hub id")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (a GPU box)")
    p.add_argument("--startup_timeout", type=float, default=300.0)
    a = p.parse_args(argv)
    srv = LocalServer(a.model, a.port, a.host, a.startup_timeout, device=a.device)
    try:
        srv.start()
    except (ServerError, ValueError) as e:
        sys.exit(f"hicra.serve: {e}")
    print(json.dumps({"base_url": srv.base_url, "model": srv.model, "log": str(srv.log_path)}), flush=True)
    try:  # serve until Ctrl-C / SIGTERM, or until the server dies
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        srv.proc.wait()
        sys.exit(f"hicra.serve: the server exited with code {srv.proc.returncode}:\n{srv._log_tail()}")
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
