"""What a filter is. The author of a filter writes one decision; the chain runner
(curate/chain.py) does the bookkeeping: the funnel, the rejected rows with their
reasons, resume.

A filter module holds two things:
- a pure per-row verifier (e.g. `verify_math(gold, completion) -> Verdict`,
  `target_language_ratio(text, lang) -> float`) that curate.train reuses as a GRPO
  reward, so filtering and reward can never disagree;
- a `Filter` subclass whose `__call__(batch)` applies that verifier to a polars
  DataFrame and returns a `Decision`: a keep mask, a reason per dropped row, and
  optional score columns.

    class Length(Filter):
        name = "length"
        needs = ("completion", "finish_reason")

        def __init__(self, max_tokens: int | None = None):
            self.max_tokens = self.param("max_tokens", max_tokens, int, minimum=1, optional=True)

        def __call__(self, batch):
            ...
            return Decision(keep, reason, {"length_tokens": tokens})

Stateful filters (dedup, decontamination) also implement `prepare(columns)`, called
once with the whole input before the batches (build the index in one pass, mark in a
second).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from curate.errors import CurateError


@dataclass
class Decision:
    keep: pl.Series  # bool, one per row
    reason: pl.Series  # str, null where kept; otherwise a short reason ("truncated", "wrong answer", ...)
    scores: dict[str, pl.Series] = field(default_factory=dict)  # extra columns to keep, e.g. "math_verdict"

    def __post_init__(self):
        n = len(self.keep)
        if len(self.reason) != n or any(len(s) != n for s in self.scores.values()):
            raise ValueError("a filter decision must have one value per row in every column")


class Filter:
    """One base class for every filter: a name, parameters, the columns it needs, and a
    decision per batch."""

    name: str = "filter"
    needs: tuple[str, ...] = ("completion",)
    parallel: bool = False  # True: rows are independent; the chain may split a batch across processes

    def __call__(self, batch: pl.DataFrame) -> Decision:
        raise NotImplementedError

    def prepare(self, frame: pl.DataFrame) -> None:
        """Stateful filters see the whole input once before any batch."""

    def params(self) -> dict:
        """The parameters as given, for the manifest and the config fingerprint."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def param(self, key: str, value, kind: type, *, minimum=None, maximum=None, choices=None, optional=False):
        """Check one parameter; a bad one is a CurateError naming the filter and the key."""
        where = f"filter {self.name}: parameter {key}"
        if value is None:
            if optional:
                return None
            raise CurateError(f"{where} is required")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise CurateError(f"{where} must be {kind.__name__}, got {value!r}")
        if minimum is not None and value < minimum:
            raise CurateError(f"{where} must be >= {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise CurateError(f"{where} must be <= {maximum}, got {value!r}")
        if choices is not None and value not in choices:
            raise CurateError(f"{where} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value


def decide(keep: list[bool], reasons: list[str | None], **scores) -> Decision:
    """Build a Decision from per-row Python lists."""
    return Decision(
        pl.Series("keep", keep, dtype=pl.Boolean),
        pl.Series("reason", [None if k else r for k, r in zip(keep, reasons)], dtype=pl.String),
        {name: pl.Series(name, values) for name, values in scores.items()},
    )
