"""OpenAIBackend against real HTTP servers on 127.0.0.1.

The first half talks to vLLM's own OpenAI api_server running the tiny random-weight
model (started once per session, ~30 s). The second half talks to a scripted
server (tests/servers.py) that answers with 429s, 503s, 400s, hangs, single choices and
reasoning fields, and counts what it was sent."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from curate.backends.base import Request, Sampling, derive_seed
from curate.backends.openai import OpenAIBackend, TransientBackendError
from servers import Reply, ScriptedServer, chat_response

# -- vLLM's api_server -------------------------------------------------------------


def vllm_backend(url: str, temperature: float = 0.6, max_tokens: int = 16, **options) -> OpenAIBackend:
    return OpenAIBackend("tiny", Sampling(temperature=temperature, max_tokens=max_tokens), {"base_url": url, **options})


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.slow
def test_vllm_chat_requests_each_yielded_once_with_their_indices(vllm_url):
    """12 chat requests, n=3, 4 in flight: each comes back once with samples for exactly
    its sample indices (including indices that are not 0..n-1), and the request
    iterable is read lazily (never more than `concurrency` ahead of what was yielded)."""
    backend = vllm_backend(vllm_url, concurrency=4, return_token_ids=True)
    wanted = {f"p{i}": ([0, 1, 2] if i % 2 else [2, 5, 9]) for i in range(12)}
    pulled = 0

    def requests():
        nonlocal pulled
        for key, indices in wanted.items():
            pulled += 1
            yield Request(key, chat(f"Question {key}: what is {len(key)} + 2?"), indices, derive_seed(0, key))

    seen = {}
    for request, samples in backend.run(requests()):
        assert pulled - len(seen) <= 4
        assert request.key not in seen
        seen[request.key] = samples
    backend.close()

    assert set(seen) == set(wanted)
    for key, samples in seen.items():
        assert [s.index for s in samples] == wanted[key]
        for s in samples:
            assert s.finish_reason in {"stop", "length"}
            assert isinstance(s.text, str) and s.error is None
            assert s.prompt_tokens > 0
            assert 1 <= s.completion_tokens <= 16
            if s.finish_reason == "length":
                assert s.completion_tokens == 16
    assert backend.describe() == {
        "backend": "openai", "model": "tiny", "base_url": vllm_url, "concurrency": 4, "n_emulated": False,
    }


@pytest.mark.slow
def test_vllm_raw_text_completions_and_usage(vllm_url):
    """Raw text goes to /completions. vLLM reports usage summed over a response's
    choices, so with n > 1 (and no token ids asked for) a sample's completion_tokens
    is unknown; with n = 1 it is exact."""
    backend = vllm_backend(vllm_url)
    results = {r.key: samples for r, samples in backend.run([
        Request("two", "Once upon a time", [0, 1], 7),
        Request("one", "The capital of France is", [4], 7),
    ])}
    two, one = results["two"], results["one"]
    assert [s.index for s in two] == [0, 1] and [s.index for s in one] == [4]
    assert all(isinstance(s.text, str) and s.finish_reason in {"stop", "length"} for s in two + one)
    assert two[0].text != two[1].text
    assert all(s.prompt_tokens == two[0].prompt_tokens > 0 for s in two)
    assert [s.completion_tokens for s in two] == [None, None]
    assert 1 <= one[0].completion_tokens <= 16


@pytest.mark.slow
def test_vllm_prefill_returns_the_continuation_only(vllm_url, tiny_model):
    """A final assistant message is continued, not answered: greedy decoding of the
    prefilled chat gives what greedy decoding of the rendered prompt text gives, and
    the prefill is not repeated in the sample. Greedy with n=2 also works (vLLM refuses
    n > 1 at temperature 0, so the backend sends single-sample calls)."""
    from transformers import AutoTokenizer

    prefilled = chat("What is 2 + 2?") + [{"role": "assistant", "content": "<think>\nThe user asks"}]
    rendered = AutoTokenizer.from_pretrained(tiny_model).apply_chat_template(
        prefilled, continue_final_message=True, tokenize=False
    )
    backend = vllm_backend(vllm_url, temperature=0.0)
    results = {r.key: samples for r, samples in backend.run([
        Request("chat", prefilled, [0, 1], 1),
        Request("text", rendered, [0], 1),
    ])}
    chat_samples, text_samples = results["chat"], results["text"]
    assert chat_samples[0].text == chat_samples[1].text == text_samples[0].text
    assert chat_samples[0].prompt_tokens == text_samples[0].prompt_tokens
    assert not chat_samples[0].text.startswith("<think>")


@pytest.mark.slow
def test_vllm_same_seed_same_samples(vllm_url):
    """Seeded sampling repeats exactly (one request at a time: on CPU, vLLM's numbers
    can shift with what else is in the batch, which a random-weight model's flat
    distribution turns into different tokens), and another seed draws differently."""
    backend = vllm_backend(vllm_url, concurrency=1)

    def texts(seed):
        [(_, samples)] = backend.run([Request("q", chat("Tell me a story."), [0, 1], seed)])
        return [s.text for s in samples]

    first = texts(11)
    assert texts(11) == first
    assert texts(12) != first


# -- the scripted server ----------------------------------------------------------


def scripted_backend(server: ScriptedServer, **options) -> OpenAIBackend:
    """Fast back-off (0.01 s) so retries cost next to nothing."""
    defaults = {"base_url": server.base_url, "backoff_base": 0.01, "max_retries": 3, "timeout": 5}
    return OpenAIBackend("m", Sampling(temperature=0.6, max_tokens=32), {**defaults, **options})


def echo(call) -> Reply:
    """Success: one choice per requested sample, each saying its prompt and seed."""
    n, seed = call.body["n"], call.body.get("seed")
    return Reply(body=chat_response([f"{call.prompt} seed={seed} choice={i}" for i in range(n)]))


def test_429_with_retry_after_is_honoured():
    def respond(call):
        if call.attempt == 1:
            return Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
        return echo(call)

    with ScriptedServer(respond) as server:
        [(_, samples)] = scripted_backend(server).run([Request("a", chat("hi"), [0], 5)])
    assert samples[0].text == "hi seed=5 choice=0"
    assert [c.attempt for c in server.calls] == [1, 2]
    assert server.calls[1].time - server.calls[0].time >= 0.95  # not the 0.01 s back-off


def test_503_twice_then_success():
    def respond(call):
        return Reply(503, "upstream overloaded") if call.attempt <= 2 else echo(call)

    with ScriptedServer(respond) as server:
        [(_, samples)] = scripted_backend(server).run([Request("a", chat("hi"), [0, 1], 5)])
    assert [s.text for s in samples] == ["hi seed=5 choice=0", "hi seed=5 choice=1"]
    assert len(server.calls) == 3


def test_400_gives_error_samples_without_retrying():
    long_message = "This model's maximum context length is 1024 tokens.\n" + "x" * 1000

    def respond(call):
        if call.prompt == "too long":
            return Reply(400, {"error": {"message": long_message, "type": "BadRequestError"}})
        return echo(call)

    with ScriptedServer(respond) as server:
        results = {r.key: s for r, s in scripted_backend(server).run([
            Request("bad", chat("too long"), [3, 4], 5),
            Request("good", chat("fine"), [0], 5),
        ])}
    assert [(s.index, s.text, s.finish_reason) for s in results["bad"]] == [(3, None, "error"), (4, None, "error")]
    error = results["bad"][0].error
    assert error.startswith("HTTP 400: This model's maximum context length is 1024 tokens. xxx")
    assert len(error) <= 300 and "\n" not in error
    assert results["good"][0].finish_reason == "stop"
    assert sum(c.prompt == "too long" for c in server.calls) == 1


def test_a_hang_longer_than_the_timeout_is_retried():
    def respond(call):
        return Reply(delay=3.0, body={}) if call.attempt == 1 else echo(call)

    with ScriptedServer(respond) as server:
        started = time.monotonic()
        [(_, samples)] = scripted_backend(server, timeout=0.5).run([Request("a", chat("hi"), [0], 5)])
        elapsed = time.monotonic() - started
    assert samples[0].text == "hi seed=5 choice=0"
    assert len(server.calls) == 2
    assert elapsed < 2.5


def test_n_is_emulated_when_the_server_returns_one_choice():
    """Like DeepSeek's API: n is ignored. The first request's missing samples are asked
    for one at a time, seeded per sample index; after that every request is sent as
    n=1 calls, seeded the same way, and a fresh backend repeats the same seeds."""

    def one_choice(call):
        return Reply(body=chat_response([f"{call.prompt} seed={call.body.get('seed')}"]))

    def run_once():
        with ScriptedServer(one_choice) as server:
            backend = scripted_backend(server, concurrency=1)
            results = {r.key: s for r, s in backend.run([
                Request("a", chat("first"), [0, 1, 2, 3], 123),
                Request("b", chat("second"), [5, 6], 456),
            ])}
        return backend, server.calls, results

    backend, calls, results = run_once()
    assert backend.describe()["n_emulated"] is True
    assert [c.body["n"] for c in calls] == [4, 1, 1, 1, 1, 1]

    a, b = results["a"], results["b"]
    assert [s.index for s in a] == [0, 1, 2, 3] and [s.index for s in b] == [5, 6]
    assert a[0].text == "first seed=123"  # the choice the n=4 call did return
    assert [s.text for s in a[1:]] == [f"first seed={derive_seed(123, 'a', salt=i)}" for i in (1, 2, 3)]
    assert [s.text for s in b] == [f"second seed={derive_seed(456, 'b', salt=i)}" for i in (5, 6)]
    assert len({s.text for s in a + b}) == 6
    assert all(s.completion_tokens == 2 for s in a + b)  # one choice per response: exact

    _, calls_again, results_again = run_once()
    assert [c.body for c in calls_again] == [c.body for c in calls]
    assert results_again == results


def test_reasoning_is_merged_back_as_a_think_block():
    def respond(call):
        if call.prompt == "deepseek":
            return Reply(body=chat_response(["The answer is 4."], reasoning_content="2 + 2 = 4."))
        if call.prompt == "vllm":
            return Reply(body=chat_response(["4"], reasoning="Add them."))
        return Reply(body=chat_response([""], finish_reason="length", reasoning_content="Hmm, let me think"))

    with ScriptedServer(respond) as server:
        results = {r.key: s[0] for r, s in scripted_backend(server).run([
            Request("deepseek", chat("deepseek"), [0], 1),
            Request("vllm", chat("vllm"), [0], 1),
            Request("cut", chat("cut off"), [0], 1),
        ])}
    assert results["deepseek"].text == "<think>\n2 + 2 = 4.\n</think>\n\nThe answer is 4."
    assert results["vllm"].text == "<think>\nAdd them.\n</think>\n\n4"
    assert results["cut"].text == "<think>\nHmm, let me think"
    assert results["cut"].finish_reason == "length"


def test_the_key_is_sent_and_never_shown(monkeypatch, caplog):
    """The key from the env var is the bearer token. It is in no log record, not in
    describe() or repr(), and scrubbed from error samples and exceptions even when the
    server echoes it back."""
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("CURATE_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)

    def respond(call):
        if call.prompt == "echo key":
            return Reply(401, {"error": {"message": f"Incorrect API key: {secret}"}})
        if call.prompt == "down":
            return Reply(503, {"error": {"message": f"overloaded, key {secret}"}})
        return echo(call)

    with ScriptedServer(respond) as server:
        backend = scripted_backend(server, api_key_env="CURATE_TEST_KEY", concurrency=1, max_retries=1)
        yielded = {}
        with pytest.raises(TransientBackendError) as raised:
            for request, samples in backend.run([
                Request("ok", chat("hello"), [0], 1),
                Request("echo", chat("echo key"), [0], 1),
                Request("down", chat("down"), [0], 1),
            ]):
                yielded[request.key] = samples

    assert {c.headers.get("authorization") for c in server.calls} == {f"Bearer {secret}"}
    assert yielded["echo"][0].error == "HTTP 401: Incorrect API key: ***"
    assert "***" in str(raised.value)
    shown = [str(raised.value), repr(backend), str(backend.describe()), str(yielded)]
    shown += [record.getMessage() for record in caplog.records]
    assert any("retrying" in m for m in shown)  # the retry was logged ...
    assert not any(secret in m for m in shown)  # ... without the key


def test_no_key_no_authorization_header(monkeypatch):
    monkeypatch.delenv("CURATE_TEST_KEY", raising=False)
    with ScriptedServer(echo) as server:
        list(scripted_backend(server, api_key_env="CURATE_TEST_KEY").run([Request("a", chat("hi"), [0], 1)]))
    assert "authorization" not in server.calls[0].headers


def test_exhausted_retries_raise_after_in_flight_requests_are_yielded():
    """A request that keeps failing transiently is not yielded; no new requests start
    after it fails, the slow request already in flight is still yielded, then
    TransientBackendError says what happened."""

    def respond(call):
        if call.prompt == "down":
            return Reply(503, {"error": {"message": "no capacity"}})
        return Reply(delay=1.0, body=echo(call).body)

    pulled = []

    def requests():
        for key in ["slow", "down", "later-1", "later-2"]:
            pulled.append(key)
            yield Request(key, chat(key), [0], 1)

    with ScriptedServer(respond) as server:
        backend = scripted_backend(server, concurrency=2, max_retries=3)
        yielded = []
        with pytest.raises(TransientBackendError) as raised:
            for request, _ in backend.run(requests()):
                yielded.append(request.key)

    assert yielded == ["slow"]
    assert pulled == ["slow", "down"]
    assert [c.prompt for c in server.calls].count("down") == 4  # 1 + 3 retries
    assert {c.prompt for c in server.calls} == {"slow", "down"}
    assert str(raised.value).startswith("1 request(s) failed after 3 retries")
    assert "HTTP 503: no capacity" in str(raised.value)


def test_stopping_early_cancels_in_flight_requests():
    """Closing the generator after the first result returns at once although the
    other requests in flight would hang for 30 s, and the loop thread is gone."""

    def respond(call):
        return echo(call) if call.prompt == "fast" else Reply(delay=30, body={})

    with ScriptedServer(respond) as server:
        backend = scripted_backend(server, concurrency=3, timeout=60)
        run = backend.run([Request(k, chat(k), [0], 1) for k in ("slow-1", "fast", "slow-2")])
        request, _ = next(run)
        assert request.key == "fast"
        assert any(t.name == "curate-openai" for t in threading.enumerate())
        started = time.monotonic()
        backend.close()  # closes the open run
        assert time.monotonic() - started < 2
        assert not any(t.name == "curate-openai" for t in threading.enumerate())
        assert list(run) == []
