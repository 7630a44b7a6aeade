"""`curate eval`: the metric arithmetic on fixed samples (exact numbers), scoring with the
real math-verify, and one end-to-end run of the tiny model through vLLM on CPU."""

import json
import math

import polars as pl
import pytest

from curate.generate import EngineOptions
from curate.store import read_run
from curate.train.eval import pass_at_1, resolve, score, vote
from helpers import curate


def test_pass_at_1_is_the_mean_share_with_its_standard_error():
    p, se = pass_at_1([[True, True, False, False], [True, False, False, False], [False] * 4])
    assert p == 0.25  # (2/4 + 1/4 + 0/4) / 3
    assert se == pytest.approx(0.25 / math.sqrt(3))  # sd of (.5, .25, 0) with ddof 1 is .25
    assert pass_at_1([[True, False]]) == (0.5, 0.0)  # one problem: no spread to measure
    assert pass_at_1([]) == (0.0, 0.0)


def test_vote_groups_equivalent_answers_and_breaks_ties_by_the_earliest_sample():
    answers = ["1/2", "0.5", "3", "3", None]
    # 1/2 and 0.5 are one answer: 2 votes against 2 for "3"; the class seen first wins
    assert vote(answers, {("1/2", "0.5"): True}) == (0, [0, 0, 2, 2, None])
    # without that equivalence "3" wins 2 to 1
    assert vote(answers, {}) == (2, [0, 1, 2, 2, None])
    assert vote([None, None], {}) == (None, [None, None])


def generations(rows: list[tuple[str, str, int, str]]) -> pl.DataFrame:
    """A frame shaped like a generate run: (problem_id, reference, sample_index, completion)."""
    return pl.DataFrame({
        "problem_id": [r[0] for r in rows], "reference_answer": [r[1] for r in rows],
        "sample_index": [r[2] for r in rows], "sample_id": [f"{r[0]}:{r[2]}" for r in rows],
        "completion": [r[3] for r in rows], "prompt": ['[{"role": "user", "content": "q"}]'] * len(rows),
        "finish_reason": ["stop"] * len(rows), "completion_tokens": [10] * len(rows),
    }, schema_overrides={"sample_index": pl.Int32})


def boxed(answer: str) -> str:
    return f"<think>\nwork\n</think>\n\nSo $\\boxed{{{answer}}}$."


def test_score_with_math_verify_exact_numbers():
    frame, m = score(generations([
        # gold 1/2: two right in different forms (one vote), two "3": a tie, the earlier class wins -> right
        ("a", "\\frac{1}{2}", 0, boxed("0.5")), ("a", "\\frac{1}{2}", 1, boxed("3")),
        ("a", "\\frac{1}{2}", 2, boxed("\\frac12")), ("a", "\\frac{1}{2}", 3, boxed("3")),
        # gold 7: "8" wins the vote 2 to 1, the unclosed think has no answer and no vote
        ("b", "7", 0, boxed("8")), ("b", "7", 1, boxed("7")), ("b", "7", 2, boxed("8.0")),
        ("b", "7", 3, "<think>\nstill thinking \\boxed{7}"),
    ]), workers=1, timeout=5)
    assert m["problems"] == 2 and m["samples"] == 8 and m["k"] == 4
    assert m["pass@1"] == 0.375  # (2/4 + 1/4) / 2
    assert m["pass@1_stderr"] == pytest.approx(0.125)  # sd(.5, .25) = .1768, / sqrt(2)
    assert m["maj@k"] == 0.5
    assert m["answered"] == 7 / 8
    assert frame["vote"].to_list() == [0, 1, 0, 1, 0, 1, 0, None]
    assert frame["status"].to_list() == ["correct", "wrong", "correct", "wrong", "wrong", "correct", "wrong",
                                         "no_answer"]


def test_benchmark_names():
    names = [b.name for b in resolve("math500,gsm8k,aime24")]
    assert names == ["math500", "gsm8k", "aime24"]
    math500 = resolve("math500")[0]
    first = json.loads(open(math500.path).readline())
    assert first["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"  # MATH-500 ships with its answers
    assert sum(1 for _ in open(resolve("gsm8k")[0].path)) == 1319


@pytest.mark.slow
def test_eval_end_to_end_on_the_tiny_model(tiny_model, problems_file, tmp_path):
    out = tmp_path / "eval"
    r = curate("eval", "--model", tiny_model, "--benchmarks", problems_file, "-k", "3", "--limit", "3",
               "--max-tokens", "16", "--out", out, "--no-progress")
    assert "pass@1" in r.stdout and "maj@3" in r.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["sampling"]["temperature"] == 0.6 and results["sampling"]["top_p"] == 0.95
    res = results["results"]["problems"]
    assert (res["problems"], res["samples"], res["k"]) == (3, 9, 3)

    # the generations are a curate run (3 samples per problem), the scores agree with it
    rows = read_run(out / "problems" / "generate")
    assert rows.height == 9 and set(rows.group_by("problem_id").len()["len"]) == {3}
    scores = pl.read_parquet(out / "problems" / "scores.parquet")
    assert scores["sample_id"].to_list() == rows["sample_id"].to_list()
    shares = scores.group_by("problem_id").agg(pl.col("correct").mean())["correct"]
    assert res["pass@1"] == pytest.approx(shares.mean())

    # `curate filter` works on the generations, and its math verdicts are the eval's
    curate("filter", "--input", out / "problems" / "generate", "--out", tmp_path / "filter", "--filters", "math",
           "--no-progress")
    kept_dir = tmp_path / "filter" / "kept"
    kept = set(read_run(kept_dir)["sample_id"]) if any(kept_dir.glob("*.parquet")) else set()
    assert kept == set(scores.filter(pl.col("correct"))["sample_id"])

    # re-running scores the same generations again without generating anything
    again = curate("eval", "--model", tiny_model, "--benchmarks", problems_file, "-k", "3", "--limit", "3",
                   "--max-tokens", "16", "--out", out, "--no-progress", "--json")
    assert json.loads(again.stdout)["results"] == results["results"]


def test_eval_bad_benchmarks_are_one_line(tmp_path):
    out = tmp_path / "eval"
    r = curate("eval", "--benchmarks", "math500,nosuch", "--out", out, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: --benchmarks: 'nosuch' is neither a benchmark (math500, gsm8k, aime24, aime25) nor a file"]
    r = curate("eval", "--benchmarks", "aime24", "--out", out, check=False)  # offline: the Hub is out of reach
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: HuggingFaceH4/aime_2024: could not load the Hub dataset")
    assert not out.exists()


def test_eval_run_directory_interrupted_resumed_and_a_different_config_refused(problems_file, tmp_path):
    """OUT goes running -> interrupted (Ctrl-C while the first request is answered) ->
    complete on the same command, which resumes; another config into OUT is one line
    unless --overwrite. The model is a scripted OpenAI-style server on 127.0.0.1 that
    answers every problem right."""
    import _thread

    from click.testing import CliRunner

    from curate.cli import cli
    from curate.train import eval as ev
    from servers import Reply, ScriptedServer, chat_response

    gold = {}
    for line in problems_file.read_text().splitlines():
        r = json.loads(line)
        gold[r["question"]] = r["answer"].split("####")[1].strip()
    ctrl_c = {"on": True}

    def respond(call):
        if ctrl_c["on"]:
            ctrl_c["on"] = False
            _thread.interrupt_main()  # what Ctrl-C does to the eval
            return Reply(status=503, body={"error": "stopping"})
        answer = next(a for q, a in gold.items() if q in call.prompt)
        return Reply(body=chat_response([boxed(answer)] * call.body.get("n", 1)))

    out = tmp_path / "eval"

    def options(k: int, url: str, **extra) -> ev.EvalOptions:
        return ev.EvalOptions(benchmarks=str(problems_file), out=str(out), model="teacher", k=k, backend="openai",
                              limit=3, workers=1, progress=False, engine=EngineOptions(base_url=url, concurrency=1),
                              **extra)

    def manifest() -> dict:
        return json.loads((out / "manifest.json").read_text())

    with ScriptedServer(respond) as server:
        with pytest.raises(KeyboardInterrupt):
            ev.run(options(2, server.base_url))
        m = manifest()
        assert (m["stage"], m["status"]) == ("eval", "interrupted") and not (out / "results.json").exists()
        created = m["created"]

        m = ev.run(options(2, server.base_url))  # the same eval again: it resumes
        assert m["status"] == "complete" and m["created"] == created and manifest()["status"] == "complete"
        assert m["counts"] == {"benchmarks": 1, "problems": 3, "samples": 6}
        assert m["results"]["problems"]["pass@1"] == 1.0 and m["config"]["k"] == 2
        assert json.loads((out / "results.json").read_text())["results"] == m["results"]

        r = CliRunner().invoke(cli, ["eval", "--model", "teacher", "--benchmarks", str(problems_file), "-k", "3",
                                     "--limit", "3", "--backend", "openai", "--base-url", server.base_url,
                                     "--out", str(out), "--no-progress"])
        assert r.exit_code == 2 and r.output.count("\n") == 1
        assert r.output.startswith(f"error: {out}: holds a run with a different config (k: 2 → 3); "
                                   "re-run with --overwrite")
        assert manifest()["status"] == "complete"

        m = ev.run(options(3, server.base_url, overwrite=True))
        assert m["status"] == "complete" and m["counts"]["samples"] == 9 and m["config"]["k"] == 3
        assert read_run(out / "problems" / "generate").height == 9
