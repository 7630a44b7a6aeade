"""train/rewards.py on hand-made completions, with the real verifiers (math-verify in
worker processes, fastText lid.176, the code sandbox), and against the filters: the
reward and the filter must give the same verdict on the same input."""

import json

import polars as pl
import pytest

from curate.filters.format import Format
from curate.filters.language import Language
from curate.filters.math import Math, MathPool
from curate.train import rewards

GOOD = "<think>\nWe need 16 - 3 - 4 = 9 eggs, sold at $2 each.\n</think>\n\nThe answer is $\\boxed{18}$."
WRONG = "<think>\nWe need 16 - 3 = 13 eggs, sold at $2 each.\n</think>\n\nThe answer is $\\boxed{26}$."
UNPARSEABLE = "<think>\nI am not sure.\n</think>\n\nI cannot tell."
NO_TAGS = "The answer is $\\boxed{18}$."
UNCLOSED = "<think>\nWe need 16 - 3 - 4 = 9 eggs, so the answer is \\boxed{18}"
PREFILLED = "We need 16 - 3 - 4 = 9 eggs, sold at $2 each.\n</think>\n\nThe answer is $\\boxed{18}$."
ZERO = "<think> 16 - 3 - 4 = 9 eggs, times 2 dollars. </think> <answer> 18 </answer>"
ENGLISH = ("<think>\nFirst we count the eggs that are left over every single day.\n"
           "Then we multiply the remaining eggs by the price of each one.\n</think>\n\n\\boxed{18}")
MIXED = ("<think>\nFirst we count the eggs that are left over every single day.\n"
         "首先，我们需要计算每天剩下的鸡蛋总数，然后乘以价格。\n"
         "Then we multiply the remaining eggs by the price of each one.\n</think>\n\n\\boxed{18}")


@pytest.fixture(scope="module", autouse=True)
def one_worker():
    """The accuracy reward with one math-verify process, closed at the end."""
    default = rewards.accuracy.pool
    rewards.accuracy.pool = MathPool(workers=1)
    yield
    rewards.close()
    rewards.accuracy.pool = default


def test_accuracy_right_wrong_unparseable_and_unscorable():
    got = rewards.accuracy([GOOD, WRONG, UNPARSEABLE, NO_TAGS, UNCLOSED, GOOD, ZERO],
                           reference_answer=["18", "18", "18", "18", "18", None, "18"])
    # NO_TAGS: no think block, the whole text is the answer (as the math filter reads it);
    # UNCLOSED: truncated, no answer; no reference: cannot be scored (None, TRL skips it)
    assert got == [1.0, 0.0, 0.0, 1.0, 0.0, None, 1.0]


def test_accuracy_reads_a_prefilled_think_like_a_written_one():
    # the template opened <think>: the completion has only the closing tag
    assert rewards.accuracy([PREFILLED], reference_answer=["18"], prefill=["<think>\n"]) == [1.0]
    # prefilled and never closed: everything is reasoning, there is no answer
    assert rewards.accuracy(["We need \\boxed{18}"], reference_answer=["18"], prefill=["<think>\n"]) == [0.0]
    # without the prefill the same text would be read as all answer
    assert rewards.accuracy(["We need \\boxed{18}"], reference_answer=["18"]) == [1.0]


def test_accuracy_takes_chat_completions():
    chat = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": WRONG}]]
    assert rewards.accuracy(chat, reference_answer=["18", "18"]) == [1.0, 0.0]


def test_accuracy_on_code_runs_the_tests_in_the_sandbox():
    tests = json.dumps({"type": "assert", "code": "assert add(2, 3) == 5\nassert add(-1, 1) == 0"})
    right = "<think>\nAdd them.\n</think>\n\n```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "<think>\nAdd them.\n</think>\n\n```python\ndef add(a, b):\n    return a - b\n```"
    no_code = "<think>\nAdd them.\n</think>\n\nJust add."
    assert rewards.accuracy([right, wrong, no_code], reference_answer=[None] * 3, tests=[tests] * 3) == [1.0, 0.0, 0.0]


def test_format_think_and_r1_zero_styles():
    assert rewards.format([GOOD, WRONG, NO_TAGS, UNCLOSED, "<think>\n\n</think> 18", ZERO]) == [1, 1, 0, 0, 0, 1]
    assert rewards.format([PREFILLED], prefill=["<think>\n"]) == [1.0]
    assert rewards.format([PREFILLED]) == [1.0]  # check_format accepts a missing opening tag in `think` style
    assert rewards.format([ZERO, GOOD, "<think> r </think> <answer> </answer>", "<answer>18</answer>"],
                          style="r1_zero") == [1.0, 0.0, 0.0, 0.0]
    # R1-Zero prompt that ends in "<think>": the prefill completes the tags
    assert rewards.format([" 16 - 3 - 4 = 9 </think> <answer> 18 </answer>"], prefill=["<think>"],
                          style="r1_zero") == [1.0]


def test_language_is_the_share_of_target_language_in_the_reasoning():
    english, mixed, no_reasoning = rewards.language([ENGLISH, MIXED, NO_TAGS])
    assert english == 1.0
    assert 0.2 < mixed < 0.9  # the Chinese sentence's letters count against
    assert no_reasoning == 1.0
    # the row's own target language wins over the default
    assert rewards.language([ENGLISH], language=["zh"])[0] == 0.0
    # the answer part does not count: only the chain of thought
    foreign_answer = ENGLISH.replace("\\boxed{18}", "La respuesta es dieciocho porque contamos todos los huevos.")
    assert rewards.language([foreign_answer]) == [1.0]


def test_overlong_soft_punishment():
    ids = [[0] * 10, [0] * 80, [0] * 90, [0] * 100]
    got = rewards.overlong([GOOD] * 4, completion_ids=ids, max_len=100, buffer=20)
    assert got == [0.0, 0.0, -0.5, -1.0]
    assert rewards.overlong([UNCLOSED], completion_ids=[[0] * 10], max_len=100, buffer=20) == [-1.0]


def test_rewards_and_filters_give_the_same_verdicts():
    completions = [GOOD, WRONG, UNPARSEABLE, NO_TAGS, UNCLOSED, PREFILLED, ZERO, ENGLISH, MIXED,
                   "<think>\n\n</think> 18", "<think>a</think><think>b</think> \\boxed{18}", ""]
    golds = ["18"] * len(completions)
    batch = pl.DataFrame({"completion": completions, "reference_answer": golds})

    math_filter = Math(workers=1)
    try:
        kept = math_filter(batch).keep.to_list()
    finally:
        math_filter.close()
    assert [r == 1.0 for r in rewards.accuracy(completions, reference_answer=golds)] == kept

    for style in ("think", "r1_zero"):
        kept = Format(style=style)(batch).keep.to_list()
        assert [r == 1.0 for r in rewards.format(completions, style=style)] == kept

    decision = Language(field="reasoning")(batch)
    assert rewards.language(completions) == decision.scores["language_ratio"].to_list()
    assert kept != [True] * len(completions)  # the inputs exercise both verdicts
