"""Split a completion, in any spelling a teacher or a public set uses, into reasoning,
answer and final answer, and say whether it is whole.

Accepted spellings (`Trace.spelling`):
- `think`: `<think>…</think> answer` (DeepSeek-R1 and its distillations); a template that
  prefilled `<think>` leaves only the closing tag; an unclosed `<think>` (the generation
  hit max_tokens) is all reasoning, with no answer;
- `thought`: `<|begin_of_thought|>…<|end_of_thought|> <|begin_of_solution|>…<|end_of_solution|>`
  (Sky-T1, OpenThoughts, Bespoke-Stratos);
- `r1_zero`: `<think>…</think> <answer>…</answer>`: the answer is inside the tags;
- `column`: the reasoning comes in its own column (`reasoning_content` from DeepSeek's
  API, `reasoning` from vLLM's reasoning parsers) and the completion is the answer;
- `none`: no reasoning markup: the whole text is the answer.

final_answer is the last `\\boxed{…}` (or `\\fbox{…}`) of the answer part, with nested
braces; failing that, the text inside R1-Zero `<answer>` tags; else None. `closed` is
False when a block was opened and never closed (a truncated trace); `error` names what
makes the trace ill-formed (the format filter's reason), None when well formed.
"""

from __future__ import annotations

import re
from typing import NamedTuple

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
THOUGHT = ("<|begin_of_thought|>", "<|end_of_thought|>")
SOLUTION = ("<|begin_of_solution|>", "<|end_of_solution|>")
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
ANSWER_TAGS = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S)
MARKUP = (THINK_OPEN, THINK_CLOSE, *THOUGHT, *SOLUTION)


class Parsed(NamedTuple):
    reasoning: str | None
    answer: str | None
    final_answer: str | None


class Trace(NamedTuple):
    reasoning: str | None
    answer: str | None
    final_answer: str | None
    spelling: str  # think, thought, r1_zero, column, none
    closed: bool  # every block that was opened was closed
    error: str | None  # why the trace is not well formed; None when it is


def has_markup(text: str | None) -> bool:
    """Does the text spell its reasoning with tags (any accepted spelling)?"""
    return bool(text) and any(tag in text for tag in MARKUP)


def parse_completion(text: str | None, prefill: str = "") -> Parsed:
    """`prefill` is what the prompt already put in the assistant turn (e.g. "<think>\\n")."""
    return Parsed(*parse_trace(text, prefill=prefill)[:3])


def parse_trace(text: str | None, reasoning: str | None = None, prefill: str = "") -> Trace:
    """The normalised trace of `text`; `reasoning` is a separate reasoning column's value,
    used when the text itself spells no reasoning."""
    if text is None and not reasoning:
        return Trace(None, None, None, "none", True, "empty completion")
    text = text or ""
    if reasoning and reasoning.strip() and not has_markup(text):
        answer = text.strip()
        return _finish(reasoning.strip(), answer, "column", True, None if answer else "no answer after the reasoning")
    if THOUGHT[0] in text or THOUGHT[1] in text:
        return _thought(text)
    opened_by_prefill = THINK_OPEN in prefill and THINK_CLOSE not in prefill
    if THINK_CLOSE in text or THINK_OPEN in text:
        return _think(text)
    if opened_by_prefill:  # the prompt opened the block and the model never closed it
        return Trace(text.strip(), None, None, "think", False, "no </think>")
    error = "empty completion" if not text.strip() else "no <think> block"
    return _finish(None, text.strip(), "none", True, error)


def _think(text: str) -> Trace:
    opens, closes = text.count(THINK_OPEN), text.count(THINK_CLOSE)
    if not closes:  # opened, never closed: truncated
        return Trace(text.split(THINK_OPEN, 1)[1].strip(), None, None, "think", False, "no </think>")
    head, _, tail = text.partition(THINK_CLOSE)
    reasoning = (head.split(THINK_OPEN, 1)[-1] if THINK_OPEN in head else head).strip()
    answer = tail.strip()
    error = None
    if closes > 1 or opens > 1:
        error = f"{max(opens, closes)} think blocks"
    elif opens == 1 and head.lstrip().find(THINK_OPEN) != 0:
        error = "text before <think>"
    elif not reasoning:
        error = "empty reasoning"
    elif not answer:
        error = "no answer after </think>"
    if ANSWER_OPEN in answer:
        closed = ANSWER_CLOSE in answer
        if error is None and not closed:
            error = "no </answer>"
        inner = ANSWER_TAGS.search(answer).group(1).strip()
        if error is None and not inner:
            error = "empty answer"
        return _finish(reasoning, inner, "r1_zero", closed, error, tagged=True)
    return _finish(reasoning, answer, "think", True, error)


def _thought(text: str) -> Trace:
    begins, ends = text.count(THOUGHT[0]), text.count(THOUGHT[1])
    head, sep, tail = text.partition(THOUGHT[1])
    reasoning = head.split(THOUGHT[0], 1)[-1].strip()
    if not sep:
        return Trace(reasoning, None, None, "thought", False, "no <|end_of_thought|>")
    closed, error = True, None
    if SOLUTION[0] in tail:
        solution = tail.split(SOLUTION[0], 1)[1]
        closed = SOLUTION[1] in solution
        answer = solution.split(SOLUTION[1], 1)[0].strip()
        if not closed:
            error = "no <|end_of_solution|>"
    else:
        answer = tail.replace(SOLUTION[1], "").strip()
    if begins > 1 or ends > 1:
        error = f"{max(begins, ends)} thought blocks"
    elif begins == 1 and head.lstrip().find(THOUGHT[0]) != 0:
        error = "text before <|begin_of_thought|>"
    elif not reasoning:
        error = "empty reasoning"
    elif error is None and not answer:
        error = "no solution after <|end_of_thought|>"
    return _finish(reasoning, answer, "thought", closed, error)


def _finish(reasoning, answer, spelling, closed, error, tagged=False) -> Trace:
    final = last_boxed(answer) if answer else None
    if final is None and tagged and answer:
        final = answer
    return Trace(reasoning, answer, final, spelling, closed, error)


def think_form(trace: Trace) -> str | None:
    """The trace written as R1 writes it, `<think>\\n…\\n</think>\\n\\nanswer`; None without reasoning."""
    if trace.reasoning is None:
        return None
    return f"{THINK_OPEN}\n{trace.reasoning}\n{THINK_CLOSE}\n\n{trace.answer or ''}"


_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"[{}]")


def boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of each top-level `\\boxed{…}` / `\\fbox{…}`, braces balanced,
    in order; a box inside another is part of it, and a box whose braces never close is
    passed over."""
    found, pos = [], 0
    while m := _BOX.search(text, pos):
        depth = 0
        for brace in _BRACE.finditer(text, m.end() - 1):
            depth += 1 if brace.group() == "{" else -1
            if depth == 0:
                break
        if depth:  # unbalanced: look for a box after its opening
            pos = m.end()
            continue
        pos = brace.end()
        found.append((m.start(), pos, text[m.end() : pos - 1].strip()))
    return found


def last_boxed(text: str) -> str | None:
    """The content of the last top-level \\boxed{…} or \\fbox{…}, braces balanced; None if absent."""
    found = boxes(text)
    return found[-1][2] if found else None
