"""Fuzzing the doors (hypothesis): every input parser either accepts its input or refuses
it with one CurateError line (exit 2 on the command line) — never another exception —
and the verifiers never raise, whatever text they are given; math verification never
outlives its timeout.

Derandomized (the same examples every run), so CI is repeatable; `--hypothesis-seed`
or HYPOTHESIS_PROFILE=explore searches further."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.errors import CurateError

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("explore", deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<|begin_of_thought|>", "<|end_of_thought|>",
        "<|begin_of_solution|>", "<|end_of_solution|>", "\\boxed{", "}", "{", "$", "\\[", "\\]", "```", "\n", "\n\n",
        "The answer is ", "####", " 42", "\\frac{1}{2}", "Wait,", "。", "答案是", "ответ", "\u200b", "\ufeff", "\x00"]
text_pieces = st.one_of(st.sampled_from(TAGS), st.text(max_size=30))
traces = st.lists(text_pieces, max_size=25).map("".join)


def one_line(error: CurateError) -> str:
    message = str(error)
    assert message and "\n" not in message.strip(), f"not one line: {message!r}"
    return message


# -- problem files --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["problem", "question", "answer", "id", "problem_id", "messages", "role", "content", "tests", "domain",
         "source", "x", ""]), inner, max_size=5),
    max_leaves=12,
)
problem_records = st.lists(st.one_of(
    st.fixed_dictionaries({"problem": st.one_of(st.text(max_size=40), json_values)},
                          optional={"answer": json_values, "id": json_values, "tests": json_values}),
    json_values,
), max_size=6)


@given(records=problem_records, kind=st.sampled_from(["jsonl", "json", "broken"]))
@settings(max_examples=120)
def test_problem_files_load_or_are_refused_in_one_line(records, kind):
    from curate.inputs import InputSpec, load_problems

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"problems.{'json' if kind == 'json' else 'jsonl'}"
        if kind == "json":
            path.write_text(json.dumps(records, allow_nan=True))
        elif kind == "jsonl":
            path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in records))
        else:  # truncated / mangled JSON lines
            path.write_text("".join(json.dumps(r, allow_nan=True)[:-1] + "\n" for r in records) + "{\"problem\": ")
        try:
            frame, info = load_problems(InputSpec(path=str(path)))
        except CurateError as e:
            assert str(path) in one_line(e) or path.name in str(e)
            return
        assert frame.height >= 1 and frame["problem"].null_count() == 0
        assert frame["problem_id"].n_unique() == frame.height


# -- chain files ----------------------------------------------------------------------

FILTER_NAMES = ["length", "format", "math", "language", "readability", "dedup", "decontam", "code", "nope"]
params = st.dictionaries(st.sampled_from(["max_tokens", "style", "timeout", "lang", "threshold", "mode", "on",
                                          "benchmarks", "method", "workers", "n", "judge", "drop_truncated",
                                          "bands", "num_perm", "x"]),
                         json_values, max_size=3)
chain_docs = st.one_of(
    st.fixed_dictionaries({"filters": st.lists(st.one_of(st.sampled_from(FILTER_NAMES),
                                                         st.dictionaries(st.sampled_from(FILTER_NAMES),
                                                                         st.none() | params, min_size=1,
                                                                         max_size=2)), max_size=4)}),
    json_values,
)


@given(doc=chain_docs, raw=st.one_of(st.none(), st.text(max_size=60)))
@settings(max_examples=150)
def test_chain_files_build_or_are_refused_in_one_line(doc, raw):
    from curate.chain import build_filters, read_chain

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "chain.yaml"
        path.write_text(raw if raw is not None else yaml.safe_dump(doc, allow_unicode=True))
        try:
            chain, _ = read_chain(str(path), None)
            filters = build_filters(chain)
        except CurateError as e:
            one_line(e)
            return
        for f in filters:
            getattr(f, "close", lambda: None)()
        assert len(filters) == len(chain)


# -- templates ------------------------------------------------------------------------

TEMPLATE_PIECES = ["{{ problem }}", "{{ answer }}", "{{ nope }}", "{% call message('user') %}", "{% endcall %}",
                   "{% call message('assistant') %}", "{{ message('assistant', '<think>\\n') }}",
                   "{% call message('robot') %}", "{% if problem %}", "{% endif %}", "{% for e in examples %}",
                   "{% endfor %}", "{#---\ndescription: x\nstop: [\"</answer>\"]\n---#}", "{#---\n: [\n---#}", "{{",
                   "}}", "{%", "%}", "{{ problem | tojson }}", "{{ problem.x.y }}", "{{ 1/0 }}", "text ", "\n"]
templates = st.lists(st.one_of(st.sampled_from(TEMPLATE_PIECES), st.text(max_size=10)), max_size=12).map("".join)


@given(source=templates, problem=st.text(max_size=30))
@settings(max_examples=200)
def test_templates_render_or_are_refused_in_one_line(source, problem):
    from curate.templates import load_template

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.jinja"
        path.write_text(source)
        try:
            rendered = load_template(str(path)).render({"problem": problem, "examples": []})
        except CurateError as e:
            one_line(e)
            return
        assert isinstance(rendered, str) or all(m["role"] in ("system", "user", "assistant") for m in rendered)


# -- traces and layouts ---------------------------------------------------------------


@given(text=traces, prefill=st.sampled_from(["", "<think>\n"]), reasoning=st.one_of(st.none(), traces))
@settings(max_examples=300)
def test_any_trace_parses(text, prefill, reasoning):
    from curate.parsing import parse_completion, parse_trace

    trace = parse_trace(text, reasoning=reasoning, prefill=prefill)
    assert trace is not None
    parsed = parse_completion(text, prefill=prefill)
    assert parsed.answer is None or isinstance(parsed.answer, str)


@given(names=st.lists(st.sampled_from(["problem", "completion", "messages", "conversations", "question", "response",
                                       "output", "reasoning_content", "answer", "solution", "generation", "prompt",
                                       "x", ""]), max_size=6, unique=True),
       preset=st.sampled_from([None, "openthoughts", "s1k", "sky-t1", "nope"]),
       column_map=st.one_of(st.none(), st.dictionaries(st.sampled_from(["problem", "completion", "x"]),
                                                       st.sampled_from(["question", "output", "missing"]),
                                                       max_size=2)))
@settings(max_examples=150)
def test_any_column_layout_resolves_or_is_refused_in_one_line(names, preset, column_map):
    from curate.formats import resolve

    try:
        resolve(names, preset, column_map)
    except CurateError as e:
        one_line(e)


# -- the verifiers --------------------------------------------------------------------

atoms = st.one_of(st.integers(-10**6, 10**6).map(str), st.sampled_from(
    ["x", "\\pi", "\\infty", "0.5", "1,000", "1\\,000", "\\sqrt{2}", "i", "e", "\\emptyset", "A", "(B)", "3 cm",
     "10\\%", "\\text{Monday}", "9^{9^{9^{9}}}", "10^{10^{10}}", "1e308", "\\alpha", "{", "}", "\\frac{"]))


def expressions(depth: int = 3):
    return st.recursive(atoms, lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "^", "=", ",", "\\le ", "\\cdot "]), inner).map(
            lambda t: f"{t[0]}{t[1]}{t[2]}"),
        inner.map(lambda a: f"\\frac{{{a}}}{{3}}"), inner.map(lambda a: f"\\sqrt{{{a}}}"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]}, {t[1]})"), st.tuples(inner, inner).map(
            lambda t: f"[{t[0]}, {t[1]})"), inner.map(lambda a: f"\\{{{a}\\}}"), inner.map(lambda a: f"{a}!")),
        max_leaves=depth * 2)


@pytest.fixture(scope="module")
def math_pool():
    from curate.filters.math import MathPool

    with MathPool(workers=1, timeout=1.0, chunk_size=8, guard_slack_s=3.0) as pool:
        pool.verify([("1", "\\boxed{1}")])  # start the worker outside the clock
        yield pool


@given(pairs=st.lists(st.tuples(expressions(), expressions(), st.booleans()), min_size=1, max_size=16))
@settings(max_examples=25)
def test_random_expression_pairs_never_raise_nor_outlive_the_timeout(math_pool, pairs):
    from curate.filters.math import STATUSES

    work = [(gold, f"<think>\nwork\n</think>\n\\boxed{{{answer}}}" if boxed else answer)
            for gold, answer, boxed in pairs]
    start = time.monotonic()
    verdicts = math_pool.verify(work)
    elapsed = time.monotonic() - start
    assert [v.status in STATUSES for v in verdicts] == [True] * len(work)
    # each chunk of 8 has a wall clock of timeout * rows + slack; a restarted worker costs a spawn
    chunks = -(-len(work) // 8)
    assert elapsed <= chunks * (8 * 1.0 + 3.0) + 15, elapsed


unicode_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)


@given(text=st.one_of(unicode_text, traces), lang=st.sampled_from(["en", "zh", "ru", "xx", "de"]))
@settings(max_examples=150)
def test_language_and_readability_never_raise_on_any_unicode(text, lang):
    from curate.filters.language import Language, target_language_ratio
    from curate.filters.readability import Readability

    assert 0.0 <= target_language_ratio(text, "en") <= 1.0
    try:
        language = Language(lang=lang)
    except CurateError as e:  # an unknown language code is refused in one line
        one_line(e)
        language = Language(lang="en")
    for f in (language, Readability()):
        verdict = f.verify({"completion": text, "problem": text})
        assert isinstance(verdict.keep, bool)


# -- the command line: exit 2 and one line --------------------------------------------


@given(records=problem_records)
@settings(max_examples=25)
def test_the_command_line_refuses_a_bad_problem_file_in_one_line(records):
    from curate.cli import cli

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.jsonl"
        path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in records))
        result = CliRunner().invoke(cli, ["generate", "--input", str(path), "--out", str(Path(d) / "out"),
                                          "--dry-run", "--no-progress"])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error"), result.output
        assert not (Path(d) / "out").exists()
