"""The language filter with the real fastText lid.176 model (no mocks), on the MATH-500
solutions (tests/data) and GSM8K test answers (curate/data), MIT, and on the sentences and
words of tests/data/language (see its README)."""

import csv
import json
import re
from pathlib import Path

import polars as pl
import pytest

from curate.errors import CurateError
from curate.filters.language import (
    Language,
    classify_sentences,
    count_letters,
    evidently_english,
    language_report,
    script_ratio,
    split_sentences,
    strip_non_prose,
    target_language_ratio,
)

REPO = Path(__file__).resolve().parent.parent
LANG_DATA = REPO / "tests" / "data" / "language"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tsv(name: str) -> list[dict]:
    with (LANG_DATA / name).open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


MATH = [r["solution"] for r in _rows(REPO / "tests" / "data" / "math500_test.jsonl")]
GSM8K = [r["answer"] for r in _rows(REPO / "curate" / "data" / "gsm8k_test.jsonl")]

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
    assert script_ratio("abcd") == {}
    assert script_ratio("ab首先") == {"Han": 0.5}
    assert script_ratio("abcdТеп") == {"Cyrillic": 3 / 7}
    assert script_ratio("12 + 3") == {}
    assert script_ratio("ab つまり 그래서") == {"kana": 3 / 8, "Hangul": 3 / 8}
    assert script_ratio("sin θ + Δx") == {}  # Greek maths symbols are not a script's words
    assert script_ratio("ab άρα") == {"Greek": 0.6}


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
    assert report.ratio < 1.0 and report.scripts["Han"] > 0
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


def test_scattered_cjk_fragments_too_short_to_classify_are_caught():
    text = ENGLISH_TRACE.replace(". ", ". 所以答案。 ")
    decision = Language()(pl.DataFrame({"completion": [text]}))
    assert not decision.keep[0]
    assert decision.reason[0] == "foreign sentence (zh, p=1.00): 所以答案。"


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


# ------------------------------------------------------------------ failure classes of mixed language

# One foreign word inside an English sentence: R1's failure mode, which sentence-level ID
# misses (the sentence is still English).
FOREIGN_WORDS = [
    ("个", "zh", "Han"),  # one CJK character
    ("总数", "zh", "Han"),
    ("проверим", "ru", "Cyrillic"),
    ("つまり", "ja", "kana"),
    ("그래서", "ko", "Hangul"),
    ("إذن", "ar", "Arabic"),
    ("इसलिए", "hi", "Devanagari"),
    ("ดังนั้น", "th", "Thai"),
    ("לכן", "he", "Hebrew"),
    ("επομένως", "el", "Greek"),
    ("మొత్తం", "te", "Telugu"),
]


def _insert_word_mid_sentence(text: str, word: str) -> str:
    at = text.index(" for her friends") if "for her friends" in text else re.search(r"[a-z] [a-z]", text).start() + 1
    return f"{text[:at]} {word}{text[at:]}"


@pytest.mark.parametrize(("word", "lang", "script"), FOREIGN_WORDS)
def test_a_single_foreign_word_in_an_english_trace_is_caught(word, lang, script):
    rows = [_insert_word_mid_sentence(text, word) for text in (ENGLISH_TRACE, MATH[3], GSM8K[0])]
    for row in rows:
        report = language_report(row, "en")
        assert report.foreign_script == script and report.foreign_lang == lang and report.foreign_prob == 1.0
        assert word in report.foreign_sentence
        assert target_language_ratio(row) < 1.0  # R1's reward counts the word against the trace
    decision = Language()(pl.DataFrame({"completion": rows}))
    assert not decision.keep.any()
    for reason in decision.reason:
        assert reason.startswith(f"foreign sentence ({lang}, p=1.00): ")
        assert word in reason  # the clip shows the word, not just the start of its sentence
    assert decision.scores["language_foreign"].to_list() == [lang] * 3


def test_foreign_letters_in_maths_and_code_do_not_count():
    text = ENGLISH_TRACE.replace("She eats", "We write $\\text{总数} = 16$ and `число = 16` in code. She eats")
    assert language_report(text, "en").foreign_sentence is None
    assert Language()(pl.DataFrame({"completion": [text]})).keep[0]


def test_greek_maths_letters_are_not_foreign():
    text = ("<think>\nThe angle θ is 30 degrees, so sin θ is one half and the change Δx is small. "
            "The current is 5 μA through a 2 kΩ resistor, and we know that α + β = π here. "
            "Let φ be the golden ratio; then φ is about 1.618 and λ is the eigenvalue we need.\n</think>\n\n"
            "The answer is \\boxed{30}.")
    report = language_report(text, "en")
    assert report.foreign_sentence is None and report.scripts == {} and report.ratio == 1.0
    assert Language()(pl.DataFrame({"completion": [text]})).keep[0]
    # a Greek word is Greek, though
    assert language_report(text.replace("is small", "is μικρή"), "en").foreign_script == "Greek"


def test_scripts_the_target_writes_in_are_not_foreign():
    assert language_report(CHINESE_TRACE.replace("剩下", "剩下 x "), "zh").foreign_sentence is None  # Latin: never
    japanese = "<think>\nまず、りんごの総数を計算する必要があります。この計算が正しいか確認してみましょう。\n</think>"
    assert language_report(japanese, "ja").foreign_sentence is None  # Han and kana
    russian = "<think>\nСначала нужно найти общее количество яблок, а потом проверить ответ.\n</think>"
    assert language_report(russian, "ru").foreign_sentence is None
    for text, word, lang in ((CHINESE_TRACE, "그래서", "zh"), (CHINESE_TRACE, "итак", "zh"),
                             (russian, "总数", "ru"), (japanese, "그래서", "ja")):
        report = language_report(text.replace("。", f" {word}。", 1).replace(", а", f" {word}, а", 1), lang)
        assert report.foreign_script is not None and word in report.foreign_sentence


# Maths-flavoured English that lid.176 reads as another language: repeating decimals
# (Cebuano), "per day / per month" (Italian, Latin), markdown, units.
MATHS_FLAVOURED = (
    "<think>\n### Step 1: Find the cost per day\n"
    "He earns $20 per day, so per month he earns 20 * 30 = 600 dollars.\n"
    "Total per month = 600 dollars per month\n"
    "Cost per month: $45\n"
    "Amount per day: 12 apples per day\n"
    "So the probability is 0.6666666666666666666 which is two thirds.\n"
    "Therefore, 2/3 = 0.666666666666666...\n"
    "0.666666666666 repeating\n"
    "The value is 0.6666666666666666666666666666666666666666666666666666666666666666666666666666\n"
    "## Step 2: Units\n"
    "The tank holds 12 L, or 12,000 mL, and fills at 3 L per minute.\n"
    "**Final Answer**\n</think>\n\nThe answer is \\boxed{600}."
)


def test_maths_flavoured_english_is_not_foreign():
    report = language_report(MATHS_FLAVOURED, "en")
    assert report.foreign_sentence is None and report.ratio >= 0.95, report
    assert Language()(pl.DataFrame({"completion": [MATHS_FLAVOURED]})).keep[0]
    # each line alone, as a whole short trace, too
    lines = [line for line in MATHS_FLAVOURED.split("\n") if line and not line.startswith("<")]
    decision = Language()(pl.DataFrame({"completion": lines}))
    assert decision.keep.all(), [r for r in decision.reason if r]


def test_letters_of_every_script_count_combining_marks_included():
    # न म स ् त े: three consonants, a virama and a vowel sign (Mn), all letters of the word
    assert count_letters("नमस्ते") == 6
    assert count_letters("తెలుగు") == 6 and count_letters("ਪੰਜਾਬੀ") == 6 and count_letters("ગુજરાતી") == 7
    assert count_letters("x = 3, y_2") == 2


@pytest.mark.parametrize("lang", ["hi", "mr", "pa", "gu", "te", "bn", "ta"])
def test_indic_sentences_are_classified_not_skipped(lang):
    for row in (r for r in _tsv("sentences.tsv") if r["lang"] == lang):
        assert split_sentences(strip_non_prose(row["text"])) == [row["text"]]  # not taken for a formula line
        (sentence,) = classify_sentences(row["text"])
        assert sentence.lang == lang and sentence.letters == count_letters(row["text"])
        assert language_report(row["text"], "en").foreign_lang == lang
        assert target_language_ratio(row["text"], lang) == 1.0


# Latin-script sentences of other languages with some English function words in them.
NOT_ENGLISH = [
    "Jadi the answer adalah jumlah dari these numbers to the end.",
    "Also ist die Antwort was we have for the total.",
    "Donc on a the answer et the sum est the same.",
    "Dus is het antwoord of the sum van the numbers.",
    "Portanto o total is the sum of as numbers to the end.",
    "Quindi per the sum we have il totale so that it is.",
    "Nah, so we take the total at ang sagot is it.",
    "Kemudian we add the total dengan the answer is it.",
]


def test_evidently_english_never_claims_a_sentence_in_another_language():
    for sentence in NOT_ENGLISH:
        assert not evidently_english(sentence), sentence
    for row in _tsv("sentences.tsv"):
        assert not evidently_english(row["text"]), row
    # and still claims plain English maths prose, numbers and symbols aside
    assert evidently_english("48 = 100% + 20% = 120% of the actual number = 120/100 of the actual number")
    assert evidently_english("Therefore, the total number of apples is 12 + 5 = 17.")


@pytest.mark.parametrize("lang", sorted({r["lang"] for r in _tsv("sentences.tsv")}))
def test_every_inserted_foreign_sentence_is_caught(lang):
    rows = [_insert_after_first_sentence(text, r["text"])
            for r in _tsv("sentences.tsv") if r["lang"] == lang for text in (ENGLISH_TRACE, MATH[3], GSM8K[0])]
    decision = Language()(pl.DataFrame({"completion": rows}))
    assert not decision.keep.any(), [row for row, keep in zip(rows, decision.keep) if keep]


def test_a_doubtful_label_on_a_sentence_with_english_words_is_neutral():
    question = ("<think>\nAndrew bakes 200 mini cinnamon rolls and 300 mini blueberry muffins. A normal cinnamon "
                "roll has 600 calories and a normal blueberry muffin has 450 calories.\n</think>")
    first = classify_sentences(question)[0]
    assert first.lang != "en" and first.prob < 0.9  # lid.176's doubt (de 0.56)
    assert target_language_ratio(question) == 1.0
    assert Language()(pl.DataFrame({"completion": [question]})).keep[0]


def test_batch_path_gives_each_rows_own_verdict():
    """The batch path (sentences of all rows labelled together, all-English ASCII rows reported without labels)
    decides as verify does row by row, on clean, foreign and mixed-script rows."""
    rows = [f"<think>\n{s}\n</think>\n\nSo \\boxed{{1}}." for s in MATH[:60] + GSM8K[:60]]
    rows += [ENGLISH_TRACE.replace("She eats", f"{sentence} She eats") for _, sentence in FOREIGN]
    rows += [ENGLISH_TRACE.replace("every day", "每天"), CHINESE_TRACE, None, "", "x = 3 + 4\n\n$$y$$",
             ENGLISH_TRACE.replace("\n", "\x1c\n"), "Tab\tended.\x0bHere  is\x1fa sentence? Yes!"]
    languages = [None] * (len(rows) - 1) + ["en"]
    f = Language()
    batch = f(pl.DataFrame({"completion": rows, "language": languages}))
    one_by_one = [f.verify({"completion": c, "language": lang}) for c, lang in zip(rows, languages)]
    assert batch.keep.to_list() == [v.keep for v in one_by_one]
    assert batch.reason.to_list() == [None if v.keep else v.reason for v in one_by_one]
    assert batch.scores["language_ratio"].to_list() == [v.scores.get("language_ratio") for v in one_by_one]
    assert not all(batch.keep) and any(batch.keep)


def test_bulk_splitting_and_counting_match_the_per_text_rules():
    # split_sentences and the letter counts run in bulk (polars' Rust regex, bytes.translate);
    # they must equal the plain per-text definitions, Python's \s (str.isspace) included
    from curate.filters.language import _non_letters, _visible_by_line, letters_per_line

    texts = ["So x = 3.\x1cNext!\u3000Then?\u2028ok.\x85 done", "首先计算。然后检查！ Is 3.5 right?Yes.\nNext",
             "e.g.x and 3.5 stay. whole\x0b!  \t?", "", " \n \n", "Привет. мир! नमस्ते।  ok"]
    for text in texts:
        ended = re.sub(r"(?<=[.!?])\s+", "\n", text)
        ended = re.sub(r"(?<=[。！？])", "\n", ended)
        assert split_sentences(text) == [s for s in (p.strip() for p in ended.split("\n")) if s], text
    lines = ["x = 3, y_2 and ½ of नमस्ते", "\u00a0é\u3000ü 42 Δx", "plain ascii line", "", "日本語のテキスト"]
    assert letters_per_line(lines) == [len(_non_letters().sub("", x)) for x in lines]
    assert [count_letters(x) for x in lines] == [len(_non_letters().sub("", x)) for x in lines]
    assert _visible_by_line("\n".join(lines)) == [len(re.sub(r"\s+", "", x)) for x in lines]


def test_plain_blanks_are_what_the_sentence_end_test_gives():
    # the patterns whose matches are replaced without the _ENDS_SENTENCE test (a plain space,
    # or _blank_inline's last-character test) give what _blank gives, on the traces and on
    # matches built to end like a sentence
    from curate.filters.language import _NON_PROSE, _blank

    texts = [json.loads(x)["solution"] for x in (REPO / "tests" / "data" / "math500_test.jsonl").open()][:200]
    texts += ["So $x = 3.$ Next $y?$ and $a.\\$$ then $b!$ \\boxed{4.} \\fbox{ok. } <<3*4=12.>> `code.` <answer>",
              "$x.\\$$ cost $2 and $3. Then $\\frac{1}{2}!$ ok"]
    for _, pattern, blank in _NON_PROSE:
        if blank is not _blank:
            for text in texts:
                for m in pattern.finditer(text):
                    assert (blank if isinstance(blank, str) else blank(m)) == _blank(m), m.group()


def test_a_lone_surrogate_is_handled_like_any_other_non_letter():
    # polars refuses text that is not UTF-8: the batch steps fall back to Python for it
    from curate.filters.language import _strip_spans

    text = "hello there \ud800 my friend. what is this $x$ thing now? yes"
    assert split_sentences(text) == ["hello there \ud800 my friend.", "what is this $x$ thing now?", "yes"]
    assert _strip_spans([text] * 20) == _strip_spans([text]) * 20 == [text.replace("$x$", " ")] * 20
    assert target_language_ratio(text, "en") == 1.0
