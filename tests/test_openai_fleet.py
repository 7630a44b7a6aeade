"""The openai backend over a fleet of servers (several --base-url): real scripted HTTP
servers on 127.0.0.1 (tests/servers.py), one of them failing."""

from __future__ import annotations

import json
import threading

import polars as pl

from curate.backends.base import Request, Sampling
from curate.backends.openai import OpenAIBackend, base_urls
from helpers import curate
from servers import Reply, ScriptedServer, chat_response


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def answer(name: str, delay: float = 0.0):
    """A healthy server that signs its answers."""
    def respond(call) -> Reply:
        return Reply(body=chat_response([f"{call.prompt} from {name} #{i}" for i in range(call.body["n"])]),
                     delay=delay)
    return respond


def down(call) -> Reply:
    return Reply(503, {"error": {"message": "no capacity"}})


def fleet(*servers: ScriptedServer, **options) -> OpenAIBackend:
    opts = {"base_url": [s.base_url for s in servers], "backoff_base": 0.01, "max_retries": 4, "timeout": 5,
            "server_failures": 2, "server_cooldown": 60.0, **options}
    return OpenAIBackend("tiny", Sampling(n=2, temperature=0.6, max_tokens=8), opts)


def test_base_urls_repeated_or_comma_separated_default_from_environment(monkeypatch):
    assert base_urls(["http://a/v1/", "http://b/v1,http://c/v1"]) == ["http://a/v1", "http://b/v1", "http://c/v1"]
    assert base_urls("http://a/v1, http://b/v1") == ["http://a/v1", "http://b/v1"]
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env/v1")
    assert base_urls(()) == ["http://env/v1"] and base_urls(None) == ["http://env/v1"]


def test_a_failing_server_is_rested_and_every_row_comes_from_the_healthy_one():
    """Two servers, one answering 503: each request is yielded once with all its samples,
    each from the healthy server; a call that failed on the bad server was retried on the
    good one, and the bad one, rested after 2 failures in a row, got no more calls."""
    with ScriptedServer(answer("good")) as good, ScriptedServer(down) as bad:
        backend = fleet(good, bad, concurrency=1)
        keys = [f"q{i}" for i in range(12)]
        out = {r.key: s for r, s in backend.run(Request(k, chat(k), [0, 1], 7) for k in keys)}
    assert sorted(out) == sorted(keys)
    for key, samples in out.items():
        assert [s.index for s in samples] == [0, 1]
        assert [s.text for s in samples] == [f"{key} from good #0", f"{key} from good #1"]
        assert all(s.finish_reason == "stop" and s.error is None for s in samples)
    assert len(bad.calls) == 2  # two failures in a row, then it rests for the whole (short) run
    retried = {c.prompt for c in bad.calls}
    assert retried <= {c.prompt for c in good.calls}  # the failed calls went to the good server
    assert len(good.calls) == len(keys)
    assert backend.describe()["base_url"] == [good.base_url, bad.base_url]


def test_a_rested_server_comes_back_after_the_cool_down():
    """The second server fails its first 2 calls, then recovers: it rests for the
    cool-down (no calls meanwhile), is tried again after it, and then serves requests."""
    lock = threading.Lock()
    seen = {"n": 0}

    def flaky(call) -> Reply:
        with lock:
            seen["n"] += 1
            first = seen["n"] <= 2
        return down(call) if first else answer("flaky", delay=0.05)(call)

    cooldown = 0.5
    with ScriptedServer(answer("steady", delay=0.05)) as steady, ScriptedServer(flaky) as back:
        backend = fleet(steady, back, concurrency=1, server_cooldown=cooldown)
        keys = [f"q{i}" for i in range(40)]  # ~1 s of work on one server at a time
        out = {r.key: s for r, s in backend.run(Request(k, chat(k), [0, 1], 7) for k in keys)}
    assert sorted(out) == sorted(keys)
    assert all(s.error is None for samples in out.values() for s in samples)
    rested_at = back.calls[1].time
    later = back.calls[2:]
    assert later, "the rested server was never tried again"
    assert later[0].time - rested_at >= cooldown * 0.95  # nothing while it rested
    served = {k for k, samples in out.items() if samples[0].text.endswith("from flaky #0")}
    assert len(served) >= 3  # it took its share again after the cool-down


def test_generate_spreads_over_repeated_base_urls(tmp_path, problems_file):
    """`curate generate --base-url A --base-url B`: all rows, work on both servers, both in the manifest."""
    with ScriptedServer(answer("a")) as a, ScriptedServer(answer("b")) as b:
        curate("generate", "--input", problems_file, "--out", tmp_path / "run", "--backend", "openai",
               "--model", "tiny", "--base-url", a.base_url, "--base-url", b.base_url, "--concurrency", "1",
               "-n", "2", "--no-progress")
    rows = pl.read_parquet(sorted((tmp_path / "run").rglob("*.parquet")))
    assert rows.height == 16 and rows["sample_id"].n_unique() == 16
    assert a.calls and b.calls and len(a.calls) + len(b.calls) == 8
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["engine"]["base_url"] == [a.base_url, b.base_url]
