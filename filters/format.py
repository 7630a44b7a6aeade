"""format: the completion has R1's shape.

- `think` (default): exactly one well-formed `<think>…</think>` with non-empty reasoning,
  then a non-empty answer. A template that prefilled `<think>` leaves no opening tag in
  the completion: that is accepted (one closing tag, nothing opened twice).
- `r1_zero`: `<think>…</think>` then `<answer>…</answer>`, each exactly once, non-empty,
  and nothing but whitespace between or after them (R1-Zero's format reward).

`check_format(completion, style) -> Verdict` is the pure verifier; curate.train's format
reward wraps it.
"""

from __future__ import annotations

import re

from curate.filters.base import RowFilter, Verdict

R1_ZERO = re.compile(r"^\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.S)


def check_format(completion: str | None, style: str = "think") -> Verdict:
    """Keep a well-formed completion; otherwise the reason it is not well formed."""
    reason = _format_error(completion, style)
    return Verdict(reason is None, reason)


def _format_error(completion: str | None, style: str) -> str | None:
    if not completion or not completion.strip():
        return "empty completion"
    opens, closes = completion.count("<think>"), completion.count("</think>")
    if style == "r1_zero":
        m = R1_ZERO.match(completion)
        if not m or opens != 1 or closes != 1 or completion.count("<answer>") != 1:
            return "not <think>…</think> <answer>…</answer>"
        if not m.group("think").strip():
            return "empty reasoning"
        if not m.group("answer").strip():
            return "empty answer"
        return None
    if closes == 0:
        return "no </think>" if opens else "no <think> block"
    if closes > 1 or opens > 1:
        return f"{max(opens, closes)} think blocks"
    head, _, answer = completion.partition("</think>")
    if opens == 1 and head.lstrip().find("<think>") != 0:
        return "text before <think>"
    if not head.replace("<think>", "").strip():
        return "empty reasoning"
    if not answer.strip():
        return "no answer after </think>"
    return None


class Format(RowFilter):
    name = "format"
    needs = ("completion",)

    def __init__(self, style: str = "think"):
        self.style = self.param("style", style, str, choices=("think", "r1_zero"))

    def verify(self, row: dict) -> Verdict:
        return check_format(row["completion"], self.style)
