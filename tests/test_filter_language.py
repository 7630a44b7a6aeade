"""The language filter with the real fastText lid.176 model (no mocks), on rows of the
MATH-500 and GSM8K test files (MIT; see tests/data/README.md)."""

import json
import re

import polars as pl
import pytest
from conftest import GSM8K_TEST, MATH500_TEST

from curate.errors import CurateError
from curate.filters.language import (
    classify_sentences,
    evidently_english,
    Language,
    language_report,
    script_ratio,
    split_sentences,
    strip_non_prose,
    target_language_ratio,
)


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


MATH = [r["solution"] for r in _rows(MATH500_TEST)]
GSM8K = [r["answer"] for r in _rows(GSM8K_TEST)]

# Sentences a reasoning model switches into, with the language they should be read as.
FOREIGN = [
    ("zh", "首先，我们需要计算总数。"),
    ("ru", "Давайте сначала найдём общее количество."),
    ("fr", "Vérifions maintenant si ce résultat est cohérent."),
    ("de", "Jetzt müssen wir die beiden Gleichungen addieren."),
    ("ja", "ちょっと待って、ここで計算を間違えました。"),
]
SPANISH = "Espera, creo que me equivoqué en este paso."

# A GSM8K-style English trace (prose, no LaTeX) to insert sentences into.
ENGLISH_TRACE = (
    "<think>\nJanet's ducks lay 16 eggs per day. She eats three for breakfast every morning. "
    "She bakes muffins for her friends every day with four of them. "
    "So she sells the remainder at the farmers' market for two dollars each. "
    "The remainder is 16 - 3 - 4 = 9 eggs, so she makes 9 * 2 = 18 dollars every day.\n</think>\n\n"
    "She makes \\boxed{18} dollars every day."
)
CHINESE_TRACE = (
    "<think>\n珍妮的鸭子每天下16个蛋。她每天早上吃三个，每天用四个给朋友烤松饼。"
    "剩下的她在农贸市场以每个两美元的价格出售。所以剩下的是16减3减4等于9个蛋。"
    "因此她每天赚9乘以2等于18美元。让我再检查一下这个结果是否正确。\n</think>\n\n"
    "她每天赚 \\boxed{18} 美元。"
)
FRENCH_TRACE = (
    "<think>\nLes canards de Janet pondent seize œufs par jour. Elle en mange trois au petit déjeuner "
    "chaque matin et en utilise quatre pour faire des muffins pour ses amis. Elle vend le reste au marché "
    "pour deux dollars l'œuf. Il lui reste donc neuf œufs, et elle gagne dix-huit dollars par jour.\n</think>\n\n"
    "Elle gagne \\boxed{18} dollars par jour."
)


def _insert_after_first_sentence(text: str, sentence: str) -> str:
    end = re.search(r"\.\s", text).end()
    return f"{text[:end]}{sentence} {text[end:]}"


# ------------------------------------------------------------------ pure functions


def test_strip_non_prose_keeps_prose_and_drops_latex_code_urls():
    text = (
        "We have $x^2 + y^2 = 25$ and so \\[\\frac{a}{b} = 3.\\] Next we compute\n"
        "\\begin{align*} a &= b \\\\ c &= d \\end{align*}\n"
        "The answer is \\boxed{\\frac{1}{2}}. See https://example.com/proof for more.\n"
        "```python\nprint('hello world')\n```\n"
        "Run `solve(x)` then check.\n"
        "x^2 + 2x + 1 = 0\n"
        "It costs $2 and the other costs $3 total."
    )
    prose = strip_non_prose(text)
    for gone in ("x^2", "frac", "align", "boxed", "example.com", "print", "solve", "hello"):
        assert gone not in prose
    for kept in ("We have", "and so", "Next we compute", "The answer is", "See", "for more", "Run", "then check"):
        assert kept in prose
    assert "It costs $2 and the other costs $3 total." in prose  # currency is not maths


def test_maths_ending_a_sentence_keeps_the_sentence_apart():
    sentences = split_sentences(strip_non_prose("The maximum is $x = 3.$ Now we check it"))
    assert sentences == ["The maximum is  .", "Now we check it"]


def test_split_sentences_multilingual():
    assert split_sentences("首先计算。然后检查！Is 3.5 right? Yes.\nNext line") == [
        "首先计算。", "然后检查！", "Is 3.5 right?", "Yes.", "Next line"]
    assert split_sentences("  \n\n ") == []


def test_evidently_english_shortcut_only_for_plain_english():
    assert evidently_english("Let me check the arithmetic of this step again.")
    assert evidently_english("So we have to divide the total by the number of boxes.")
    assert not evidently_english("Entonces la suma de las raices es igual al coeficiente.")  # ASCII Spanish
    assert not evidently_english("Donc la somme des racines est egale au coefficient oppose.")  # ASCII French
    assert not evidently_english("Let me check 这个 step.")  # not ASCII: the model decides
    assert not evidently_english("The answer is")  # under 4 words
    # the shortcut labels en with probability 1.0; a foreign sentence still goes to the model
    labelled = classify_sentences("Let me check the arithmetic of this step again. "
                                  "Donc la somme des racines est egale au coefficient oppose.")
    assert [(s.lang, s.prob) for s in labelled][0] == ("en", 1.0)
    assert labelled[1].lang == "fr" and labelled[1].prob < 1.0


def test_script_ratio():
    assert script_ratio("abcd") == {"cjk": 0.0, "cyrillic": 0.0}
    assert script_ratio("ab首先") == {"cjk": 0.5, "cyrillic": 0.0}
    assert script_ratio("abcdТеп") == {"cjk": 0.0, "cyrillic": 3 / 7}
    assert script_ratio("12 + 3") == {"cjk": 0.0, "cyrillic": 0.0}


def test_ratio_counts_letters_per_sentence():
    english = "We now need to add the two numbers together carefully."
    french = "Nous devons maintenant additionner les deux nombres ensemble."
    letters_en = sum(c.isalpha() for c in english)
    letters_fr = sum(c.isalpha() for c in french)
    assert target_language_ratio(english) == 1.0
    assert target_language_ratio(french) == 0.0
    assert target_language_ratio(french, "fr") == 1.0
    mixed = f"{english} {french}"
    assert target_language_ratio(mixed) == pytest.approx(letters_en / (letters_en + letters_fr))
    assert target_language_ratio(mixed) == pytest.approx(0.5, abs=0.06)
    assert target_language_ratio(mixed) == target_language_ratio(mixed)  # deterministic
    assert target_language_ratio(CHINESE_TRACE) == 0.0
    assert target_language_ratio(CHINESE_TRACE, "zh") == 1.0


def test_ratio_without_classifiable_letters_is_one():
    assert target_language_ratio("") == 1.0
    assert target_language_ratio("$x^2 + 1 = 5$\n\\[ y = 3 \\]\n12 + 7 = 19") == 1.0
    # sentences under 20 letters are neutral: too short to label
    assert target_language_ratio("Oui. Ja. Da. So x = 3.") == 1.0


def test_report_names_the_foreign_sentence():
    text = _insert_after_first_sentence(ENGLISH_TRACE, "首先，我们需要计算总数。")
    report = language_report(text, "en")
    assert report.foreign_sentence == "首先，我们需要计算总数。"
    assert report.foreign_lang == "zh" and report.foreign_prob >= 0.9
    assert report.ratio < 1.0 and report.scripts["cjk"] > 0
    assert language_report(ENGLISH_TRACE, "en").foreign_sentence is None


# ------------------------------------------------------------------ the batch filter


def test_clean_english_maths_passes():
    rows = MATH[:150] + GSM8K[:150]
    decision = Language()(pl.DataFrame({"completion": rows}))
    assert decision.keep.all(), decision.reason.drop_nulls().to_list()
    assert decision.scores["language_ratio"].min() >= 0.95
    assert decision.scores["language_foreign"].null_count() == len(rows)


def test_latex_heavy_english_is_not_foreign():
    heavy = sorted(MATH, key=lambda s: s.count("\\") / len(s), reverse=True)[:20]
    assert min(s.count("\\") for s in heavy) > 10
    for solution in heavy:
        report = language_report(solution, "en")
        assert report.foreign_sentence is None and report.ratio >= 0.95, solution
    assert Language()(pl.DataFrame({"completion": heavy})).keep.all()


@pytest.mark.parametrize(("lang", "sentence"), FOREIGN)
def test_inserted_foreign_sentence_is_caught_and_named(lang, sentence):
    rows = [_insert_after_first_sentence(text, sentence) for text in (ENGLISH_TRACE, MATH[3], GSM8K[0])]
    decision = Language()(pl.DataFrame({"completion": rows}))
    assert not decision.keep.any()
    for reason in decision.reason:
        assert reason.startswith(f"foreign sentence ({lang}, p=")
        assert sentence[:8] in reason and len(reason.split(": ", 1)[1]) <= 40
    assert decision.scores["language_foreign"].to_list() == [lang] * 3


def test_low_confidence_foreign_sentence_is_caught_by_the_share():
    decision = Language()(pl.DataFrame({"completion": [_insert_after_first_sentence(ENGLISH_TRACE, SPANISH)]}))
    assert not decision.keep[0]
    assert decision.reason[0].startswith(("target-language share", "foreign sentence (es"))
    assert decision.scores["language_ratio"][0] < 0.95


def test_whole_trace_in_another_language_is_rejected():
    decision = Language(field="reasoning")(pl.DataFrame({"completion": [CHINESE_TRACE]}))
    assert not decision.keep[0]
    assert decision.reason[0].startswith("foreign sentence (zh")
    assert decision.scores["language_ratio"][0] == 0.0


def test_scattered_cjk_fragments_are_caught_by_the_script_share():
    text = ENGLISH_TRACE.replace(". ", ". 所以答案。 ")  # each too short to classify, but many
    decision = Language()(pl.DataFrame({"completion": [text]}))
    assert not decision.keep[0]
    assert decision.reason[0].startswith("CJK/Cyrillic letters ")


def test_field_selects_the_part_checked():
    completion = CHINESE_TRACE.split("</think>")[0] + "</think>\n\n" + ENGLISH_TRACE.split("</think>")[0].removeprefix(
        "<think>\n")
    frame = pl.DataFrame({"completion": [completion]})
    assert Language(field="answer")(frame).keep[0]
    assert not Language(field="reasoning")(frame).keep[0]
    assert not Language(field="completion")(frame).keep[0]
    # no reasoning part: nothing to check
    assert Language(field="reasoning")(pl.DataFrame({"completion": ["Just an answer."]})).keep[0]


def test_per_row_language_column_overrides_lang():
    frame = pl.DataFrame({
        "completion": [FRENCH_TRACE, FRENCH_TRACE, ENGLISH_TRACE, CHINESE_TRACE, ENGLISH_TRACE],
        "language": ["fr", None, "en-US", "zh", "tlh"],
    })
    decision = Language()(frame)
    assert decision.keep.to_list() == [True, False, True, True, False]
    assert decision.reason[1].startswith("foreign sentence (fr")
    assert "unknown" in decision.reason[4]
    assert Language(lang="fr")(pl.DataFrame({"completion": [FRENCH_TRACE]})).keep[0]


def test_target_languages_in_cjk_or_cyrillic_are_not_script_checked():
    assert Language(lang="zh")(pl.DataFrame({"completion": [CHINESE_TRACE]})).keep[0]


def test_none_completion_is_kept():
    decision = Language()(pl.DataFrame({"completion": [None, "A fine English sentence with enough letters."]},
                                       schema={"completion": pl.String}))
    assert decision.keep.to_list() == [True, True]


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"min_ratio": 1.5}, "min_ratio"),
    ({"min_ratio": "high"}, "min_ratio"),
    ({"foreign_confidence": -0.1}, "foreign_confidence"),
    ({"max_script_ratio": 2}, "max_script_ratio"),
    ({"min_sentence_letters": 3}, "min_sentence_letters"),
    ({"field": "thoughts"}, "field"),
    ({"lang": "xx"}, "lang"),
])
def test_bad_parameters_raise_naming_the_parameter(kwargs, names):
    with pytest.raises(CurateError, match=f"parameter {names}"):
        Language(**kwargs)


def test_params_are_recorded():
    assert Language(min_ratio=0.9).params() == {
        "lang": "en", "field": "completion", "min_ratio": 0.9, "foreign_confidence": 0.9,
        "min_sentence_letters": 20, "max_script_ratio": 0.05}
