"""Adaptive rejection sampling (`--until-correct`) and thinking budgets
(`--min/--max-think-tokens`): the rules, the refusals, and runs on the real vLLM CPU
engine with the embedded SmolLM2-135M on the demo arithmetic set (it gets about a third
right, and the arithmetic_fewshot template prefills `<think>`, so the model ends its
own thinking with `</think>`)."""

import json
import shutil

import polars as pl
import pytest
from transformers import AutoTokenizer

from conftest import REPO
from curate.adaptive import round_size
from curate.backends.budget import Forcing
from curate.filters.math import Math
from helpers import curate, rows
from servers import Reply, ScriptedServer, chat_response

ARITHMETIC = REPO / "curate" / "data" / "arithmetic.jsonl"


def test_round_sizes_start_at_k_double_until_a_correct_one_then_ask_exactly_the_missing_ones():
    k, m = 2, 16
    assert round_size(0, 0, k, m) == 2  # round 1: K
    assert [round_size(n, 0, k, m) for n in (2, 4, 8)] == [2, 4, 8]  # none right yet: doubling
    assert round_size(12, 0, k, m) == 4 and round_size(16, 0, k, m) == 0  # capped by M
    assert round_size(2, 1, k, m) == 1 and round_size(8, 1, 3, m) == 2  # solvable: exactly K - correct
    assert round_size(2, 2, k, m) == 0 and round_size(5, 3, k, m) == 0  # K correct: done
    assert round_size(0, 0, 3, 2) == 2


def test_refusals_name_the_option(tmp_path):
    no_answers = tmp_path / "open.jsonl"
    no_answers.write_text('{"problem": "Say hello."}\n')
    cases = [
        (["--input", ARITHMETIC, "--until-correct", "2"], "--until-correct 2 needs --max-samples M with M >= 2"),
        (["--input", ARITHMETIC, "--max-samples", "4"], "--max-samples needs --until-correct K"),
        (["--input", no_answers, "--until-correct", "1", "--max-samples", "2"],
         f"--until-correct needs a verifier for every problem: {no_answers}: row 1"),
        (["--input", ARITHMETIC, "--min-think-tokens", "9", "--max-think-tokens", "4"],
         "--min-think-tokens 9 is more than --max-think-tokens 4"),
        (["--input", ARITHMETIC, "--max-think-tokens", "4", "--backend", "transformers"],
         "--max-think-tokens: thinking budgets need --backend vllm"),
    ]
    for args, message in cases:
        r = curate("generate", *args, "--out", tmp_path / "out", check=False)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_forcing_takes_back_an_early_end_and_forces_one_at_the_maximum(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)  # SmolLM2's tokenizer, saved as a folder (fast to load)
    enc = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    dec = lambda ids: tok.decode(ids, skip_special_tokens=True)  # noqa: E731
    f = Forcing(20, None, "</think>", "Wait", 100, enc, dec)
    assert f.phase() == (100, ["</think>"])
    early = enc("5 + 3 = 8.\n</think>")
    assert f.feed("5 + 3 = 8.\n</think>", early, "stop", "</think>") is True
    assert f.waits == 1 and dec(f.ids) == "5 + 3 = 8.\nWait" and f.think_tokens == len(f.ids)
    late = enc(" let me check: 8 - 3 = 5, so 8 is right and the sum holds.\n</think>")
    assert f.feed(dec(late), late, "stop", "</think>") is True and not f.thinking
    assert f.think_tokens >= 20 and f.phase() == (100 - len(f.ids), [])
    answer = enc("\n\nThe answer is \\boxed{8}.")
    assert f.feed(dec(answer), answer, "stop", None) is False
    assert f.text.startswith("5 + 3 = 8.\nWait let me check") and f.text.endswith("\\boxed{8}.")
    assert f.finish_reason == "stop" and f.waits == 1 and not f.forced_stop

    g = Forcing(None, 6, "</think>", "Wait", 40, enc, dec)
    assert g.phase() == (6, ["</think>"])
    thought = enc("First, I count the apples one by one")[:6]
    assert g.feed(dec(thought), thought, "length", None) is True
    assert g.forced_stop and g.think_tokens == 6 and dec(g.ids).endswith("\n</think>\n\n")
    assert g.phase() == (40 - len(g.ids), [])


def test_until_correct_through_a_server_seeds_by_index_and_resumes_after_a_failure(problems_file, tmp_path):
    """A scripted server answers right when a sample's seed is divisible by 3: rounds,
    verdicts and seeds are checked row by row, and a run that fails mid-way (the server
    goes down) finishes on re-run with exactly the rows of an uninterrupted run."""
    golds = {(p := json.loads(line))["question"]: p["answer"].rsplit("####", 1)[1].strip()
             for line in problems_file.read_text().splitlines()}
    state = {"calls": 0, "fail_after": None}

    def respond(call):
        state["calls"] += 1
        if state["fail_after"] is not None and state["calls"] > state["fail_after"]:
            return Reply(503, "overloaded")
        gold = next(g for q, g in golds.items() if q in call.prompt)
        seed = call.body["seed"]
        answers = [gold if (seed + i) % 3 == 0 else -1 for i in range(call.body["n"])]
        texts = [f"<think>seed={seed + i}</think> \\boxed{{{a}}}" for i, a in enumerate(answers)]
        return Reply(body=chat_response(texts))

    args = ["generate", "--input", problems_file, "--backend", "openai", "--model", "m", "--until-correct", "2",
            "--max-samples", "8", "--concurrency", "1", "--max-retries", "0", "--no-progress", "--shard-rows", "1"]
    with ScriptedServer(respond) as server:
        curate(*args, "--out", tmp_path / "whole", "--base-url", server.base_url)
        whole = rows(tmp_path / "whole")
        state.update(calls=0, fail_after=12)  # round 1 (8 calls) and part of round 2, then down
        failed = curate(*args, "--out", tmp_path / "cut", "--base-url", server.base_url, check=False)
        assert failed.returncode == 1 and 0 < rows(tmp_path / "cut").height < whole.height
        state["fail_after"] = None
        curate(*args, "--out", tmp_path / "cut", "--base-url", server.base_url)
        state["calls"] = 0
        again = curate(*args, "--out", tmp_path / "cut", "--base-url", server.base_url)  # done: nothing to do
        assert state["calls"] == 0 and "complete" in again.stdout
    assert rows(tmp_path / "cut").equals(whole)
    counts = json.loads((tmp_path / "cut" / "manifest.json").read_text())["counts"]
    assert counts["samples_expected"] == counts["samples_done"] == whole.height
    seeds = whole["reasoning"].str.extract(r"seed=(\d+)").cast(pl.Int64)
    whole = whole.with_columns(seed=seeds, right=(seeds % 3 == 0))
    assert whole["correct"].to_list() == whole["right"].to_list()
    assert set(whole["verdict"]) <= {"correct", "wrong"}
    for _, mine in whole.group_by("problem_id"):
        mine = mine.sort("sample_index")
        assert mine["seed"].to_list() == [mine["seed"][0] + i for i in range(mine.height)]  # per (problem, index)
        n = c = 0
        for size in mine.group_by("round").len().sort("round")["len"].to_list():
            assert size == round_size(n, c, 2, 8)
            n, c = n + size, c + int(mine.slice(n, size)["right"].sum())
        assert round_size(n, c, 2, 8) == 0


def test_until_correct_runs_code_problems_through_the_code_filters_sandbox(tmp_path):
    problems = tmp_path / "code.jsonl"
    tests = json.dumps({"type": "assert", "code": "assert add(1, 2) == 3\nassert add(-1, 1) == 0"})
    problems.write_text("".join(json.dumps({"problem": f"Write add(a, b), version {i}.", "tests": tests}) + "\n"
                                for i in range(2)))

    def respond(call):  # right when the sample's seed is even
        seed = call.body["seed"]
        code = ["def add(a, b):\n    return a + b" if (seed + i) % 2 == 0 else "def add(a, b):\n    return a - b"
                for i in range(call.body["n"])]
        return Reply(body=chat_response([f"<think>ok</think>\n```python\n{c}\n```" for c in code]))

    with ScriptedServer(respond) as server:
        curate("generate", "--input", problems, "--out", tmp_path / "out", "--backend", "openai", "--model", "m",
               "--base-url", server.base_url, "--until-correct", "1", "--max-samples", "6", "--no-progress")
    df = rows(tmp_path / "out")
    assert set(df["verdict"]) <= {"passed", "failed"}
    for _, mine in df.group_by("problem_id"):
        mine = mine.sort("sample_index")
        assert mine["correct"].to_list() == [v == "passed" for v in mine["verdict"]]
        assert mine["correct"].sum() == 1 and mine["correct"][-1]  # stopped at its first passing sample
    assert "code" in json.loads((tmp_path / "out" / "manifest.json").read_text())["adaptive"]["verifiers"]


# -- on the real engine ------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm():
    from vllm import LLM

    from curate.embedded import embedded_model_dir

    engine = LLM(model=str(embedded_model_dir()), dtype="float32", enforce_eager=True, compilation_config={"mode": 0},
                 seed=0, enable_prefix_caching=True, kv_cache_memory_bytes=1 << 30, enable_chunked_prefill=False)
    yield engine
    engine.llm_engine.engine_core.shutdown()


def generate(llm, out, limit, **options):
    import curate as api

    return api.generate(input={"path": str(ARITHMETIC), "limit": limit}, out=str(out), template="arithmetic_fewshot",
                        engine={"llm": llm}, progress=False, shard_rows=1, flush_seconds=0, **options)


@pytest.mark.slow
def test_until_correct_rounds_verdicts_manifest_and_resume(llm, tmp_path):
    k, m = 2, 6
    # --top-p 1: which tokens fall inside a nucleus can hang on the last bits of batched
    # CPU arithmetic; seeded sampling itself does not depend on the batch
    options = dict(until_correct=k, max_samples=m, max_tokens=64, top_p=1.0)
    whole = tmp_path / "whole"
    generate(llm, whole, 8, **options)
    df = rows(whole)
    assert df.select("problem_id", "sample_index").is_unique().all()

    # the verdicts are the math filter's
    verifier = Math(workers=1)
    try:
        assert df["correct"].to_list() == verifier(df).keep.to_list()
    finally:
        verifier.close()
    per = df.group_by("problem_id").agg(pl.len().alias("n"), pl.col("correct").sum().alias("c"),
                                        pl.col("round").max().alias("rounds"),
                                        pl.col("sample_index").max().alias("last"))
    assert (per["last"] == per["n"] - 1).all()  # indices 0 .. n-1
    for r in per.iter_rows(named=True):
        mine = df.filter(pl.col("problem_id") == r["problem_id"]).sort("sample_index")
        sizes = mine.group_by("round").len().sort("round")["len"].to_list()
        n = c = 0
        for size in sizes:  # every round as round_size says, from the verdicts before it
            assert size == round_size(n, c, k, m)
            chunk = mine.slice(n, size)
            n, c = n + size, c + int(chunk["correct"].sum())
        assert round_size(n, c, k, m) == 0  # stopped: K correct or M samples
    assert per["c"].max() >= k and per["n"].max() == m, "the set should hold solved and exhausted problems"
    assert df.height < 8 * m

    manifest = json.loads((whole / "manifest.json").read_text())
    summary = manifest["adaptive"]
    assert summary["samples"] == df.height and summary["solved"] == (per["c"] >= k).sum()
    table = {p["problem_id"]: p for p in summary["problems"]}
    for r in per.iter_rows(named=True):
        assert (table[r["problem_id"]]["samples"], table[r["problem_id"]]["correct"]) == (r["n"], r["c"])
        assert table[r["problem_id"]]["pass_rate"] == round(r["c"] / r["n"], 4)

    # killed mid-run: a problem's last round gone, another's two last; re-running the
    # same command finishes the run with exactly the uninterrupted rows, none twice
    killed = tmp_path / "killed"
    shutil.copytree(whole, killed)
    shards = sorted(killed.glob("part-*.parquet"))
    by_round = [(pl.read_parquet(s)["round"][0], s) for s in shards]
    for _, shard in [x for x in by_round if x[0] >= 2][-3:]:
        shard.unlink()
    assert rows(killed).height < df.height
    generate(llm, killed, 8, **options)
    assert rows(killed).equals(df)

    report = curate("report", whole, "--no-progress")
    assert report.returncode == 0
    page = (whole / "report.html").read_text()
    assert "samples spent by adaptive sampling" in page


@pytest.mark.slow
def test_thinking_budget_forced_continuation_and_forced_stop(llm, tmp_path):
    tok = llm.get_tokenizer()
    # the model ends its thinking after ~20 tokens: a minimum of 40 takes its ends back
    generate(llm, tmp_path / "min", 3, num_samples=2, max_tokens=128, min_think_tokens=40)
    df = rows(tmp_path / "min")
    assert df["forced_waits"].sum() >= 1 and not df["forced_stop"].any()
    closed = df.filter(pl.col("completion").str.contains("</think>", literal=True))
    assert closed.height >= 1
    for r in closed.iter_rows(named=True):
        assert r["think_tokens"] >= 40
        thinking = r["completion"].split("</think>", 1)[0]
        # re-tokenising the text may join tokens across an inserted "Wait"
        assert abs(len(tok.encode(thinking, add_special_tokens=False)) - r["think_tokens"]) <= 1 + r["forced_waits"]
        if r["forced_waits"]:
            assert thinking.count("Wait") >= r["forced_waits"]
    assert (df["completion_tokens"] <= 128).all()
    counts = json.loads((tmp_path / "min" / "manifest.json").read_text())["counts"]
    assert counts["forced_waits"] == df["forced_waits"].sum() and counts["forced_stops"] == 0

    # a maximum of 8: the end is forced after 8 thinking tokens, then the model answers
    generate(llm, tmp_path / "max", 3, num_samples=2, max_tokens=64, max_think_tokens=8)
    df = rows(tmp_path / "max")
    assert df["forced_stop"].all() and (df["think_tokens"] <= 8).all() and (df["forced_waits"] == 0).all()
    for r in df.iter_rows(named=True):
        thinking, _, answer = r["completion"].partition("\n</think>\n\n")
        assert answer.strip(), r["completion"]
        assert len(tok.encode(thinking, add_special_tokens=False)) <= 9
        assert r["completion_tokens"] <= 64
    counts = json.loads((tmp_path / "max" / "manifest.json").read_text())["counts"]
    assert counts["forced_stops"] == df.height and counts["forced_waits"] == 0
    sampling = json.loads(df["sampling"][0])
    assert sampling["max_think_tokens"] == 8 and sampling["think_end"] == "</think>"
