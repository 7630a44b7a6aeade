"""The demo's problem set and template: the committed file is what the seeded script
writes, its answers are right, and the template's worked examples have exactly the shape
the default chain keeps (format `think`, math-verify on the boxed answer)."""

import json
import re

import pytest

from conftest import REPO
from curate.data.make_arithmetic import problems
from curate.filters.format import check_format
from curate.filters.math import verify_math
from curate.templates import load_template

ARITHMETIC = REPO / "curate" / "data" / "arithmetic.jsonl"


def test_the_committed_set_is_what_the_seeded_script_writes():
    rows = [json.loads(line) for line in ARITHMETIC.read_text().splitlines()]
    assert rows == problems(30, 0)
    assert len({r["question"] for r in rows}) == 30
    assert {r["steps"] for r in rows} == {1, 2}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_answers_are_right(seed):
    """Each answer recomputed from the numbers in the question, per kind of problem."""
    for r in problems(60, seed):
        q, n = r["question"], [int(x) for x in re.findall(r"\d+", r["question"])]
        if "twice as many" in q:
            expected = 3 * n[0]
        elif "change" in q:
            expected = n[2] - n[0] * n[1]
        elif "packs" in q:
            expected = n[0] * n[1] + n[2]
        elif "and then gives" in q:
            expected = n[0] + n[1] - n[2]
        elif "equally" in q:
            expected = n[0] // n[1]
        elif "in each bag" in q:
            expected = n[0] * n[1]
        elif "gives" in q:
            expected = n[0] - n[1]
        else:
            expected = n[0] + n[1]
        assert r["answer"] == str(expected) and expected >= 0, r


def test_template_examples_have_the_shape_the_default_chain_keeps():
    messages = load_template("arithmetic_fewshot").render(
        {"problem": "Mia has 2 cats. Mia gets 1 more cat. How many cats?"})
    assert messages[-1] == {"role": "assistant", "content": "<think>\n"}  # the prefill the model continues
    assert messages[-2]["content"].startswith("Mia has 2 cats.")
    examples = [(u["content"], a["content"]) for u, a in zip(messages[1:-2:2], messages[2:-2:2])]
    assert len(examples) == 8
    for question, answer in examples:
        assert check_format(answer).keep, check_format(answer).reason
        gold = answer.rsplit("\\boxed{", 1)[1].split("}")[0]
        assert verify_math(gold, answer).correct, (question, answer)
