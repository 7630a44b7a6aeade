"""`curate select`: pass rates from the filter verdicts (all samples, not only the kept
ones), the policies, the pass-rate band, lineage, and bad input. The filter runs are
real `curate filter` runs (length → math with math-verify → dedup) over a
generate-shaped run whose correct and wrong answers are planted."""

import json
from importlib import import_module

import polars as pl
import pyarrow as pa
import pytest

from curate.errors import CurateError
from curate.parsing import parse_completion
from curate.schema import GENERATION_SCHEMA
from curate.store import RunStore
from helpers import curate

select = import_module("curate.select")  # curate.select is the API function


def trace(answer: str, words: str = "add the numbers") -> str:
    return f"<think>\nLet me {words} carefully.\n</think>\n\nThe answer is \\boxed{{{answer}}}."


# problem -> its samples: (completion, finish_reason); gold answer is "7" everywhere
PLAN = {
    "p0": [(trace("7", "add"), "stop"), (trace("7", "sum up all"), "stop"), (trace("7", "count"), "stop"),
           (trace("7", "tally"), "stop")],
    # 2/4, one dup
    "p1": [(trace("7", "twice"), "stop"), (trace("7", "twice"), "stop"), (trace("8"), "stop"), (trace("9"), "stop")],
    "p2": [(trace("7", "once " * 30), "stop"), (trace("1"), "stop"), (trace("2"), "stop"), (trace("3"), "stop")],  # 1/4
    "p3": [(trace("1"), "stop"), (trace("2"), "stop"), (trace("3"), "stop"), (trace("4"), "stop")],  # 0/4
    "p4": [("<think>\nLet me think about this for a very long", "length"), (trace("7", "go"), "stop"),
           (trace("7", "go on and on and on"), "stop"), (trace("7", "do it"), "stop")],  # 3/4, one truncated
}
EXPECTED_RATE = {"p0": 1.0, "p1": 0.5, "p2": 0.25, "p3": 0.0, "p4": 0.75}


def generate_run(root):
    rows = []
    for pid, samples in PLAN.items():
        for i, (completion, finish) in enumerate(samples):
            parsed = parse_completion(completion)
            rows.append({"problem_id": pid, "sample_index": i, "sample_id": f"{pid}:teacher:{i}", "source": "gsm8k",
                         "domain": "math", "problem": f"What is 3 + 4? ({pid})", "reference_answer": "7", "tests": None,
                         "template": "reasoning_chat", "template_sha": "a" * 64, "prompt": "[]", "model": "teacher",
                         "backend": "vllm", "sampling": "{}", "completion": completion, "reasoning": parsed.reasoning,
                         "answer": parsed.answer, "final_answer": parsed.final_answer, "finish_reason": finish,
                         "prompt_tokens": 20, "completion_tokens": len(completion) // 4, "error": None, "extra": "{}"})
    store = RunStore(root, "generate")
    store.open(overwrite=False)
    store.write_shard(pa.Table.from_pylist(rows[:9], schema=GENERATION_SCHEMA))
    store.write_shard(pa.Table.from_pylist(rows[9:], schema=GENERATION_SCHEMA))
    store.write_manifest({"status": "complete", "command": ["curate", "generate", "..."],
                          "config": {"model": "teacher", "backend": "vllm", "sampling": {"n": 4, "temperature": 0.6}},
                          "inputs": {"template": {"name": "reasoning_chat", "sha256": "a" * 64},
                                     "problems": {"path": "problems.jsonl", "kind": "jsonl", "sha256": "b" * 64,
                                                  "rows": 5}}})
    store.close()
    return root


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    generate_run(root / "generate")
    curate("filter", "--input", root / "generate", "--out", root / "filter", "--filters", "length,math,dedup",
           "--workers", "1", "--no-progress")
    return root


def run_select(root, name, *args):
    r = curate("select", "--input", root / "filter", "--out", root / name, "--no-progress", *args)
    return (pl.read_parquet(root / name / "data" / "part-00000.parquet"),
            pl.read_parquet(root / name / "problems.parquet"), r)


def test_pass_rates_count_every_sample_and_correct_rows_dropped_later(filtered):
    data, problems, r = run_select(filtered, "all")
    rates = dict(zip(problems["problem_id"], problems["pass_rate"]))
    assert rates == EXPECTED_RATE
    p1 = problems.row(problems["problem_id"].to_list().index("p1"), named=True)
    # p1's duplicate correct answer was dropped by dedup, which runs after math: still correct
    assert (p1["generated"], p1["correct"], p1["kept"], p1["selected"]) == (4, 2, 1, 1)
    assert problems.filter(pl.col("problem_id") == "p4")["generated"].item() == 4  # the truncated one counts
    assert set(problems["source"]) == {"gsm8k"} and set(problems["domain"]) == {"math"}  # p3 has no kept row
    # policy all: every kept row, with its lineage
    assert data.height == sum(problems["kept"]) == 4 + 1 + 1 + 0 + 3
    assert data.select("problem_id", "sample_id").is_unique().all()
    assert set(data["run"]) == {str(filtered / "generate")}
    assert "selected 9 rows for 4 problems" in r.stdout
    m = json.loads((filtered / "all" / "manifest.json").read_text())
    assert m["stage"] == "select" and m["status"] == "complete"
    assert m["inputs"]["filter"]["path"] == str(filtered / "filter")
    assert m["inputs"]["filter"]["funnel"]["rows_in"] == 20
    assert m["inputs"]["generate"]["model"] == "teacher" and m["inputs"]["generate"]["template"]["sha256"] == "a" * 64
    assert m["correctness"]["filters"] == ["math"]
    assert m["counts"] == {"problems": 5, "problems_in_band": 5, "problems_selected": 4, "generated": 20,
                           "correct": 10, "kept": 9, "selected": 9}


def test_policies_and_band(filtered):
    shortest, _, _ = run_select(filtered, "short", "--policy", "one", "--one-by", "shortest")
    longest, _, _ = run_select(filtered, "long", "--policy", "one", "--one-by", "longest")
    assert shortest.height == longest.height == 4 and shortest["problem_id"].is_unique().all()
    p4_short = shortest.filter(pl.col("problem_id") == "p4")["completion"].item()
    p4_long = longest.filter(pl.col("problem_id") == "p4")["completion"].item()
    assert "me go carefully" in p4_short and "on and on" in p4_long
    r1, _, _ = run_select(filtered, "r1", "--policy", "one", "--seed", "1")
    r1b, _, _ = run_select(filtered, "r1b", "--policy", "one", "--seed", "1")
    assert r1["sample_id"].to_list() == r1b["sample_id"].to_list()  # seeded
    capped, _, _ = run_select(filtered, "cap", "--policy", "all", "--max-per-problem", "2")
    assert capped.group_by("problem_id").len()["len"].max() == 2 and capped.height == 2 + 1 + 1 + 2
    best, _, _ = run_select(filtered, "best", "--policy", "best-k", "--score", "completion_tokens",
                            "--score-order", "asc", "--max-per-problem", "1")
    assert best.sort("problem_id")["sample_id"].to_list() == shortest.sort("problem_id")["sample_id"].to_list()
    band, problems, _ = run_select(filtered, "band", "--pass-rate-band", "0.2", "0.8")
    assert sorted(problems.filter("in_band")["problem_id"]) == ["p1", "p2", "p4"]
    assert sorted(set(band["problem_id"])) == ["p1", "p2", "p4"]
    assert problems.filter(~pl.col("in_band"))["selected"].sum() == 0


def test_rerun_is_idempotent_and_a_new_config_is_refused(filtered):
    data, _, _ = run_select(filtered, "again", "--policy", "one")
    before = (filtered / "again" / "data" / "part-00000.parquet").read_bytes()
    run_select(filtered, "again", "--policy", "one")
    assert (filtered / "again" / "data" / "part-00000.parquet").read_bytes() == before
    r = curate("select", "--input", filtered / "filter", "--out", filtered / "again", "--policy", "all", check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "--overwrite" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--policy", "best-k"], "--policy best-k needs --score COLUMN and --max-per-problem K"),
    (["--policy", "best-k", "--score", "nope", "--max-per-problem", "2"],
     "--score 'nope': the kept rows have no such column"),
    (["--pass-rate-band", "0.8", "0.2"], "--pass-rate-band 0.8 0.2: expected 0 <= LOW <= HIGH <= 1"),
])
def test_bad_options_are_one_line_and_write_nothing(filtered, args, message):
    out = filtered / "bad"
    r = curate("select", "--input", filtered / "filter", "--out", out, *args, check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: {r.stderr.strip()[7:]}"]
    assert message in r.stderr and not out.exists()


def test_input_must_be_a_finished_filter_run(filtered, tmp_path):
    with pytest.raises(CurateError, match="no manifest.json"):
        select.run(select.SelectOptions(input=str(tmp_path), out=str(tmp_path / "o")))
    with pytest.raises(CurateError, match="holds a `generate` run, not a `filter` run"):
        select.run(select.SelectOptions(input=str(filtered / "generate"), out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_band_without_a_correctness_filter_is_refused(filtered, tmp_path):
    curate("filter", "--input", filtered / "generate", "--out", tmp_path / "f", "--filters", "length", "--no-progress")
    with pytest.raises(CurateError, match="needs pass rates, but the chain has no correctness filter"):
        select.run(select.SelectOptions(input=str(tmp_path / "f"), out=str(tmp_path / "o"), pass_rate_band=(0.1, 0.9)))
    m = select.run(select.SelectOptions(input=str(tmp_path / "f"), out=str(tmp_path / "o"), progress=False))
    problems = pl.read_parquet(tmp_path / "o" / "problems.parquet")
    assert problems["pass_rate"].null_count() == 5 and m["counts"]["correct"] is None


def test_mix_of_a_select_run_carries_pass_rates_into_the_card(filtered):
    mix = import_module("curate.mix")

    run_select(filtered, "for-mix", "--policy", "all")
    out = filtered / "mix"
    m = mix.run(mix.MixOptions(out=str(out), sources=[f"r={filtered / 'for-mix'}:9"], progress=False))
    lineage = m["sources"][0]["lineage"]
    assert [h["problems"] for h in lineage["pass_rates"]] == [1, 0, 1, 0, 0, 1, 0, 1, 0, 1]  # 0, .25, .5, .75, 1
    assert lineage["generate"]["model"] == "teacher" and lineage["filter"]["funnel"]["kept"] == 9
    text = (out / "README.md").read_text()
    assert "policy `all`: 9 rows for 4 of 5 problems; 10 of 20 samples correct" in text
    assert "| 2 | math |" in text and "wrong answer: " in text  # the funnel, with reasons
    assert "teacher `teacher` (vllm); template `reasoning_chat`" in text
    for png in ("pass_rate.png", "funnel.png", "token_lengths.png"):
        assert (out / "plots" / png).stat().st_size > 1000 and f"(plots/{png})" in text
