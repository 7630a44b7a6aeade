"""filters/answers.py: reading final answers, one failure class at a time (pure text, no
math-verify; the verdicts with math-verify are in test_filter_math.py)."""

import pytest

from curate.filters.answers import (
    boxes,
    choice,
    final_boxes,
    gold_answer,
    is_multipart,
    normalise,
    number_in_words,
    read_answers,
    same_answer,
)

# --- several boxes ----------------------------------------------------------------------


def test_boxes_are_top_level_and_balanced():
    text = "a \\boxed{\\frac{1}{2}} b \\fbox{\\boxed{3}} c \\boxed{unbalanced"
    assert [c for _, _, c in boxes(text)] == ["\\frac{1}{2}", "\\boxed{3}"]
    assert boxes("no box, \\boxed 5") == []


@pytest.mark.parametrize(
    "text, run",
    [
        ("\\boxed{1} and \\boxed{2}", ["1", "2"]),
        ("\\boxed{1}, \\boxed{2}, \\boxed{3}", ["1", "2", "3"]),
        ("$\\boxed{-2}$ \\quad \\text{and} \\quad $\\boxed{1}$.", ["-2", "1"]),
        ("\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}", ["(3, 3)", "(1, 1)"]),
        ("\\( y_1 = \\boxed{x+1} \\) and \\( y_2 = \\boxed{x-1} \\)", ["x+1", "x-1"]),
        ("x = \\boxed{1}, y = \\boxed{2}", ["1", "2"]),
        ("\\boxed{1} or \\boxed{2}", ["1", "2"]),
        # not linked: words without a connective, or a long stretch of text
        ("\\boxed{1} no no no no no \\boxed{2}", ["2"]),
        ("First \\boxed{3}, and after checking every case once more we settle on \\boxed{4}", ["4"]),
        ("So \\boxed{17}. Hence \\boxed{18}", ["18"]),
    ],
)
def test_final_boxes_is_the_last_linked_run(text, run):
    assert final_boxes(text) == run


def test_gold_with_several_boxes_is_one_answer():
    assert gold_answer("\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).") == "1, -2"
    assert gold_answer("so the solutions are $n = \\boxed{1,-2}.$") == "1,-2"
    assert gold_answer("$$\\boxed{2}, \\boxed{3}, \\boxed{5}$$") == "2, 3, 5"
    assert gold_answer("\\boxed{1} no no no no no \\boxed{2}") == "2"


@pytest.mark.parametrize(
    "text, multipart",
    [
        ("1, 2", True), ("-2,1", True), ("x=1 or x=2", True), ("6 \\text{ and } 8", True), ("(1,2)", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", True), ("\\{1,2,3\\}", True), ("{1,2,3}", True), ("[0,1)", True),
        ("5", False), ("\\frac{1}{2}", False), ("1,000", False), ("10,\\!080", False), ("1{,}000", False),
        ("11,\\! 111,\\! 111,\\! 100", False), ("\\text{Evelyn and Carla}", False), ("f(x, y)", False),
    ],
)
def test_is_multipart(text, multipart):
    assert is_multipart(text) is multipart


def test_only_the_last_box_for_a_single_gold_the_run_for_several():
    answer = "The roots are \\boxed{-2} and \\boxed{1}."
    assert read_answers("1", answer).pred == "1"
    assert read_answers("-2, 1", answer).pred == "-2, 1"
    assert read_answers("\\boxed{1}\\boxed{-2}", answer).pred == "-2, 1"
    assert read_answers("(-2, 1)", answer).pred == "-2, 1"
    reading = read_answers("-2, 1", answer)
    assert reading.whole and reading.predicted == "-2, 1"


def test_a_final_answer_after_the_boxes_overrides_them():
    answer = "So $x = \\boxed{255}$. In total she has $10,455. The final answer is $10,455$. I hope it is correct."
    reading = read_answers("10455", answer)
    assert not reading.whole and "10,455" in reading.pred and "255" not in reading.pred
    # a "final answer" with nothing after it does not throw the box away
    assert read_answers("5", "\\boxed{5} is the final answer: see above").pred == "5"


def test_no_answer_part():
    assert read_answers("5", None).pred is None
    assert read_answers("5", "  ").pred is None


# --- unboxed answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, pred, whole",
    [
        ("The answer is 18.", "18", True),
        ("**Final Answer:** (C)", "(C)", True),
        ("The answer is 18 dollars.", "18", True),
        ("$\\frac{1}{2}$", "\\frac{1}{2}", True),
        ("12:00 p.m.", "12:00 p.m", True),
        ("#### 18", "#### 18", False),  # math-verify's extraction reads it
        ("So she pays $1,000 in total.", "So she pays $1,000 in total.", False),
        ("First line\nThe answer is 18.", "First line\nThe answer is 18.", False),
    ],
)
def test_unboxed_answer_is_whole_only_when_it_is_one_answer(answer, pred, whole):
    reading = read_answers("18", answer)
    assert (reading.pred, reading.whole) == (pred, whole)


# --- multiple choice ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("C", ("C", None)), ("(C)", ("C", None)), ("\\text{(C)}", ("C", None)), ("\\textbf{C.}", ("C", None)),
        ("\\text{(C) Plane}", ("C", "Plane")), ("(C)Plane", ("C", "Plane")), ("C. Plane", ("C", "Plane")),
        ("c", None), ("A:B=1", None), ("AB", None), ("x", None), ("K", None),
    ],
)
def test_choice(text, parsed):
    assert choice(text) == parsed


@pytest.mark.parametrize(
    "gold, pred, same",
    [
        ("\\text{(C) Plane}", "\\text{(C)}", True),
        ("\\text{(C) Plane}", "C", True),
        ("\\text{(C) Plane}", "\\text{plane}", True),  # the text alone
        ("C", "\\text{(C) Plane}", True),
        ("\\text{(C)}", "(c)", True),
        ("\\text{Plane}", "\\text{(C) Plane}", True),  # the gold is the picked option's text
        # a different letter, or a different letter's text, is never a pass
        ("\\text{(C) Plane}", "B", False),
        ("\\text{(C) Plane}", "\\text{(B) Line}", False),
        ("\\text{(C) Plane}", "\\text{(B) Plane}", False),
        ("\\text{(C) Plane}", "\\text{(C) Line}", False),
        ("\\text{(C) Plane}", "\\text{Line}", False),
        ("C", "\\text{Plane}", False),  # a letter alone: its text is unknown
    ],
)
def test_same_choice(gold, pred, same):
    assert same_answer(gold, pred) is same


# --- words and units around a number -------------------------------------------------------


@pytest.mark.parametrize(
    "text, number",
    [
        ("5\\text{ cm}", "5"), ("15\\mbox{ cm}^2", "15"), ("864 \\mbox{ inches}^2", "864"),
        ("125\\textnormal{ miles}", "125"),
        ("\\$18", "18"), ("\\$18.90", "18.90"), ("18 dollars", "18"), ("0.06 yuan", "0.06"), ("5 cm", "5"),
        ("12^{\\mathrm{th}}\\text{ grade}", "12"), ("12^{\\text{th}}", "12"), ("12th", "12"), ("3rd", "3"),
        ("-4 \\text{ degrees}", "-4"),
        # not a number among words: maths, a list, or nothing to strip
        ("5", None), ("2x", None), ("2 ab", None), ("2 \\sin x", None), ("5 \\text{ and } 6", None),
        ("12\\text{ and }13", None), ("3 \\log 2", None), ("x + 5 cm", None), ("5\\%", None), ("\\frac{1}{2}", None),
    ],
)
def test_number_in_words(text, number):
    assert number_in_words(text) == number


def test_units_are_read_per_element_of_a_list():
    assert normalise("{35 cm,4}") == "{35,4}"
    assert normalise("5\\text{ cm}, 6\\text{ cm}") == "5,6"


# --- notation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, normalised",
    [
        ("$$x = \\frac{1}{2}$$", "x = \\frac{1}{2}"),
        ("$5$", "5"),
        ("\\(5\\)", "5"),
        ("$5$ and $6$", "5 and 6"),
        ("1 - \\frac{1}{\\mathrm{e}}", "1 - \\frac{1}{e}"),
        ("\\mathrm{e}^{2}", "e^{2}"),
        ("\\operatorname{e}", "e"),
        ("\\mathrm{exp}(2)", "\\mathrm{exp}(2)"),
        ("\\$5", "5"),
    ],
)
def test_normalise_notation(text, normalised):
    assert normalise(text) == normalised


@pytest.mark.parametrize(
    "gold, answer, pair",
    [
        ("3,5", "\\boxed{3.5}", ("3.5", "3.5")),
        ("1000.99", "\\boxed{1000,99}", ("1000.99", "1000.99")),
        ("0,111", "\\boxed{0.111}", ("0.111", "0.111")),
        ("1,22", "1.22", ("1.22", "1.22")),
        # a thousands grouping, a list, or no decimal on the other side: the comma stays
        ("3,500", "\\boxed{3.5}", ("3,500", "3.5")),
        ("3.5", "\\boxed{3,500}", ("3.5", "3,500")),
        ("3, 5", "\\boxed{3.5}", ("3, 5", "3.5")),
        ("3,5", "\\boxed{3}", ("3,5", "3")),
        ("(1,2)", "\\boxed{1.2}", ("(1,2)", "1.2")),
    ],
)
def test_decimal_comma_only_where_unambiguous(gold, answer, pair):
    reading = read_answers(gold, answer)
    assert (reading.gold, reading.pred) == pair


@pytest.mark.parametrize(
    "gold, pred, same",
    [
        ("12:00", "12:00", True),
        ("12:00", "12:00\\text{ p.m.}", True),
        ("2:00 \\text{ p.m.}", "14:00", True),
        ("9:30", "09:30", True),
        ("12:00", "1:00", False),
        ("2:00 \\text{ p.m.}", "2:00 \\text{ a.m.}", False),
        ("3:15", "6:30", None),  # may be a ratio: math-verify decides
    ],
)
def test_times(gold, pred, same):
    assert same_answer(gold, pred) is same


def test_same_answer_text_and_integers():
    assert same_answer("\\left( 3, \\frac{\\pi}{2} \\right)", "( 3,\\frac{\\pi}{2})") is True
    assert same_answer("007", "7") is True
    assert same_answer("-3", "3") is False
    assert same_answer("2 3", "23") is None  # a space between digits is not noise
    assert same_answer("\\frac{1}{2}", "0.5") is None


@pytest.mark.parametrize("gold, pred", [("15", "\\frac{13}{4}"), ("210", "-\\frac{35}{9}"), ("326.5", "6"),
                                        ("\\dfrac{243}{625}", "12"), (".0000672", "335"), ("12", "0.12")])
def test_plain_numbers_far_apart_are_wrong_without_math_verify(gold, pred):
    from curate.filters.math import quick_verdict, verify_math

    assert same_answer(gold, pred) is False
    completion = f"<think>\nok\n</think>\n\nThe answer is $\\boxed{{{pred}}}$."
    assert quick_verdict(gold, completion).status == "wrong"
    # what math-verify itself decides, with the rule's verdict taken out of the way
    from math_verify import parse, verify
    assert not verify(parse(f"\\boxed{{{gold}}}"), parse(f"\\boxed{{{pred}}}"))
    assert verify_math(gold, completion).status == "wrong"


@pytest.mark.parametrize("gold, pred", [("5", "5.0000001"), ("\\frac{1}{2}", "0.5"), ("7", "\\frac{14}{2}"),
                                        ("2", "\\frac{4}{0}"), ("3", "\\sqrt{9}")])
def test_numbers_close_together_or_not_plain_are_left_to_math_verify(gold, pred):
    assert same_answer(gold, pred) is None
