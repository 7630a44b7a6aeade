import pytest

from curate.parsing import boxes, last_boxed, parse_completion, parse_trace, think_form


def test_think_then_answer_with_boxed():
    p = parse_completion("<think>\n2+2 is 4.\n</think>\n\nThe sum is \\boxed{4}.")
    assert p == ("2+2 is 4.", "The sum is \\boxed{4}.", "4")


def test_prefilled_think_has_no_opening_tag():
    p = parse_completion("Let me add.\n</think>\n\nSo \\boxed{4}", prefill="<think>\n")
    assert p.reasoning == "Let me add."
    assert p.answer == "So \\boxed{4}"
    assert p.final_answer == "4"


def test_unclosed_think_is_truncated_reasoning_without_answer():
    p = parse_completion("<think>\nI keep going and going")
    assert p == ("I keep going and going", None, None)


def test_prefilled_and_never_closed():
    p = parse_completion("still thinking \\boxed{3}", prefill="<think>\n")
    assert p == ("still thinking \\boxed{3}", None, None)


def test_thought_solution_tags():
    text = ("<|begin_of_thought|>\nfirst\nsecond\n<|end_of_thought|>\n\n"
            "<|begin_of_solution|>\nHence \\boxed{\\frac{1}{2}}\n<|end_of_solution|>")
    p = parse_completion(text)
    assert p == ("first\nsecond", "Hence \\boxed{\\frac{1}{2}}", "\\frac{1}{2}")


def test_thought_tags_truncated():
    assert parse_completion("<|begin_of_thought|> long ...") == ("long ...", None, None)


def test_r1_zero_answer_tags():
    p = parse_completion(" <think> 3 times 4 </think> <answer> 12 </answer>")
    assert p == ("3 times 4", "12", "12")


def test_r1_zero_answer_tags_prefer_boxed():
    p = parse_completion("<think>x</think><answer>so \\boxed{12}</answer>")
    assert p.answer == "so \\boxed{12}" and p.final_answer == "12"


def test_no_tags_whole_text_is_answer():
    p = parse_completion("The answer is 18.")
    assert p == (None, "The answer is 18.", None)


def test_none_completion():
    assert parse_completion(None) == (None, None, None)


def test_last_boxed_nested_and_last_wins():
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{a}{b^{2}}}") == "\\frac{a}{b^{2}}"
    assert last_boxed("\\fbox{7}") == "7"
    assert last_boxed("no box") is None


def test_boxes_are_top_level_and_an_unclosed_box_is_passed_over():
    """One brace matcher for the whole project (the math filter's answer reading uses it too)."""
    assert last_boxed("\\boxed{x = \\boxed{5}}") == "x = \\boxed{5}"  # the outer box is the answer
    assert last_boxed("\\boxed{5} and then \\boxed{6") == "5"
    assert last_boxed("\\boxed{ oops \\boxed{5}") == "5"
    assert boxes("a \\boxed{1}, \\fbox{2}") == [(2, 11, "1"), (13, 21, "2")]
    assert last_boxed("\\boxed{unbalanced") is None
    assert last_boxed("\\boxed{5} and \\boxed 6") == "5"


def test_boxed_only_in_answer_part():
    p = parse_completion("<think>maybe \\boxed{3}</think>It is 4.")
    assert p.final_answer is None


SKY = ("<|begin_of_thought|>\n\nadd them\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\nSo \\boxed{4}\n\n"
       "<|end_of_solution|>")


@pytest.mark.parametrize("text, reasoning, expected", [
    ("<think>\nr\n</think>\n\nSo \\boxed{4}", None, ("r", "So \\boxed{4}", "4", "think", True, None)),
    ("r\n</think>\n\nSo \\boxed{4}", None, ("r", "So \\boxed{4}", "4", "think", True, None)),
    ("<think>\nr and more", None, ("r and more", None, None, "think", False, "no </think>")),
    (SKY, None, ("add them", "So \\boxed{4}", "4", "thought", True, None)),
    ("<|begin_of_thought|> cut", None, ("cut", None, None, "thought", False, "no <|end_of_thought|>")),
    ("<|begin_of_thought|>r<|end_of_thought|><|begin_of_solution|>So \\boxed{4}", None,
     ("r", "So \\boxed{4}", "4", "thought", False, "no <|end_of_solution|>")),
    ("<|begin_of_thought|>r<|end_of_thought|>", None, ("r", "", None, "thought", True,
                                                       "no solution after <|end_of_thought|>")),
    ("<think>r</think><answer>12</answer>", None, ("r", "12", "12", "r1_zero", True, None)),
    ("<think>r</think><answer>12", None, ("r", "12", "12", "r1_zero", False, "no </answer>")),
    ("So \\boxed{4}", "add them", ("add them", "So \\boxed{4}", "4", "column", True, None)),
    (None, "add them", ("add them", "", None, "column", True, "no answer after the reasoning")),
    ("The answer is 4.", None, (None, "The answer is 4.", None, "none", True, "no <think> block")),
    ("x<think>r</think>a", None, ("r", "a", None, "think", True, "text before <think>")),
    ("<think>a</think><think>b</think>c", None, ("a", "<think>b</think>c", None, "think", True, "2 think blocks")),
])
def test_parse_trace_reads_every_spelling_into_one_shape(text, reasoning, expected):
    assert tuple(parse_trace(text, reasoning)) == expected
    if expected[5] is None:
        assert think_form(parse_trace(text, reasoning)) == f"<think>\n{expected[0]}\n</think>\n\n{expected[1]}"
