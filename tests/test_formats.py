"""Traces as public sets and teachers write them, with no --map: every layout of
tests/data/formats (written by its make_fixtures.py from GSM8K problems) goes filter →
select → mix → `train sft --lint-only`, and 100 Sky-T1 traces keep exactly their 80 good
ones through the default chain."""

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import curate
from curate.cli import cli
from curate.errors import CurateError
from curate.filters.format import check_format
from curate.filters.length import Length, truncation
from curate.formats import resolve
from curate.inputs import reference_answer

FORMATS = Path(__file__).resolve().parent / "data" / "formats"
# The dataset card fails on a lineage without a generate run (issue 10 §2, fixed on its own branch);
# until that lands, the mix step of these tests stops there.
LAYOUTS = ("skyt1", "openthoughts_sharegpt", "messages", "reasoning_content", "r1_zero", "prefilled_think")


def rejected(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(f) for f in sorted((out / "rejected").glob("*.parquet"))], how="diagonal_relaxed")


def test_100_sky_t1_traces_keep_exactly_the_80_good_ones_through_the_default_chain(tmp_path):
    source = FORMATS / "skyt1_100.jsonl"
    kinds = [json.loads(line)["kind"] for line in source.read_text().splitlines()]  # the fixture's own labels
    assert kinds.count("truncated") == 10 and kinds.count("wrong") == 10
    out = tmp_path / "filter"
    result = curate.filter(input=str(source), out=str(out), progress=False)
    assert result.counts == {"rows_in": 100, "kept": 80, "rejected": 20}
    kept = pl.read_parquet(out / "kept" / "*.parquet")
    assert sorted(kept["kind"].to_list()) == ["clean"] * 80
    dropped = rejected(out)
    by = dict(zip(dropped["kind"], zip(dropped["rejected_by"], dropped["reason"])))
    assert by["truncated"] == ("length", "truncated (inferred: unclosed thought)")
    assert by["wrong"] == ("math", "wrong answer")
    assert dropped.group_by("kind").len().sort("kind").rows() == [("truncated", 10), ("wrong", 10)]
    # the normalised row: the problem from the user turn, the `answer` column as the reference answer
    records = [json.loads(line) for line in source.read_text().splitlines()]
    gold = {r["conversations"][0]["value"]: r["answer"] for r in records}
    assert [gold[p] for p in kept["problem"]] == kept["reference_answer"].to_list()
    assert kept["final_answer"].to_list() == kept["reference_answer"].to_list()
    assert kept["finish_reason"].null_count() == 80


def lint(data: Path, model: Path, rows: int) -> None:
    r = CliRunner().invoke(cli, ["train", "sft", "--student", str(model), "--data", str(data), "--lint-only"])
    assert r.exit_code == 0, r.output
    assert "── trained tokens (completion loss) ──\n<think>\n" in r.output
    assert r.output.strip().endswith(f"lint: ok ({rows} rows checked)")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_runs_filter_select_and_the_sft_lint_without_a_map(layout, tiny_model, tmp_path):
    source = FORMATS / f"{layout}.jsonl"
    result = curate.filter(input=str(source), out=str(tmp_path / "filter"), filters="length,format,math",
                           progress=False)
    assert result.counts == {"rows_in": 8, "kept": 5, "rejected": 3}
    reasons = rejected(tmp_path / "filter").group_by("rejected_by", "reason").len().sort("rejected_by").rows()
    truncated = "truncated" if layout == "reasoning_content" else "truncated (inferred: unclosed thought)"
    assert reasons == [("length", truncated, 2), ("math", "wrong answer", 1)]
    select = curate.select(input=str(tmp_path / "filter"), out=str(tmp_path / "select"), progress=False)
    assert (select.counts["selected"], select.counts["problems"], select.counts["correct"]) == (5, 8, 5)
    lint(tmp_path / "select", tiny_model, 5)  # the selected traces, in the think form


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_mixes_in_the_think_form_and_passes_the_sft_lint(layout, tiny_model, tmp_path):
    curate.filter(input=str(FORMATS / f"{layout}.jsonl"), out=str(tmp_path / "filter"), filters="length,format,math",
                  progress=False)
    curate.select(input=str(tmp_path / "filter"), out=str(tmp_path / "select"), progress=False)
    mix = curate.mix(out=str(tmp_path / "mix"), sources=[f"r={tmp_path / 'select'}:5"], progress=False, workers=1)
    assert mix.counts["rows"] == 5
    rows = pl.read_parquet(tmp_path / "mix" / "data" / "*.parquet")
    for messages in rows["messages"].to_list():
        user, assistant = messages[-2:]
        assert user["role"] == "user" and user["content"].strip()
        assert assistant["content"].startswith("<think>\n") and "</think>\n\n" in assistant["content"]
        assert "<|begin_of_thought|>" not in assistant["content"] and "<answer>" not in assistant["content"]
        assert "\\boxed{" in assistant["content"] or layout == "r1_zero"
    lint(tmp_path / "mix", tiny_model, 5)


def test_the_sft_lint_reads_raw_sharegpt_traces(tiny_model):
    lint(FORMATS / "skyt1.jsonl", tiny_model, 8)


def test_mix_keeps_the_source_spelling_when_asked(tmp_path):
    curate.filter(input=str(FORMATS / "skyt1.jsonl"), out=str(tmp_path / "filter"), filters="length,format,math",
                  progress=False)
    curate.mix(out=str(tmp_path / "mix"), sources=[f"r={tmp_path / 'filter'}:5"], keep_spelling=True,
               progress=False, workers=1)
    assistant = pl.read_parquet(tmp_path / "mix" / "data" / "*.parquet")["messages"].to_list()[0][-1]["content"]
    assert assistant.startswith("<|begin_of_thought|>") and assistant.endswith("<|end_of_solution|>")


def test_presets_and_map_name_the_columns_of_public_sets():
    s1k = resolve(["solution", "question", "cot_type", "thinking_trajectories", "attempt"], "s1k")
    assert (s1k.kind, s1k.columns["problem"], s1k.columns["completion"], s1k.reference) == \
        ("flat", "question", "attempt", "solution")
    assert s1k.columns["reasoning_content"] == "thinking_trajectories"
    openr1 = resolve(["problem", "solution", "answer", "messages", "generations"])
    assert (openr1.kind, openr1.reference) == ("messages", "answer")
    stratos = resolve(["system", "conversations"], "bespoke-stratos")
    assert stratos.kind == "conversations" and stratos.reference is None
    mapped = resolve(["problem", "completion", "conversations"], "sky-t1", {"problem": "q", "completion": "gen"})
    assert (mapped.kind, mapped.columns["completion"]) == ("flat", "completion")  # --map overrides the preset
    with pytest.raises(CurateError, match="--preset 'nope': unknown preset"):
        resolve(["conversations"], "nope")
    with pytest.raises(CurateError, match="--preset s1k: the input has none of the columns attempt"):
        resolve(["question", "answer"], "s1k")
    with pytest.raises(CurateError, match="has no completion: .*pass --preset NAME or --map completion=COLUMN"):
        resolve(["question", "answer"])


def test_a_reasoning_column_beside_the_answer_is_folded_into_a_think_block():
    layout = resolve(["problem", "completion", "reasoning_content"])
    frame = pl.DataFrame({"problem": ["1+1?"], "completion": ["It is \\boxed{2}."], "reasoning_content": ["1+1=2"]})
    row = layout.apply(frame).row(0, named=True)
    assert row["completion"] == "<think>\n1+1=2\n</think>\n\nIt is \\boxed{2}."
    assert (row["reasoning"], row["final_answer"], row["finish_reason"]) == ("1+1=2", "2", None)


SKY = ("<|begin_of_thought|>\n\nadd them\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\nSo \\boxed{4}\n\n"
       "<|end_of_solution|>")


def test_format_judges_every_spelling_and_the_r1_zero_style_stays_strict():
    assert check_format(SKY).keep and check_format("<think>r</think><answer>4</answer>").keep
    assert check_format("So \\boxed{4}", reasoning="add them").keep
    assert check_format(SKY.replace("<|end_of_solution|>", "")).reason == "no <|end_of_solution|>"
    assert check_format("<|begin_of_thought|>x<|end_of_thought|> <|begin_of_thought|>y<|end_of_thought|> z").reason \
        == "2 thought blocks"
    assert check_format("The answer is 4.").reason == "no <think> block"
    assert check_format(SKY, "r1_zero").reason == "not <think>…</think> <answer>…</answer>"


@pytest.mark.parametrize("completion, finish_reason, reason", [
    (SKY, None, None),
    (SKY, "stop", None),
    (SKY, "length", "truncated"),
    ("<|begin_of_thought|> and then", None, "truncated (inferred: unclosed thought)"),
    ("<|begin_of_thought|> and then", "stop", "truncated"),
    (SKY.replace("\n\n<|end_of_solution|>", ""), None, "truncated (inferred: no end of solution)"),
    ("<think>r</think>" + "and so the sum keeps growing " * 400, None,
     "truncated (inferred: no final answer after a long trace)"),
    ("<think>r</think>" + "and so the sum keeps growing. " * 400, None, None),  # ends a sentence: not cut off
    ("<think>r</think>" + "and so the sum keeps growing " * 400, "stop", None),  # the engine says it stopped
])
def test_length_infers_truncation_without_a_finish_reason(completion, finish_reason, reason):
    assert truncation(completion, finish_reason) == reason
    verdict = Length().verify({"completion": completion, "finish_reason": finish_reason})
    assert (verdict.keep, verdict.reason) == (reason is None, reason)


def test_solution_gives_its_last_boxed_as_the_reference_answer_as_generate_reads_it():
    assert reference_answer("so \\boxed{3} and finally \\boxed{\\frac{1}{2}}.", "solution") == "\\frac{1}{2}"
    assert reference_answer("work\n#### 1,000", "answer") == "1,000"
    assert reference_answer(18, "answer") == "18"
    assert reference_answer("no box here", "solution") is None


def test_a_long_plain_answer_without_reasoning_is_not_inferred_truncated():
    assert truncation("and so the list goes on " * 400, None) is None


def test_mix_reads_sharegpt_rows_directly_in_the_think_form(tmp_path):
    from curate.mix import SourceSpec, to_messages

    df = pl.read_ndjson(FORMATS / "openthoughts_sharegpt.jsonl")
    out, no_think, dropped = to_messages(df, SourceSpec("r", "x"), False, "empty")
    assert (out.height, no_think, dropped) == (8, 0, 0)
    first = out["messages"].to_list()[0]
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert first[1]["content"].startswith("<think>\n") and "<|end_of_thought|>" not in first[1]["content"]


def test_mix_rewrites_a_messages_table_in_sky_t1_spelling_to_the_think_form():
    from curate.mix import SourceSpec, to_messages

    df = pl.DataFrame({"messages": [[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": SKY}],
                                    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]]})
    out, _, _ = to_messages(df, SourceSpec("r", "x"), False, "empty")
    assert out["messages"].to_list()[0][1]["content"] == "<think>\nadd them\n</think>\n\nSo \\boxed{4}"
    assert out["messages"].to_list()[1][1]["content"] == "Hello!"
    kept, _, _ = to_messages(df, SourceSpec("r", "x"), False, "empty", keep_spelling=True)
    assert kept["messages"].to_list()[0][1]["content"] == SKY


def test_limo_reasoning_without_tags_gets_its_last_box_as_the_answer():
    numina = resolve(["source", "problem", "solution", "messages"], "numinamath")
    assert (numina.kind, numina.columns, numina.reference) == \
        ("flat", {"problem": "problem", "reasoning_content": "solution", "reference_answer": "solution"}, "solution")
    layout = resolve(["question", "solution", "answer"], "limo")
    frame = pl.DataFrame({"question": ["1+1?"], "solution": ["One and one.\n\nSo it is \\boxed{2}"], "answer": ["2"]})
    row = layout.apply(frame).row(0, named=True)
    assert row["completion"] == ("<think>\nOne and one.\n\nSo it is \\boxed{2}\n</think>\n\n"
                                 "The final answer is $\\boxed{2}$.")
    assert (row["problem"], row["reference_answer"], row["final_answer"]) == ("1+1?", "2", "2")
