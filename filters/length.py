"""length: drop truncated completions (finish_reason "length", or a `<think>` that never
closed) and, optionally, completions outside [min_tokens, max_tokens] (the
`completion_tokens` column written by generate)."""

from __future__ import annotations

import polars as pl

from curate.filters.base import Decision, Filter


def is_truncated(completion: str | None, finish_reason: str | None) -> bool:
    """The pure check: the engine stopped at max_tokens, or the think block is unclosed."""
    if finish_reason == "length":
        return True
    text = completion or ""
    return text.count("<think>") > text.count("</think>")


class Length(Filter):
    name = "length"
    needs = ("completion", "finish_reason")

    def __init__(self, min_tokens: int | None = None, max_tokens: int | None = None, drop_truncated: bool = True):
        self.min_tokens = self.param("min_tokens", min_tokens, int, minimum=0, optional=True)
        self.max_tokens = self.param("max_tokens", max_tokens, int, minimum=1, optional=True)
        self.drop_truncated = self.param("drop_truncated", drop_truncated, bool)
        if self.min_tokens is not None or self.max_tokens is not None:
            self.needs = (*self.needs, "completion_tokens")

    def __call__(self, batch: pl.DataFrame) -> Decision:
        n = batch.height
        truncated = pl.Series([is_truncated(c, f) for c, f in zip(batch["completion"], batch["finish_reason"])],
                              dtype=pl.Boolean) if self.drop_truncated else pl.Series([False] * n)
        reason = pl.when(truncated).then(pl.lit("truncated"))
        if self.max_tokens is not None or self.min_tokens is not None:
            tokens = batch["completion_tokens"]
            if self.max_tokens is not None:
                reason = reason.when(tokens > self.max_tokens).then(pl.lit(f"longer than {self.max_tokens} tokens"))
            if self.min_tokens is not None:
                reason = reason.when(tokens < self.min_tokens).then(pl.lit(f"shorter than {self.min_tokens} tokens"))
        reasons = pl.select(reason.otherwise(None).alias("reason"))["reason"].cast(pl.String)
        if reasons.len() != n:  # a frame with no rows
            reasons = pl.Series("reason", [None] * n, dtype=pl.String)
        return Decision(reasons.is_null().alias("keep"), reasons)
