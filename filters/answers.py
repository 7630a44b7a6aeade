"""Reading a final answer: what a gold and a completion's answer part say, as comparable text.

Pure functions, no math-verify: filters/math.py reads a (gold, answer part) pair with
`read_answers`, settles what text alone can settle with `same_answer`, and hands the
rest to math-verify. What is read:

- boxed answers: every top-level `\\boxed{}` / `\\fbox{}`; a run of boxes linked only by
  "and", "or", commas or layout (`\\quad`, `$`) is one answer, and the last run is the
  final one. A single-part gold is compared with the run's last box (an earlier box is
  an intermediate value); a gold of several parts (several boxes, a list, a tuple or a
  set) with the whole run. A "final answer is" after the last box overrides the boxes.
- multiple choice: a letter (`C`, `(C)`, `\\text{(C)}`), a letter with its text
  (`\\text{(C) Plane}`), the text alone; letters decide, texts must agree when both given.
- a number among words: units and currency (`5\\text{ cm}`, `\\$18`, `18 dollars`),
  ordinals (`12^{\\mathrm{th}}\\text{ grade}`) are read as the number.
- notation: `$`/`$$` inside an answer (math delimiters, not dollars), `\\mathrm{e}` as e,
  a decimal comma (`3,5`) when the other side writes that number with a point and the
  comma is not a thousands separator nor a list, times of day (`12:00`, `12:00 p.m.`).

Thousands separators are left to `normalise_digit_groups` (filters/math.py), applied by
the caller to what `read_answers` returns.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from curate.parsing import boxes

# --- boxes ----------------------------------------------------------------------------

# what may stand between two boxes of one answer: layout, punctuation, a few words with a connective
_LAYOUT = re.compile(r"\\(?:quad|qquad|text|mbox|textbf|mathrm|left|right|[()\[\],;:! ])|[${}\s.,;:]|\\\\")
_CONNECTIVE = re.compile(r"(?<![A-Za-z])(?:and|or)(?![A-Za-z])", re.I)
_MAX_GAP = 40



def _linked(gap: str) -> bool:
    """Whether two boxes separated by `gap` belong to one answer: layout and punctuation,
    or a short gap with "and"/"or" or only one-letter names in it (`, y = `)."""
    rest = _LAYOUT.sub(" ", gap).strip()
    if len(rest) > _MAX_GAP:
        return False
    return bool(_CONNECTIVE.search(rest)) or not re.search(r"[A-Za-z]{2}", rest)


def final_boxes(text: str, found: list[tuple[int, int, str]] | None = None) -> list[str]:
    """The contents of the last run of linked boxes (empty: no box); `found`: boxes(text), if known."""
    found = boxes(text) if found is None else found
    if not found:
        return []
    run = [found[-1]]
    for box in reversed(found[:-1]):
        if not _linked(text[box[1] : run[0][0]]):
            break
        run.insert(0, box)
    return [content for _, _, content in run]


# --- parts ----------------------------------------------------------------------------


_BRACKET = re.compile(r"[()\[\]{}]")


def _top_level(text: str) -> str:
    """`text` with everything inside brackets and braces blanked out."""
    if not _BRACKET.search(text):
        return text
    out, depth = [], 0
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}" and depth:
            depth -= 1
            out.append(" ")
            continue
        out.append(ch if depth == 0 else " ")
    return "".join(out)


_GROUPED = re.compile(r"(?<=\d)(?:,|\{,\})(?:\\!\s*)?(?=\d{3}(?!\d))")  # 1,000  10,\!080  1{,}000


def is_multipart(text: str) -> bool:
    """A list (`1, 2`, `x=1 or x=2`, `6 \\text{ and } 8`), a tuple, a set or an interval:
    an answer of several values."""
    stripped = re.sub(r"\\left|\\right|\s", "", text)
    if re.fullmatch(r"(?:\(|\[|\\?\{).*,.*(?:\)|\]|\\?\})", stripped):
        return True
    text = re.sub(r"\\(?:text|mbox|textrm|mathrm)\s*\{\s*(and|or)\s*\}", r" \1 ", text)  # 6 \text{ and } 8
    top = _GROUPED.sub("", _top_level(text))
    return bool(re.search(r"[,;]", top) or _CONNECTIVE.search(top))


# --- notation -------------------------------------------------------------------------

_DELIMITED = re.compile(r"^(?:\$\$(.*)\$\$|\$(.*)\$|\\\((.*)\\\)|\\\[(.*)\\\])$", re.S)
_MATHRM_E = re.compile(r"\\(?:mathrm|operatorname|text)\s*\{\s*e\s*\}|\\mathrm\s+e(?![A-Za-z])")
_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|textnormal|mathrm|mathbf|mbox|textit|mathit)\s*\{([^{}]*)\}")
_NUMBER = r"-?(?:\d+(?:[.,]\d+)*|\.\d+)"
_ORDINAL = (r"(?:\^\s*\{?\s*(?:\\(?:mathrm|text|textrm)\s*\{\s*)?(?:st|nd|rd|th)\s*\}?\s*\}?"  # 12^{\mathrm{th}}
            r"|(?:st|nd|rd|th)(?![A-Za-z]))")  # 12th
_CURRENCY = r"(?:\\\$|\\euro|€|£|¥)"
_WRAPPED_WORDS = r"\\(?:text|textbf|textrm|textnormal|mathrm|mbox|textit)\s*\{\s*[A-Za-z][A-Za-z .'/-]*\}"
# a bare word after a space: three letters or more, or a two-letter unit (`2 ab` is a product)
_BARE_WORDS = r"(?<=\s)(?:[A-Za-z]{3,}|cm|mm|km|kg|mg|ml|mL|hr|ft|yd|mi|oz|lb)(?![A-Za-z])\.?"
_UNIT = rf"(?:{_WRAPPED_WORDS}|{_BARE_WORDS}|{_CURRENCY})(?:\s*\^\s*\{{?\s*[23]\s*\}}?)?"
_NUMBER_IN_WORDS = re.compile(
    rf"{_CURRENCY}?\s*(?P<n>{_NUMBER})\s*(?:{_ORDINAL})?(?:\s*{_UNIT}|\s*\\[ ,;!]|\s*~)*"
)
# bare words that are maths, not units
_NOT_UNITS = {"and", "or", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "pi", "mod", "pmod"}


def number_in_words(text: str) -> str | None:
    """The number of `5\\text{ cm}`, `\\$18`, `18 dollars`, `12^{\\mathrm{th}}\\text{ grade}`;
    None when `text` is not one number with words, units or currency around it."""
    text = text.strip()
    m = _NUMBER_IN_WORDS.fullmatch(text)
    if not m or m.group("n") == text:
        return None
    words = re.findall(r"(?<![\\A-Za-z])[A-Za-z]+", _WRAPPER.sub(" ", text))
    if any(word.lower() in _NOT_UNITS for word in words):
        return None
    return m.group("n")


def _plain(text: str) -> str:
    """No math delimiters (`$`s left inside an answer are delimiters, not dollars), `\\mathrm{e}` as e."""
    text = text.strip()
    if m := _DELIMITED.match(text):
        text = next(g for g in m.groups() if g is not None)
    return _MATHRM_E.sub("e", re.sub(r"(?<!\\)\$", "", text)).strip()


def _parts(text: str) -> tuple[str, list[str], str]:
    """(opening, parts, closing): `text` split at its top-level commas, inside one pair of
    braces that encloses all of it (`{1, 2}`, `\\{1, 2\\}`), if any."""
    opening = closing = ""
    if m := re.fullmatch(r"(\\\{|\{)(.*)(\\\}|\})", text, re.S):
        if "}" not in _top_level(m.group(2)) and "{" not in _top_level(m.group(2)):
            opening, text, closing = m.groups()
    top, parts, start = _top_level(text), [], 0
    for i, ch in enumerate(top):
        if ch == ",":
            parts.append(text[start:i])
            start = i + 1
    return opening, parts + [text[start:]], closing


def normalise(text: str) -> str:
    """One answer (a box's content, a gold) in the form math-verify reads best: no math
    delimiters, `\\mathrm{e}` as e, a number with units or an ordinal as the number (each
    element of a list or set)."""
    opening, parts, closing = _parts(_plain(text))
    return opening + ",".join(number_in_words(p) or p for p in parts) + closing


_DECIMAL_COMMA = re.compile(r"(-?\d+),(\d+)")
_DECIMAL_POINT = re.compile(r"-?\d*\.\d+")


def _decimal_comma(text: str, other: str) -> str:
    """`3,5` as 3.5 when the other side is a number written with a point, and the comma
    is not a thousands separator (`3,500`: three digits after it, unless it follows a 0)."""
    m = _DECIMAL_COMMA.fullmatch(text)
    if not m or not _DECIMAL_POINT.fullmatch(other):
        return text
    whole, fraction = m.groups()
    if len(fraction) == 3 and whole.lstrip("-") != "0":
        return text
    return f"{whole}.{fraction}"


# --- multiple choice and times ------------------------------------------------------


class Choice(NamedTuple):
    letter: str
    text: str | None


def _unwrap(text: str) -> str:
    while (new := _WRAPPER.sub(r"\1", text)) != text:
        text = new
    return text.strip()


_LETTER = re.compile(r"\(?([A-J])\)?[.:]?")
_LETTER_AND_TEXT = re.compile(r"(?:\(([A-J])\)\s*|([A-J])[.):]\s+)(\S.*)", re.S)


def choice(text: str, any_case: bool = False) -> Choice | None:
    """A multiple-choice answer: `C`, `(C)`, `\\text{(C)}`, `(C) Plane`, `C. Plane`."""
    plain = _unwrap(text)
    if m := _LETTER.fullmatch(plain.upper() if any_case else plain):
        return Choice(m.group(1), None)
    if m := _LETTER_AND_TEXT.fullmatch(plain):
        return Choice(m.group(1) or m.group(2), m.group(3).strip())
    return None


def _words(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", _unwrap(text).lower()).strip()


_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(?:([ap])\.?\s*m\.?)?", re.I)


def _time(text: str) -> tuple[int, int, int, str | None] | None:
    m = _TIME.fullmatch(re.sub(r"\\[ ,;!]|~", " ", _unwrap(text)).strip())
    if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), (m.group(4) or "").lower() or None


def _same_time(a, b) -> bool:
    if a[3] and b[3]:
        return a == b
    if a[3] or b[3]:  # one says a.m./p.m., the other does not: the 12-hour clock
        return (a[0] % 12, a[1], a[2]) == (b[0] % 12, b[1], b[2])
    return a == b


# --- the pair -----------------------------------------------------------------------

_LEAD_IN = re.compile(
    r"^(?:\*\*)?(?:(?:so |thus |therefore |hence )?the (?:final |correct )?answer is|final answer|answer)"
    r"\s*(?:\*\*)?\s*[:=]?\s*(?:\*\*)?\s*",
    re.I,
)
# "final answer is 18" after the last box: the boxes were intermediate values
_FINAL_ANSWER = re.compile(r"final answer\s*(?:is|:)[^\n]*?(?:[\d$]|(?<![A-Za-z])[A-J](?![A-Za-z]))", re.I)
_SPACE = re.compile(r"(?<!\d)\s+|\s+(?!\d)")
_NOISE = re.compile(r"\\left(?![a-zA-Z])|\\right(?![a-zA-Z])")


class Reading(NamedTuple):
    gold: str  # the gold answer, normalised
    pred: str | None  # the completion's answer: the answer itself (`whole`), or text to search; None: nothing
    whole: bool  # pred is the answer itself (boxes, a choice, a time, a number with units)
    predicted: str | None  # what was read, as written (None: left to math-verify's extraction)


def gold_answer(gold: str) -> str:
    """The reference answer: its last run of boxes if it has any (a solution's text), else all of it."""
    return _read_gold(gold)[0]


@lru_cache(maxsize=4096)
def _read_gold(gold: str) -> tuple[str, bool]:
    """(the gold answer, whether it has several parts), kept per process: a problem's k samples share it."""
    found = final_boxes(gold)
    text = ", ".join(normalise(b) for b in found) if found else normalise(gold)
    return text, len(found) > 1 or is_multipart(text)


def read_answers(gold: str, answer: str | None) -> Reading:
    """The gold and the answer part of a completion (the text after `</think>`), read
    for comparison (module docstring). `answer` None or blank: pred is None."""
    gold_text, multipart = _read_gold(gold)
    if not answer or not answer.strip():
        return Reading(gold_text, None, False, None)
    found = boxes(answer)
    if found and not _FINAL_ANSWER.search(answer[found[-1][1] :]):
        run = final_boxes(answer, found) if multipart else [found[-1][2]]
        pred = ", ".join(normalise(b) for b in run)
        return Reading(*_pair(gold_text, pred), True, ", ".join(run))
    tail = (answer[found[-1][1] :] if found else answer).strip()
    short = _LEAD_IN.sub("", tail).rstrip(". ")
    if short and "\n" not in short and _is_whole(short):
        return Reading(*_pair(gold_text, normalise(short)), True, short)
    return Reading(gold_text, _MATHRM_E.sub("e", tail), False, None)


def _is_whole(text: str) -> bool:
    """Whether an unboxed answer line is an answer by itself: a choice, a time, a number
    with units or a decimal comma."""
    if _DELIMITED.match(text.strip()):
        return True  # one formula, all of the answer
    text = _plain(text)
    return bool(choice(text) or _time(text) or number_in_words(text) or re.fullmatch(_NUMBER, text))


def _pair(gold: str, pred: str) -> tuple[str, str]:
    return _decimal_comma(gold, pred), _decimal_comma(pred, gold)


def same_answer(gold: str, pred: str) -> bool | None:
    """The verdict text alone gives (digit groups already removed on both sides): the
    same text, two integers, a choice, a time; None: math-verify must decide."""
    g, p = _SPACE.sub("", _NOISE.sub("", gold)), _SPACE.sub("", _NOISE.sub("", pred))
    if g == p:
        return True
    if re.fullmatch(r"-?\d+", g) and re.fullmatch(r"-?\d+", p):
        return int(g) == int(p)
    if gold_choice := choice(gold):
        if picked := choice(pred, any_case=True):  # letters decide; texts, when both are given, must agree
            both_texts = gold_choice.text and picked.text
            same_text = not both_texts or _words(gold_choice.text) == _words(picked.text)
            return picked.letter == gold_choice.letter and same_text
        return bool(gold_choice.text) and _words(pred) == _words(gold_choice.text)  # the option's text alone
    if (picked := choice(pred)) and picked.text and _words(picked.text) == _words(gold):
        return True  # the gold is the text of the option the answer picked
    if (a := _time(gold)) and (b := _time(pred)):
        if _same_time(a, b):
            return True
        if a[3] or b[3] or a[1] == 0 or b[1] == 0:  # not a ratio: a clock time (x:00 divides by 0)
            return False
    if (a := _rational(g)) is not None and (b := _rational(p)) is not None \
            and abs(a - b) > FAR_APART * max(1, abs(a), abs(b)):
        return False  # two plain numbers far apart: math-verify (6-digit rounding) cannot find them equal
    return None


# A plain number: an integer or decimal, or \frac / \dfrac / \tfrac of two integers, or a/b; a sign before it.
_RATIONAL = re.compile(r"(-?)(?:(\d+(?:\.\d*)?|\.\d+)|\\[dt]?frac\{(\d+)\}\{(\d+)\}|(\d+)/(\d+))")
FAR_APART = 1e-3  # relative difference beyond which two plain numbers are certainly different answers


def _rational(text: str) -> Fraction | None:
    """The value of a plain number (`_RATIONAL`, spaces already removed), None for anything else."""
    m = _RATIONAL.fullmatch(text)
    if m is None:
        return None
    sign, number, num, den, num2, den2 = m.groups()
    if number is not None:
        value = Fraction(number)
    else:
        num, den = (num, den) if num is not None else (num2, den2)
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
    return -value if sign else value
