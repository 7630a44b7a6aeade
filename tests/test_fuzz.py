"""Fuzzing the doors (hypothesis): every input parser either accepts its input or refuses
it with one CurateError line (exit 2 on the command line) — never another exception —
and the verifiers never raise, whatever text they are given; math verification never
outlives its timeout.

The doors: problem files (JSON lines, JSON, Parquet, CSV; `curate generate --dry-run`),
recipes (`curate run --dry-run`, `--set`), chain files, templates and few-shot examples,
trace tables in every layout (`curate filter`, presets, `--map`). Besides random
documents, real files are edited: the shipped recipes, chain, templates and examples, and
GSM8K problems, line by line (deleted, duplicated, moved, cut, re-indented, a value or a
key swapped, a line inserted). A refusal names the file, and its line where one line is
to blame; a refused command leaves no output folder (or no complete run).

Derandomized (the same examples every run), so CI is repeatable; HYPOTHESIS_PROFILE=explore
searches further (random examples, twenty times as many)."""

from __future__ import annotations

import functools
import json
import os
import re
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
settings.register_profile("explore", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"


def examples(n: int):
    """Each test's number of examples: sized for CI, twenty times more when exploring."""
    return settings(max_examples=n * 20 if EXPLORE else n)

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
@examples(120)
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
@examples(150)
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
@examples(200)
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
@examples(300)
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
@examples(150)
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
@examples(25)
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
@examples(150)
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
@examples(25)
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


# -- mutating real files ----------------------------------------------------------------


def line_edits(values: list[str], keys: list[str], lines: list[str]):
    """Edits of a real file, line by line: delete, duplicate, move, re-indent or cut a
    line, swap a value or a key, insert a line; each from the pools or random text."""
    where = st.integers(0, 10**6)
    text = st.one_of(st.text(st.characters(codec="utf-8", exclude_categories=("Cc",)), max_size=12),
                     st.text(max_size=12))
    value, key = st.sampled_from(values) | text, st.sampled_from(keys) | text
    return st.lists(st.one_of(
        st.tuples(st.sampled_from(["delete", "duplicate", "truncate"]), where, st.just("")),
        st.tuples(st.just("move"), where, where.map(str)),
        st.tuples(st.just("indent"), where, st.sampled_from(["", " ", "  ", "    ", "      ", "\t", "- "])),
        st.tuples(st.just("value"), where, st.sampled_from(values)),
        st.tuples(st.just("value"), where, value),
        st.tuples(st.just("key"), where, key),
        st.tuples(st.just("insert"), where, st.sampled_from(lines) | text),
        st.tuples(st.just("insert"), where, st.tuples(st.sampled_from(keys), value).map(": ".join)),
    ), min_size=1, max_size=4)


def edit(text: str, edits) -> str:
    """`text` with `edits` (from line_edits) applied, on lines that are not comments."""
    lines = text.splitlines()
    for op, at, piece in edits:
        targets = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
        if not targets:
            lines.append(piece)
            continue
        i = targets[at % len(targets)]
        line = lines[i]
        indent = line[: len(line) - len(line.lstrip())]
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "truncate":  # a half-written file
            lines = lines[:i] + [line[: at % (len(line) + 1)]]
        elif op == "move":
            lines.insert(int(piece) % len(lines), lines.pop(i))
        elif op == "indent":
            lines[i] = piece + line.lstrip()
        elif op == "value":
            key, sep, _ = line.partition(":")
            lines[i] = f"{key}: {piece}" if sep else f"{indent}- {piece}"
        elif op == "key":
            _, sep, rest = line.partition(":")
            lines[i] = f"{indent}{piece}:{rest}" if sep else f"{indent}{piece}: {line.strip()}"
        else:
            lines.insert(i, indent + piece)
    return "\n".join(lines) + "\n"


def refused_in_one_line(result, names: tuple[str, ...]) -> str:
    """The CLI's exit 2: one line `error: ...` naming one of `names`; no traceback."""
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.output
    assert any(name in errors[0] for name in names), errors[0]
    return errors[0].removeprefix("error: ")


# -- recipes ----------------------------------------------------------------------------

RECIPE_VALUES = [
    "null", "~", "0", "-1", "2", "1.5", "true", "no", "[]", "{}", "[a, b]", "[1, 2]", "{a: 1}", "{1: a, b: {2: c}}",
    "''", "${out}", "${nope}", "${stages.nope.out}", "${stages.generate.model}", "${stages.filter.out}",
    "${stages.sft.model}", "${stages.mix.out}", "${stages.grpo.model}", "${stages.eval.out}", "${data}/x.jsonl",
    "${vars.samples}", "${}", "${stages}", "${stages.a.b.c}", "${vars}", "x${samples}y", "${problem_limit}x",
    "${tiny_model}", "${prompts}", "${ out }", "${vars.nope}", "\"${base}:${problems}\"", "!!int abc", "!!float x",
    "!!bool x", "!!timestamp x", "!!binary '@'", "!!set {a}", "!!python/name:os.system", "2020-13-45", "0x_",
    "&a [*a]", "&a {b: *a}", "*nope", "[", "{", "\"open", "'", "\x00", "\ufeff", "\t", ": :", "generate",
    "train sft", "train grpo", "filter", "report", "card", "eval", "mix", "select", "1e400", "10" * 12, ".nan",
    "-.inf", "2020-01-01", "{command: card}", "[generate]", "[nope]", "|", ">", "%", "@", "`", "? x", "a=b:1",
    "[\"reasoning=${stages.select.out}:-1\"]", "{temperature: [1]}", "nope,math", "[math, 7]", "-", "- a"]
RECIPE_KEYS = [
    "command", "after", "input", "limit", "model", "backend", "template", "num_samples", "max_tokens", "policy",
    "sources", "config", "student", "data", "benchmarks", "k", "workers", "filters", "chain", "out", "overwrite",
    "dry_run", "max_steps", "epochs", "rewards", "prompts", "policy", "mix_dir", "run_dir", "temperature", "seed",
    "sampling", "allow_upsample", "tokenizer", "examples", "format_style", "vars", "stages", "smoke", "description",
    "samples", "nope", "<<", "? [a]", "1", "\"\"", "&a x", "*a", "${x}", "stage name", "-", "report"]
RECIPE_LINES = [
    "  made: {command: report, run_dir: ${out}}", "  card: {command: card, mix_dir: ${stages.mix.out}}",
    "  extra: {command: select, input: ${stages.generate.out}, after: [eval]}", "    after: [generate]",
    "    after: nope", "    after: [filter, eval]", "    after: {a: 1}", "smoke: {}", "smoke:", "smoke: []",
    "smoke: {vars: {nope: 1}}", "smoke: {stages: {nope: {}}}", "smoke: {stages: {generate: 3}}", "smoke: {x: 1}",
    "vars: []", "stages: null", "stages:", "stages: {}", "description: [1]", "x: &a [*a]", "<<: *a", "? [a]",
    "%YAML 1.1", "---", "...", "  loop: ${loop}", "  a: ${b}", "  b: ${a}", "  out: x", "vars: {out: 1}",
    "  data: 1", "  1: 2", "  \"s p\": {command: mix}", "  report: {command: report}", "- a", "  - a",
    "  r: {command: report, run_dir: ${stages.nope.out}}", "  t: {command: train grpo}", "  e: {command: eval}"]


@functools.cache
def shipped_recipe(name: str) -> str:
    from curate.recipe import recipe_path

    return recipe_path(name).read_text()


@given(name=st.sampled_from(["distill", "r1", "r1_zero"]), edits=line_edits(RECIPE_VALUES, RECIPE_KEYS, RECIPE_LINES),
       sets=st.dictionaries(st.sampled_from(["samples", "problems", "general", "base", "max_tokens", "teacher",
                                             "problem_limit", "nope", "out"]),
                            st.one_of(st.sampled_from(RECIPE_VALUES), st.text(max_size=12)), max_size=2),
       smoke=st.booleans())
@examples(150)
def test_recipes_plan_or_are_refused_in_one_line(name, edits, sets, smoke):
    """`curate run RECIPE --dry-run` on an edited shipped recipe (and random --set values)
    plans, or says FILE:LINE (or the --set) in one line and exits 2; it writes nothing."""
    from curate.cli import cli

    with tempfile.TemporaryDirectory() as d:
        path, out = Path(d) / f"{name}.yaml", Path(d) / "out"
        path.write_text(edit(shipped_recipe(name), edits))
        args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")] + (["--smoke"] if smoke else [])
        result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--dry-run", "--no-progress", *args])
        assert result.exit_code in (0, 2), result.output
        assert not out.exists()
    if result.exit_code == 0:
        assert "dry run: nothing run, nothing written" in result.output
        return
    message = refused_in_one_line(result, (str(path), "--set"))
    assert message.startswith("--set ") or names_the_line(message, path), message


WHOLE_FILE = ("no `stages:`", "a recipe is a mapping", "no `smoke:` block")  # what no one line is to blame for


def names_the_line(message: str, path: Path, whole_file: tuple[str, ...] = WHOLE_FILE) -> bool:
    """`message` starts with FILE:LINE, or names the file for a fault of the whole file."""
    return bool(re.match(rf"{re.escape(str(path))}(:\d+)+: ", message)) or message.startswith(
        tuple(f"{path}: {what}" for what in whole_file))


def recipe_edits():
    """Edits of a recipe's parsed document that keep it YAML: an option, a stage's command or
    `after`, a variable, a smoke setting or a top-level key set to any value; an option or a
    stage deleted; a stage renamed."""
    where, key = st.integers(0, 10**6), st.sampled_from(RECIPE_KEYS)
    value = st.one_of(json_values, st.sampled_from(RECIPE_VALUES))
    return st.lists(st.one_of(
        st.tuples(st.sampled_from(["option", "var", "smoke var", "smoke option", "top"]), where, key, value),
        st.tuples(st.sampled_from(["delete option", "delete stage", "rename stage"]), where, key, st.none()),
    ), min_size=1, max_size=4)


def apply_recipe_edits(doc: dict, edits) -> dict:
    def pick(mapping, at):
        return list(mapping)[at % len(mapping)] if isinstance(mapping, dict) and mapping else None

    for op, at, key, value in edits:
        stages = doc.get("stages") if isinstance(doc.get("stages"), dict) else {}
        name = pick(stages, at)
        stage = stages.get(name) if isinstance(stages.get(name), dict) else {}
        if op == "option":
            stage[key] = value
        elif op == "var" and isinstance(doc.get("vars"), dict):
            doc["vars"][pick(doc["vars"], at) if at % 3 else key] = value
        elif op.startswith("smoke") and isinstance(doc.get("smoke"), dict):
            part = doc["smoke"].setdefault("vars" if op == "smoke var" else "stages", {})
            if op == "smoke var" and isinstance(part, dict):
                part[pick(part, at) if at % 3 else key] = value
            elif isinstance(part, dict):
                part.setdefault(name if at % 3 else key, {})
                if isinstance(part[name if at % 3 else key], dict):
                    part[name if at % 3 else key][key] = value
        elif op == "top":
            doc[key] = value
        elif op == "delete option" and stage:
            del stage[pick(stage, at)]
        elif op == "delete stage" and name is not None:
            del stages[name]
        elif op == "rename stage" and name is not None:
            stages[key] = stages.pop(name)
    return doc


@given(name=st.sampled_from(["distill", "r1", "r1_zero"]), edits=recipe_edits(), smoke=st.booleans())
@examples(150)
def test_edited_recipe_documents_plan_or_are_refused_at_their_line(name, edits, smoke):
    """Edits that keep the recipe YAML reach every check of the plan (options, types,
    references, the order of the stages): each is a plan or one line naming FILE:LINE."""
    from curate.cli import cli

    doc = apply_recipe_edits(yaml.safe_load(shipped_recipe(name)), edits)
    with tempfile.TemporaryDirectory() as d:
        path, out = Path(d) / f"{name}.yaml", Path(d) / "out"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        sets = ["--set", "general=general.jsonl"] if name == "r1" else []
        result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--dry-run", "--no-progress", *sets,
                                          *(["--smoke"] if smoke else [])])
        assert result.exit_code in (0, 2), result.output
        assert not out.exists()
    if result.exit_code == 2:
        message = refused_in_one_line(result, (str(path), "--set general"))
        assert message.startswith("--set general") or names_the_line(message, path), message
    else:
        assert "dry run: nothing run, nothing written" in result.output


# -- trace tables through `curate filter` (formats: presets, --map, the layouts) ------------

ROLES = st.sampled_from(["user", "assistant", "system", "human", "gpt", "model", "USER", "", "tool"])
turns = st.lists(st.one_of(
    st.fixed_dictionaries({"role": ROLES, "content": st.one_of(traces, st.none())},
                          optional={"reasoning_content": traces}),
    st.fixed_dictionaries({"from": ROLES, "value": st.one_of(traces, st.none())}),
    st.dictionaries(st.sampled_from(["role", "from", "content", "value", "x"]), st.integers() | st.none(),
                    max_size=2),
), max_size=4)
# one kind of value per column (a Parquet column has one type); JSON lines may mix them
cell_kinds = {
    "text": traces, "int": st.integers(-10**6, 10**6), "float": st.floats(allow_nan=True),
    "texts": st.lists(traces, max_size=3), "chat": turns, "chat as JSON text": turns.map(json.dumps),
    "object": st.dictionaries(st.sampled_from(["a", "role", "content"]), st.text(max_size=5), max_size=2),
}
TRACE_COLUMNS = ["problem", "question", "prompt", "completion", "response", "output", "generation", "messages",
                 "conversations", "reasoning_content", "reasoning", "answer", "final_answer", "solution",
                 "reference_answer", "sample_id", "problem_id", "thinking_trajectories", "attempt",
                 "ground_truth_solution", "finish_reason", "x"]


@st.composite
def trace_tables(draw):
    names = draw(st.lists(st.sampled_from(TRACE_COLUMNS), min_size=1, max_size=5, unique=True))
    kinds = {name: draw(st.sampled_from(sorted(cell_kinds))) for name in names}
    rows = draw(st.integers(1, 4))
    mixed = draw(st.booleans())  # JSON lines only: any kind in any cell
    rows = [{name: draw(st.none() | cell_kinds[draw(st.sampled_from(sorted(cell_kinds)))] if mixed
                        else st.none() | cell_kinds[kinds[name]]) for name in names} for _ in range(rows)]
    column_map = draw(st.dictionaries(st.sampled_from(["problem", "completion", "reasoning_content",
                                                       "reference_answer", "answer"]),
                                      st.sampled_from(names) | st.sampled_from(TRACE_COLUMNS), max_size=2))
    return rows, column_map


@given(table=trace_tables(), kind=st.sampled_from(["jsonl", "parquet", "json"]),
       preset=st.sampled_from([None, None, "openthoughts", "openr1-math", "numinamath", "s1k", "limo"]))
@examples(100)
def test_trace_tables_in_any_layout_filter_or_are_refused_in_one_line(table, kind, preset):
    """`curate filter` over a table of traces in any layout (flat, messages, conversations,
    with a preset and --map): it filters, or refuses in one line with exit 2, leaving no
    complete run behind."""
    import polars as pl

    from curate.cli import cli
    from curate.store import load_manifest

    rows, column_map = table
    with tempfile.TemporaryDirectory() as d:
        path, out = Path(d) / f"traces.{kind}", Path(d) / "out"
        if kind == "jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        elif kind == "json":
            path.write_text(json.dumps(rows))
        else:
            try:
                pl.from_dicts(rows, infer_schema_length=None).write_parquet(path)
            except Exception:  # noqa: BLE001 - a table polars itself cannot build: no such file exists
                return
        args = [a for k, v in column_map.items() for a in ("--map", f"{k}={v}")] + (
            ["--preset", preset] if preset else [])
        result = CliRunner().invoke(cli, ["filter", "--input", str(path), "--out", str(out), "--filters",
                                          "format,length", "--workers", "1", "--no-progress", *args])
        assert result.exit_code in (0, 2), result.output
        if result.exit_code == 2:
            refused_in_one_line(result, (str(path), "--preset", "--map", "filter "))
            assert not out.exists() or (load_manifest(out) or {}).get("status") != "complete"
        else:
            assert (load_manifest(out) or {}).get("status") == "complete"


# -- problem files through `curate generate --dry-run` (curate.inputs) ----------------------

JSON_VALUES = ["null", "[]", "{}", "\"\"", "\"x\"", "1", "-0", "1e999", "NaN", "-Infinity", "true", "[1, 2]",
               "{\"role\": \"user\"}", "\"\\u0000\"", "\"\\ud800\"", "\"", "{", "[", ",", "\"a\": 1,", "\"#### 18\"",
               "\"\\\\boxed{18}\"", "1" * 25, "[{\"role\": \"user\", \"content\": 3}]", "\"#### \"", "\"\\n####\""]
JSON_KEYS = ["\"question\"", "\"problem\"", "\"answer\"", "\"id\"", "\"problem_id\"", "\"messages\"", "\"tests\"",
             "\"source\"", "\"domain\"", "\"conversations\"", "\"solution\"", "\"x\"", "\"\"", "question", "{"]
JSON_LINES = ["{}", "[]", "{\"problem\": \"1+1?\"}", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
              "{\"problem\": null}", "null", "\"text\"", "\ufeff{\"problem\": \"x\"}", "{\"problem\": \"x\"} {}",
              "{\"problem\": \"x\", \"problem\": 2}", "{\"conversations\": [{\"from\": \"human\"}]}", "]", "},", ""]


@functools.cache
def real_problems(kind: str) -> str:
    """Four GSM8K test problems (shipped with curate) with ids, sources and tests added, as JSON lines or as
    an indented JSON list (so that line edits reach single values)."""
    from curate.recipe import recipes_dir

    lines = (recipes_dir().parent / "data" / "gsm8k_test.jsonl").read_text().splitlines()[:4]
    records = [{**json.loads(line), "id": i, "source": "gsm8k", "tests": [{"input": "1", "output": "2"}]}
               for i, line in enumerate(lines)]
    if kind == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records)
    return json.dumps({"data": records}, indent=1)


def generate_dry_run(path: Path, out: Path, *args: str):
    from curate.cli import cli

    return CliRunner().invoke(cli, ["generate", "--input", str(path), "--out", str(out), "--dry-run", "--no-progress",
                                    *args])


OPTION_NAMES = ("--problem-column", "--answer-column", "--id-column", "--limit")
column_options = st.lists(st.one_of(
    st.tuples(st.sampled_from(OPTION_NAMES[:3]), st.sampled_from(["question", "problem", "answer", "id", "source",
                                                                  "tests", "messages", "x", ""])),
    st.tuples(st.just("--limit"), st.sampled_from(["0", "1", "2", "3", "100"]))), max_size=2, unique_by=lambda t: t[0])
# faults of a whole problem file, or of a column in it: no one line is to blame
WHOLE_PROBLEM_FILE = ("the file is empty", "column \"", "no problem column", "expected a list of objects",
                      "no problems", "the table has no rows", "not a readable Parquet file", "unsupported file type")


@given(kind=st.sampled_from(["jsonl", "json"]), edits=line_edits(JSON_VALUES, JSON_KEYS, JSON_LINES),
       garbage=st.tuples(st.sampled_from([b"", b"\xff", b"\xc3", b"\x00", b"\xef\xbb\xbf", b"\r"]),
                         st.integers(0, 10**6)), options=column_options)
@examples(80)
def test_edited_problem_files_plan_or_are_refused_in_one_line(kind, edits, garbage, options):
    """`curate generate --dry-run` on an edited real problem file (JSON lines or a JSON
    list; line edits, stray bytes): it plans, or names the file (and the line) in one line."""
    data = edit(real_problems(kind), edits).encode()
    at = garbage[1] % (len(data) + 1)
    data = data[:at] + garbage[0] + data[at:]
    with tempfile.TemporaryDirectory() as d:
        path, out = Path(d) / f"problems.{kind}", Path(d) / "out"
        path.write_bytes(data)
        result = generate_dry_run(path, out, *[a for option in options for a in option])
        assert result.exit_code in (0, 2), result.output
        assert not out.exists()
    if result.exit_code == 2:
        message = refused_in_one_line(result, (str(path), *OPTION_NAMES))
        assert message.startswith("--limit") or names_the_line(message, path, WHOLE_PROBLEM_FILE), message


@st.composite
def problem_tables(draw):
    names = draw(st.lists(st.sampled_from(PROBLEM_TABLE_COLUMNS), min_size=1, max_size=5, unique=True))
    kinds = {name: draw(st.sampled_from(sorted(cell_kinds))) for name in names}
    return [{name: draw(st.none() | cell_kinds[kinds[name]]) for name in names} for _ in range(draw(st.integers(1, 4)))]


PROBLEM_TABLE_COLUMNS = ["problem", "question", "prompt", "instruction", "messages", "conversations", "answer",
                         "reference_answer", "final_answer", "solution", "id", "problem_id", "tests", "source",
                         "domain", "x"]


@given(rows=problem_tables(), kind=st.sampled_from(["parquet", "cut parquet", "jsonl", "json", "csv"]),
       cut=st.integers(0, 10**6), options=column_options)
@examples(100)
def test_problem_tables_plan_or_are_refused_in_one_line(rows, kind, cut, options):
    """`curate generate --dry-run` on a table of problems with any columns and cell types
    (Parquet, a Parquet file cut short, JSON lines, JSON, CSV): a plan, or one line."""
    import polars as pl

    with tempfile.TemporaryDirectory() as d:
        path, out = Path(d) / f"problems.{kind.split()[-1]}", Path(d) / "out"
        if kind.endswith("parquet"):
            try:
                pl.from_dicts(rows, infer_schema_length=None).write_parquet(path)
            except Exception:  # noqa: BLE001 - a table polars itself cannot build: no such file exists
                return
            if kind == "cut parquet":
                data = path.read_bytes()
                path.write_bytes(data[: cut % len(data)])
        elif kind == "csv":
            path.write_text("".join(",".join(map(str, r.values())) + "\n" for r in rows))
        else:
            path.write_text(json.dumps(rows) if kind == "json" else "".join(json.dumps(r) + "\n" for r in rows))
        result = generate_dry_run(path, out, *[a for option in options for a in option])
        assert result.exit_code in (0, 2), result.output
        assert not out.exists()
    if result.exit_code == 2:
        message = refused_in_one_line(result, (str(path), *OPTION_NAMES))
        assert message.startswith("--limit") or names_the_line(message, path, WHOLE_PROBLEM_FILE) or (
            kind.endswith("parquet") and re.match(rf"{re.escape(str(path))}: row \d+[,:] ", message)), message


# -- templates and few-shot examples through `curate generate --dry-run` --------------------

JINJA_VALUES = ["{{ problem }}", "{{ nope }}", "{{ examples[0].problem }}", "[\"</answer>\"]", "[", "{{", "{%",
                "null", "3", "{{ 1/0 }}", "{{ problem | nope }}", "\"x\"", "{% endif %}", "{{ message('robot', 'x') }}"]
JINJA_KEYS = ["description", "variables", "stop", "examples_fields", "source", "nope", "{#---", "---#}", "{%", "- "]
JINJA_LINES = ["{% call message('user') %}{{ problem }}{% endcall %}", "{% call message('robot') %}x{% endcall %}",
               "{% call message('assistant') %}", "{% endcall %}", "{% for ex in examples %}", "{% endfor %}",
               "{% if problem %}", "{% endif %}", "text outside", "{{ ex.reasoning }}", "{#---", "---#}",
               "stop: [\"</think>\"]", "{{ message('user', problem) }}", "{% set x = 1/0 %}{{ x }}", "{{ }}",
               "{% raw %}", "{# open comment"]
EXAMPLE_VALUES = [*JSON_VALUES, "\"{{ problem }}\"", "{\"problem\": \"p\", \"reasoning\": \"r\", \"answer\": \"a\"}"]
EXAMPLE_KEYS = ["\"problem\"", "\"reasoning\"", "\"answer\"", "\"x\"", "\"\""]


@functools.cache
def shipped_template(name: str) -> str:
    from curate.templates import builtin_dir

    return (builtin_dir() / f"{name}.jinja").read_text()


@given(name=st.sampled_from(["cold_start_fewshot", "reasoning_chat", "r1_zero", "arithmetic_fewshot",
                             "general_cot"]),
       template_edits=st.none() | line_edits(JINJA_VALUES, JINJA_KEYS, JINJA_LINES),
       example_edits=st.none() | line_edits(EXAMPLE_VALUES, EXAMPLE_KEYS, JSON_LINES),
       examples_kind=st.sampled_from(["jsonl", "json"]))
@examples(80)
def test_edited_templates_and_examples_render_or_are_refused_in_one_line(name, template_edits, example_edits,
                                                                         examples_kind):
    """An edited shipped template (`--template FILE`) with edited few-shot examples
    (`--examples FILE`, JSON lines or a JSON list): the dry run renders the first prompts,
    or refuses in one line naming the template or the examples file."""
    from curate.templates import builtin_dir

    examples_text = (builtin_dir() / "examples" / "cold_start_math.jsonl").read_text()
    if examples_kind == "json":
        examples_text = json.dumps([json.loads(line) for line in examples_text.splitlines() if line.strip()], indent=1)
    with tempfile.TemporaryDirectory() as d:
        template, examples, problems = Path(d) / f"{name}.jinja", Path(d) / f"ex.{examples_kind}", Path(d) / "p.jsonl"
        template.write_text(edit(shipped_template(name), template_edits) if template_edits else shipped_template(name))
        examples.write_text(edit(examples_text, example_edits) if example_edits else examples_text)
        problems.write_text(real_problems("jsonl"))
        result = generate_dry_run(problems, Path(d) / "out", "--template", str(template), "--examples", str(examples))
        assert result.exit_code in (0, 2), result.output
        assert not (Path(d) / "out").exists()
    if result.exit_code == 2:
        refused_in_one_line(result, (str(template), str(examples)))


# -- the shipped chain, edited -------------------------------------------------------------

CHAIN_VALUES = ["{}", "null", "[]", "{max_tokens: -1}", "{style: nope}", "{timeout: x}", "{lang: xx}",
                "{benchmarks: [nope]}", "{benchmarks: math500, n: 0}", "{'on': nope}", "{threshold: 2}",
                "{mode: cascade}", "{mode: nope}", "{drop_truncated: 3}", "{x: 1}", "!!int x", "&a [*a]", "[", "{"]
CHAIN_KEYS = ["- length", "- format", "- math", "- language", "- readability", "- dedup", "- decontam", "- code",
              "- nope", "filters", "- 1", "- [a]", "-"]
CHAIN_LINES = ["  - length", "  - nope", "  - {}", "  - {a: 1, b: 2}", "  - [math]", "  - 3", "filters: []",
               "filters:", "filters: x", "  - math: {mode: cascade, judge: {backend: nope}}",
               "  - decontam: {method: llm}"]


@given(edits=line_edits(CHAIN_VALUES, CHAIN_KEYS, CHAIN_LINES))
@examples(80)
def test_edited_default_chain_builds_or_is_refused_in_one_line(edits):
    from curate.chain import build_filters, default_chain_path, read_chain

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "chain.yaml"
        path.write_text(edit(default_chain_path().read_text(), edits))
        try:
            chain, _ = read_chain(str(path), None)
            filters = build_filters(chain)
        except CurateError as e:  # every fault names the file, line and column (of the filter or its parameter)
            assert re.match(rf"{re.escape(str(path))}(:\d+:\d+: |: expected a `filters:` list)", one_line(e)), str(e)
            return
        for f in filters:
            getattr(f, "close", lambda: None)()
        assert len(filters) == len(chain)


# -- hostile YAML: nested aliases (a "billion laughs") and deep nesting ------------------------


def laughs(levels: int = 9, width: int = 9) -> str:
    """`levels` lines, each a list of `width` aliases of the line above: a few hundred bytes
    that expand to width**levels values (9**9: 387 million) for whoever walks them."""
    lines = [f"x0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"x{k}: &l{k} [{', '.join([f'*l{k - 1}'] * width)}]" for k in range(1, levels)]
    return "\n".join(lines) + "\n"


BOMB_AT = r":[2-9]:\d+: bad YAML: the aliases expand to more than 100,000 values"  # on one of the alias lines


def test_a_billion_laughs_in_a_chain_file_is_refused_at_once(tmp_path):
    from curate.chain import read_chain
    from curate.cli import cli

    path, out = tmp_path / "chain.yaml", tmp_path / "out"
    path.write_text(laughs() + "filters:\n  - format\n  - length: {max_tokens: *l8}\n")
    start = time.perf_counter()
    with pytest.raises(CurateError, match=re.escape(str(path)) + BOMB_AT):
        read_chain(str(path), None)
    assert time.perf_counter() - start < 0.5
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"completion": "<think>\\nx\\n</think>\\n\\n\\\\boxed{1}"}\n')
    result = CliRunner().invoke(cli, ["filter", "--input", str(problems), "--out", str(out), "--chain", str(path)])
    assert result.exit_code == 2
    assert re.match(re.escape(str(path)) + BOMB_AT, refused_in_one_line(result, (str(path),)))
    assert not out.exists()


def test_a_billion_laughs_in_a_recipe_or_a_set_value_is_refused_at_once(tmp_path):
    from curate.cli import cli
    from curate.errors import yaml_data
    from curate.options import yaml_value
    from curate.recipe import plan

    path, out = tmp_path / "bomb.yaml", tmp_path / "out"
    path.write_text("vars:\n  " + laughs().replace("\n", "\n  ").rstrip() + "\nstages:\n  mix:\n    command: mix\n"
                    "    sources: [a=x.parquet]\n")
    start = time.perf_counter()
    with pytest.raises(CurateError, match=re.escape(str(path)) + BOMB_AT):
        plan(str(path), out)
    with pytest.raises(CurateError, match="not a YAML value .*the aliases expand to more than 100,000 values"):
        yaml_value("[" + laughs().replace("\n", ", ").rstrip(", ") + "]")
    with pytest.raises(yaml.YAMLError):  # the one loader every YAML curate reads goes through
        yaml_data(laughs())
    assert time.perf_counter() - start < 0.5
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--dry-run", "--no-progress"])
    assert result.exit_code == 2
    assert re.match(re.escape(str(path)) + BOMB_AT, refused_in_one_line(result, (str(path),)))
    assert not out.exists()


def test_ordinary_anchors_and_aliases_still_load(tmp_path):
    from curate.chain import build_filters, read_chain
    from curate.errors import yaml_data

    assert yaml_data(laughs(levels=4))["x3"][8][8][8] == ["lol"] * 9  # 9**4 values: within the limit
    path = tmp_path / "chain.yaml"
    path.write_text("limits: &limits {max_tokens: 64}\nfilters:\n  - format\n  - length: *limits\n"
                    "  - readability: {<<: {max_paragraph_chars: 500}, min_unique_word_ratio: 0.1}\n")
    chain, _ = read_chain(str(path), None)
    assert list(chain) == [("format", {}), ("length", {"max_tokens": 64}),
                           ("readability", {"max_paragraph_chars": 500, "min_unique_word_ratio": 0.1})]
    assert [f.name for f in build_filters(chain)] == ["format", "length", "readability"]


@pytest.mark.parametrize("text", ["[" * 5000, "- " * 5000 + "x", "a:\n" + "".join(f"{' ' * k}b:\n" for k in
                                                                                   range(1, 300))])
def test_yaml_nested_beyond_any_config_is_one_line_not_a_recursion_error(tmp_path, text):
    from curate.chain import read_chain

    path = tmp_path / "chain.yaml"
    path.write_text(text)
    with pytest.raises(CurateError, match=re.escape(str(path)) + r":\d+:\d+: bad YAML: nested more than 100 levels"):
        read_chain(str(path), None)
