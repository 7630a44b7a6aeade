"""length: drop truncated completions and, optionally, completions outside
[min_tokens, max_tokens] (the `completion_tokens` column written by generate).

A completion is truncated when finish_reason is "length", or when its reasoning block
never closed (any spelling curate.parsing reads). finish_reason is optional: without it
(no column, or null), truncation is inferred from the text — an unclosed thought, a
begin-of-solution without its end, no final answer after a long reasoning trace that
stops mid-sentence — and the reason says "inferred".
"""

from __future__ import annotations

from curate.filters.base import RowFilter, Verdict
from curate.parsing import parse_trace

LONG_TRACE_CHARS = 8000  # a trace this long that stops mid-sentence with no final answer was cut off
ENDINGS = tuple(".!?)]}$*`'\"”:;")


def truncation(completion: str | None, finish_reason: str | None,
               long_trace_chars: int = LONG_TRACE_CHARS) -> str | None:
    """Why the completion counts as truncated ("truncated", or "truncated (inferred: …)"
    without a finish_reason), else None."""
    trace = parse_trace(completion)
    if finish_reason == "length":
        return "truncated"
    if finish_reason:
        return None if trace.closed else "truncated"
    if not trace.closed:
        unclosed = "no end of solution" if trace.error == "no <|end_of_solution|>" else "unclosed thought"
        return f"truncated (inferred: {unclosed})"
    text = (completion or "").rstrip()
    if trace.reasoning is not None and trace.final_answer is None and len(text) >= long_trace_chars \
            and not text.endswith(ENDINGS):
        return "truncated (inferred: no final answer after a long trace)"
    return None


def is_truncated(completion: str | None, finish_reason: str | None) -> bool:
    """The pure check: the engine stopped at max_tokens, or the text shows a cut-off trace."""
    return truncation(completion, finish_reason) is not None


class Length(RowFilter):
    name = "length"
    needs = ("completion",)
    uses = ("finish_reason", "completion_tokens")

    def __init__(self, min_tokens: int | None = None, max_tokens: int | None = None, drop_truncated: bool = True,
                 long_trace_chars: int = LONG_TRACE_CHARS):
        self.min_tokens = self.param("min_tokens", min_tokens, int, minimum=0, optional=True)
        self.max_tokens = self.param("max_tokens", max_tokens, int, minimum=1, optional=True)
        self.drop_truncated = self.param("drop_truncated", drop_truncated, bool)
        self.long_trace_chars = self.param("long_trace_chars", long_trace_chars, int, minimum=1)
        if self.min_tokens is not None or self.max_tokens is not None:
            self.needs = (*self.needs, "completion_tokens")

    def verify(self, row: dict) -> Verdict:
        """Truncated first, then too long, then too short; a row without a token count
        is judged on truncation alone."""
        if self.drop_truncated:
            reason = truncation(row["completion"], row.get("finish_reason"), self.long_trace_chars)
            if reason:
                return Verdict(False, reason)
        tokens = row.get("completion_tokens")
        if tokens is not None and self.max_tokens is not None and tokens > self.max_tokens:
            return Verdict(False, f"longer than {self.max_tokens} tokens")
        if tokens is not None and self.min_tokens is not None and tokens < self.min_tokens:
            return Verdict(False, f"shorter than {self.min_tokens} tokens")
        return Verdict(True)
