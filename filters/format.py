"""format: the completion is a well-formed reasoning trace.

- `think` (default): exactly one well-formed reasoning block with non-empty reasoning,
  then a non-empty answer, in any spelling curate.parsing accepts: `<think>…</think>`
  (a template that prefilled `<think>` leaves no opening tag: accepted), Sky-T1's
  `<|begin_of_thought|>…<|end_of_thought|>` with `<|begin_of_solution|>…<|end_of_solution|>`,
  R1-Zero's `<answer>` tags after `</think>`, or a separate reasoning column.
- `r1_zero`: `<think>…</think>` then `<answer>…</answer>`, each exactly once, non-empty,
  and nothing but whitespace between or after them (R1-Zero's format reward).

`check_format(completion, style, reasoning=None) -> Verdict` is the pure verifier; curate.train's format
reward wraps it.
"""

from __future__ import annotations

import re

from curate.filters.base import RowFilter, Verdict
from curate.parsing import parse_trace

R1_ZERO = re.compile(r"^\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.S)


def check_format(completion: str | None, style: str = "think", reasoning: str | None = None) -> Verdict:
    """Keep a well-formed completion; otherwise the reason it is not well formed.
    `reasoning`: a separate reasoning column's value (style `think` only)."""
    reason = _format_error(completion, style, reasoning)
    return Verdict(reason is None, reason)


def _format_error(completion: str | None, style: str, reasoning: str | None) -> str | None:
    if style == "think":
        return parse_trace(completion, reasoning).error
    if not completion or not completion.strip():
        return "empty completion"
    m = R1_ZERO.match(completion)
    if not m or completion.count("<think>") != 1 or completion.count("</think>") != 1 \
            or completion.count("<answer>") != 1:
        return "not <think>…</think> <answer>…</answer>"
    if not m.group("think").strip():
        return "empty reasoning"
    if not m.group("answer").strip():
        return "empty answer"
    return None


class Format(RowFilter):
    name = "format"
    needs = ("completion",)

    def __init__(self, style: str = "think"):
        self.style = self.param("style", style, str, choices=("think", "r1_zero"))

    def verify(self, row: dict) -> Verdict:
        return check_format(row["completion"], self.style)
