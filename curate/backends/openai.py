"""Generation through any OpenAI-compatible HTTP server: vLLM's api_server, SGLang,
DeepSeek's API.

    backend = OpenAIBackend("deepseek-reasoner", sampling,
                            {"base_url": "http://127.0.0.1:8000/v1", "concurrency": 64})
    for request, samples in backend.run(requests):
        ...

How a run works. `run()` is a plain generator. It starts an asyncio event loop in a
background thread with one `httpx.AsyncClient` per server, pulls requests from the caller's
iterable *in the caller's thread* (so a generator reading a file or database is never
touched by two threads), hands each to the loop, and yields `(request, samples)` as
each finishes, in whatever order they finish: the loop puts finished requests on a
queue the generator reads. At most `concurrency` requests per server are in flight and
at most `concurrency` HTTP calls per server are open, so millions of requests run in
bounded memory. When the generator ends, is closed early, or `close()` is called,
in-flight calls are cancelled, the clients are closed and the thread ends.

Endpoints. A chat prompt (a list of messages) goes to `{base_url}/chat/completions`, raw
text to `{base_url}/completions`. A chat prompt whose last message is the assistant's is
a prefill: it is sent with vLLM's `continue_final_message: true,
add_generation_prompt: false`, and the sample text is the continuation only (a server
that rejects those fields answers 400, which becomes error samples). `base_url` is used
as given (it normally ends in `/v1`).

Sampling. Each request asks for `n = len(request.sample_indices)` samples with the
backend's temperature, top_p, max_tokens and stop strings, and `seed = request.seed`.
Choice i becomes the sample with index `request.sample_indices[i]`. vLLM seeds choice i
of a seeded request with `seed + i`. vLLM refuses `n > 1` with greedy sampling
(temperature 0: "n must be 1 when using greedy sampling"), so at temperature 0 a
request with n > 1 is sent as n single-sample calls.

n emulation. Some servers (DeepSeek's API) ignore `n` and return one choice. When a
response has fewer choices than asked, the returned choices are kept and the missing
samples are asked for one at a time with `n = 1` and
`seed = derive_seed(request.seed, key, salt=sample_index)`; the backend then remembers
that the server does this (`describe()["n_emulated"]`) and from then on sends every
request as single-sample calls, one per sample index, seeded the same way.

Reasoning. `reasoning_content` (DeepSeek's API, vLLM with a reasoning parser; newer vLLM
calls it `reasoning`) is put back in front of the answer in R1's format:
`"<think>\\n" + reasoning + "\\n</think>\\n\\n" + content`. If the sample ran out of
tokens while still reasoning (finish_reason "length", no content) the think block is
left open, as the model left it.

Token counts. `prompt_tokens` is the response's `usage.prompt_tokens`. Servers report
`usage.completion_tokens` summed over all choices of a response, so a sample's
`completion_tokens` is exact only when its response had one choice; with several it is
None, unless the server returns each choice's token ids (vLLM does when asked: set the
option `return_token_ids: true`), in which case it is their count.

finish_reason is the server's ("stop", "length", or whatever it says, e.g.
"content_filter" or "abort"; "unknown" if it gives none).

Failures. Each HTTP call is retried on 408, 429, 5xx, timeouts (`timeout` seconds per
attempt, end to end), connection errors and malformed 2xx bodies, up to `max_retries`
times, after `min(60, backoff_base * 2**attempt)` seconds with jitter (a random 50-100 %
of that), or after the server's `Retry-After` seconds (capped at 60) when it sends one.

* Permanent failures (any other 4xx, e.g. a prompt longer than the context) are the
  request's fault and will fail again: the request is yielded with one sample per index,
  `finish_reason="error"`, `text=None`, and `error` a one-line message with the status
  and the server's message (at most 300 characters).
* Transient failures that outlast every retry say nothing about the request (the
  server is down or overloaded), so they must not be recorded as its result: the
  request is not yielded at all, and a later invocation of the run generates it again.
  After the first such request the backend starts no new requests (the server is
  probably gone, and each one would spend minutes retrying), lets the ones in flight
  finish and yields them, and then raises `TransientBackendError` saying how many
  requests failed and the last error. A request whose samples came from several calls
  (emulated n) is yielded only if none of its calls failed transiently.

A fleet. `base_url` may name several servers (a list, or a comma-separated string;
$OPENAI_BASE_URL likewise). Each server takes up to `concurrency` calls at once and a
call goes to the least busy server that is not resting. A server that fails
`server_failures` (3) calls in a row on transient errors rests for `server_cooldown`
(30) seconds, then is tried again (one more failure rests it again; a success clears
its count; a single server is never rested). A call that failed on one server is retried at once on another when
another is awake (with back-off only when it must go back to the same one); when every
server rests, calls wait for the first to come back. Permanent failures (4xx) are the
request's fault and do not count against a server.

Credentials. The key is read from the environment variable named by `api_key_env`
(default OPENAI_API_KEY) when a run starts and sent as `Authorization: Bearer <key>`;
with the variable unset no Authorization header is sent. The key is kept only in the
HTTP client's headers: it is not stored on the backend, logged, returned by
`describe()`, or put in any error message (server messages are scrubbed of it).

Options: base_url (one or several; default $OPENAI_BASE_URL or https://api.openai.com/v1),
api_key_env, concurrency (32 per server), max_retries (6), timeout (600 s), backoff_base
(1.0 s), return_token_ids (false), server_failures (3), server_cooldown (30 s).

This module imports only the standard library, httpx and curate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import threading
import time
import weakref
from collections.abc import Iterable, Iterator

import httpx

from curate.backends.base import Backend, Request, Sample, Sampling, TransientBackendError, derive_seed, split_prefill
from curate.errors import CurateError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_BACKOFF_S = 60.0
MAX_ERROR_CHARS = 300
# vLLM treats a temperature below this as greedy sampling.
GREEDY_TEMPERATURE = 1e-5


class _PermanentFailure(Exception):
    """An HTTP call the server refused for good (a 4xx other than 408 and 429)."""


class _RetriesExhausted(Exception):
    """An HTTP call that still failed transiently after every retry."""


class _Server:
    """One server of the fleet during a run: its client, its call slots, its health."""

    def __init__(self, url: str, client: httpx.AsyncClient, concurrency: int):
        self.url, self.client = url, client
        self.slots = asyncio.Semaphore(concurrency)  # binds to the loop on first use
        self.busy = 0  # calls waiting for or holding a slot
        self.failures = 0  # transient failures in a row
        self.rested_until = 0.0  # time.monotonic() when a resting server is tried again


def base_urls(value) -> list[str]:
    """The fleet's URLs from a string (comma-separated) or a list of them; default
    $OPENAI_BASE_URL, else OpenAI's."""
    items = [value] if isinstance(value, str) else list(value or ())
    urls = [u.strip().rstrip("/") for item in items for u in str(item).split(",") if u.strip()]
    return urls or base_urls(os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL)


class OpenAIBackend(Backend):
    """Generate through an OpenAI-compatible server; see the module docstring."""

    name = "openai"

    def __init__(self, model: str, sampling: Sampling, options: dict | None = None):
        super().__init__(model, sampling, dict(options or {}))
        opts = self.options
        self.base_urls = base_urls(opts.get("base_url"))
        self.base_url = self.base_urls[0] if len(self.base_urls) == 1 else self.base_urls
        self.server_failures = int(opts.get("server_failures", 3))
        self.server_cooldown = float(opts.get("server_cooldown", 30.0))
        self.api_key_env = str(opts.get("api_key_env") or "OPENAI_API_KEY")
        self.concurrency = int(opts.get("concurrency", 32))
        self.max_retries = int(opts.get("max_retries", 6))
        self.timeout = float(opts.get("timeout", 600))
        self.backoff_base = float(opts.get("backoff_base", 1.0))
        token_ids = opts.get("return_token_ids", False)
        self.return_token_ids = (
            token_ids.lower() in ("1", "true", "yes") if isinstance(token_ids, str) else bool(token_ids)
        )
        if self.concurrency < 1:
            raise CurateError(f"openai backend: concurrency must be >= 1, got {self.concurrency}")
        if self.max_retries < 0:
            raise CurateError(f"openai backend: max_retries must be >= 0, got {self.max_retries}")
        if self.timeout <= 0:
            raise CurateError(f"openai backend: timeout must be > 0, got {self.timeout}")
        # Set once the server has returned fewer choices than asked for.
        self.n_emulated = False
        self._runs: weakref.WeakSet = weakref.WeakSet()

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": self.base_url,
            "concurrency": self.concurrency,
            "n_emulated": self.n_emulated,
        }

    def close(self) -> None:
        """End every run still open: cancel its in-flight calls and stop its thread.
        Call it from the thread that consumes the runs."""
        for run in list(self._runs):
            run.close()

    # -- the caller's side ---------------------------------------------------------

    def run(self, requests: Iterable[Request]) -> Iterator[tuple[Request, list[Sample]]]:
        generator = self._run(requests)
        self._runs.add(generator)
        return generator

    def _run(self, requests: Iterable[Request]) -> Iterator[tuple[Request, list[Sample]]]:
        servers = [_Server(url, self._client(url), self.concurrency) for url in self.base_urls]
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="curate-openai", daemon=True)
        thread.start()
        finished: queue.Queue = queue.Queue()

        def submit(request: Request) -> None:
            future = asyncio.run_coroutine_threadsafe(self._generate(servers, request), loop)
            future.add_done_callback(lambda f: finished.put((request, f)))

        pending = iter(requests)
        exhausted = False
        in_flight = 0
        failed = 0
        last_error = ""
        try:
            while True:
                # Top up, unless the input is done or the server has started failing.
                while not exhausted and not failed and in_flight < self.concurrency * len(servers):
                    request = next(pending, None)
                    if request is None:
                        exhausted = True
                    else:
                        submit(request)
                        in_flight += 1
                if in_flight == 0:
                    break
                request, future = finished.get()
                in_flight -= 1
                try:
                    samples = future.result()
                except _RetriesExhausted as exc:
                    failed += 1
                    last_error = str(exc)
                    log.warning("request %s failed after %d retries: %s", request.key, self.max_retries, exc)
                    continue
                yield request, samples
            if failed:
                raise TransientBackendError(
                    f"{failed} request(s) failed after {self.max_retries} retries on transient "
                    f"errors and were not recorded; run again to retry them (last error: {last_error})"
                )
        finally:
            asyncio.run_coroutine_threadsafe(self._shutdown(servers), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def _client(self, url: str) -> httpx.AsyncClient:
        """The HTTP client for one server in one run; the only place the key is kept."""
        headers = {}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.AsyncClient(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )

    @staticmethod
    async def _shutdown(servers: list[_Server]) -> None:
        """Cancel every task still running on the loop, then close the clients."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            await server.client.aclose()

    # -- the loop's side -----------------------------------------------------------

    async def _generate(self, servers: list[_Server], request: Request) -> list[Sample]:
        """All samples for one request: one call for all of them when the server honours
        n, else one call per sample index."""
        indices = list(request.sample_indices)
        if not indices:
            return []
        greedy = self.sampling.temperature < GREEDY_TEMPERATURE
        if self.n_emulated or (greedy and len(indices) > 1):
            return await self._one_by_one(servers, request, indices)
        try:
            data = await self._post(servers, self._body(request, len(indices), request.seed))
        except _PermanentFailure as exc:
            return [Sample(index=i, text=None, finish_reason="error", error=str(exc)) for i in indices]
        samples = self._samples(request, data, indices)
        if len(samples) < len(indices):
            if not self.n_emulated:
                log.warning(
                    "%s returned %d choice(s) for n=%d; asking for one sample per call from now on",
                    ", ".join(self.base_urls), len(samples), len(indices),
                )
                self.n_emulated = True
            samples += await self._one_by_one(servers, request, indices[len(samples):])
        return samples

    async def _one_by_one(
        self, servers: list[_Server], request: Request, indices: list[int]
    ) -> list[Sample]:
        """One n=1 call per sample index, each seeded from (request seed, key, index)."""

        async def one(index: int) -> Sample:
            seed = derive_seed(request.seed, request.key, salt=index)
            try:
                data = await self._post(servers, self._body(request, 1, seed))
            except _PermanentFailure as exc:
                return Sample(index=index, text=None, finish_reason="error", error=str(exc))
            samples = self._samples(request, data, [index])
            if not samples:
                raise _RetriesExhausted("server returned no choices for n=1")
            return samples[0]

        results = await asyncio.gather(*(one(i) for i in indices), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    def _body(self, request: Request, n: int, seed: int | None) -> dict:
        """The JSON body for one call (endpoint chosen by `_path`)."""
        s = self.sampling
        body: dict = {"model": self.model}
        if isinstance(request.prompt, str):
            body["prompt"] = request.prompt
        else:
            messages, _ = split_prefill(request.prompt)
            body["messages"] = list(request.prompt)
            if len(messages) < len(request.prompt):  # ends with the assistant's words
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        body.update(n=n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens)
        if s.stop:
            body["stop"] = list(s.stop)
        if seed is not None:
            body["seed"] = seed
        if self.return_token_ids:
            body["return_token_ids"] = True
        return body

    def _samples(self, request: Request, data: dict, indices: list[int]) -> list[Sample]:
        """Samples from one response's choices, choice i for indices[i]; fewer than
        `indices` if the server returned fewer choices."""
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        usage = data.get("usage") or {}
        exact_total = usage.get("completion_tokens") if len(choices) == 1 else None
        samples = []
        for index, choice in zip(indices, choices):
            finish_reason = choice.get("finish_reason") or "unknown"
            if "message" in choice:
                text = self._merge_reasoning(choice["message"] or {}, finish_reason)
            else:
                text = choice.get("text") or ""
            token_ids = choice.get("token_ids")
            samples.append(
                Sample(
                    index=index,
                    text=text,
                    finish_reason=finish_reason,
                    prompt_tokens=usage.get("prompt_tokens"),
                    completion_tokens=len(token_ids) if isinstance(token_ids, list) else exact_total,
                )
            )
        return samples

    @staticmethod
    def _merge_reasoning(message: dict, finish_reason: str) -> str:
        """R1's format: the reasoning in a think block, then the answer."""
        content = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if not reasoning:
            return content
        if not content and finish_reason == "length":
            return "<think>\n" + reasoning  # cut off while thinking: the block stays open
        return "<think>\n" + reasoning + "\n</think>\n\n" + content

    async def _post(self, servers: list[_Server], body: dict) -> dict:
        """POST one call with retries, across the fleet; the parsed response, or
        _PermanentFailure / _RetriesExhausted."""
        path = "/chat/completions" if "messages" in body else "/completions"
        last = None
        for attempt in range(self.max_retries + 1):
            server = await self._pick(servers, avoid=last)
            retry_after = None
            server.busy += 1
            try:
                async with server.slots:
                    response = await asyncio.wait_for(server.client.post(path, json=body), self.timeout)
            except (httpx.TransportError, asyncio.TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                if response.is_success:
                    try:
                        data = response.json()
                        if isinstance(data, dict) and isinstance(data.get("choices"), list):
                            server.failures = 0
                            return data
                    except ValueError:
                        pass
                    problem = f"HTTP {response.status_code}: malformed response: {response.text}"
                elif response.status_code in (408, 429) or response.status_code >= 500:
                    problem = self._http_error(response)
                    retry_after = response.headers.get("retry-after")
                else:
                    server.failures = 0  # the server answered; the request is at fault
                    raise _PermanentFailure(self._http_error(response))
            finally:
                server.busy -= 1
            problem = self._one_line(f"{server.url}: {problem}" if len(servers) > 1 else problem)
            if len(servers) > 1:
                self._failed(server)
            if attempt == self.max_retries:
                raise _RetriesExhausted(problem)
            last = server
            if any(s is not server and s.rested_until <= time.monotonic() for s in servers):
                log.info("retrying %s on another server (attempt %d of %d): %s",
                         path, attempt + 1, self.max_retries, problem)
                continue
            delay = self._delay(attempt, retry_after)
            log.info("retrying %s in %.2f s (attempt %d of %d): %s",
                     path, delay, attempt + 1, self.max_retries, problem)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _pick(self, servers: list[_Server], avoid: _Server | None = None) -> _Server:
        """The least busy awake server (another than `avoid` if there is one); when all
        rest, the first to come back, once it does."""
        now = time.monotonic()
        awake = [s for s in servers if s.rested_until <= now]
        if not awake:
            server = min(servers, key=lambda s: s.rested_until)
            await asyncio.sleep(server.rested_until - now)
            return server
        return min([s for s in awake if s is not avoid] or awake, key=lambda s: s.busy)

    def _failed(self, server: _Server) -> None:
        """Count a transient failure; rest the server after `server_failures` in a row
        (a fleet's: one server alone is never rested, its back-off paces it)."""
        server.failures += 1
        if server.failures >= self.server_failures and server.rested_until <= time.monotonic():
            server.rested_until = time.monotonic() + self.server_cooldown
            log.warning("%s failed %d times in a row; resting it for %.0f s",
                        server.url, server.failures, self.server_cooldown)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """The server's Retry-After (seconds) if it sent one, else exponential back-off
        with jitter; at most MAX_BACKOFF_S either way."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), MAX_BACKOFF_S)
            except ValueError:
                pass  # an HTTP date: fall back to our own back-off
        ceiling = min(MAX_BACKOFF_S, self.backoff_base * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)

    def _http_error(self, response: httpx.Response) -> str:
        """'HTTP <status>: <the server's message>', one line, at most 300 characters."""
        try:
            data = response.json()
        except ValueError:
            data = None
        message = response.text
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict) and error.get("message"):
                message = error["message"]
            elif isinstance(error, str):
                message = error
            elif data.get("message") or data.get("detail"):
                message = data.get("message") or data.get("detail")
        return self._one_line(f"HTTP {response.status_code}: {message}")

    def _one_line(self, text: str) -> str:
        """Whitespace collapsed, the key scrubbed, at most MAX_ERROR_CHARS."""
        text = " ".join(str(text).split())
        key = os.environ.get(self.api_key_env)
        if key:
            text = text.replace(key, "***")
        if len(text) > MAX_ERROR_CHARS:
            text = text[: MAX_ERROR_CHARS - 3] + "..."
        return text
