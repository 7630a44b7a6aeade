"""length: drop truncated completions (finish_reason "length", or a `<think>` that never
closed) and, optionally, completions outside [min_tokens, max_tokens] (the
`completion_tokens` column written by generate)."""

from __future__ import annotations

from curate.filters.base import RowFilter, Verdict


def is_truncated(completion: str | None, finish_reason: str | None) -> bool:
    """The pure check: the engine stopped at max_tokens, or the think block is unclosed."""
    if finish_reason == "length":
        return True
    text = completion or ""
    return text.count("<think>") > text.count("</think>")


class Length(RowFilter):
    name = "length"
    needs = ("completion", "finish_reason")

    def __init__(self, min_tokens: int | None = None, max_tokens: int | None = None, drop_truncated: bool = True):
        self.min_tokens = self.param("min_tokens", min_tokens, int, minimum=0, optional=True)
        self.max_tokens = self.param("max_tokens", max_tokens, int, minimum=1, optional=True)
        self.drop_truncated = self.param("drop_truncated", drop_truncated, bool)
        if self.min_tokens is not None or self.max_tokens is not None:
            self.needs = (*self.needs, "completion_tokens")

    def verify(self, row: dict) -> Verdict:
        """Truncated first, then too long, then too short; a row without a token count
        is judged on truncation alone."""
        if self.drop_truncated and is_truncated(row["completion"], row["finish_reason"]):
            return Verdict(False, "truncated")
        tokens = row.get("completion_tokens")
        if tokens is not None and self.max_tokens is not None and tokens > self.max_tokens:
            return Verdict(False, f"longer than {self.max_tokens} tokens")
        if tokens is not None and self.min_tokens is not None and tokens < self.min_tokens:
            return Verdict(False, f"shorter than {self.min_tokens} tokens")
        return Verdict(True)
