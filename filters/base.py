"""What a filter is. The author of a filter writes one decision; the chain runner
(curate/chain.py) does the bookkeeping: the funnel, the rejected rows with their
reasons, resume.

- `Verdict(keep, reason, scores)` is the one shape every verifier returns: keep the
  row or not, why not, and the values to keep as score columns. Specialised verdicts
  (MathVerdict, CodeVerdict) are subclasses that read their fields as attributes.
- `RowFilter`: the author writes `verify(row) -> Verdict` and declares the score
  columns with their types; the base class maps it over a polars batch and returns a
  `Decision` (keep mask, reason column, typed score columns). A filter that needs the
  whole batch for speed (math's process pool, code's threads) overrides `__call__` and
  still decides each row with its verifier.
- `Filter`: the batch-level interface the chain consumes, `__call__(batch) -> Decision`.
  The chain calls it once per shard (or slice of one), in worker processes or Ray tasks,
  in any order, so a filter keeps no call-order state. A batch holds the columns of
  `needs` and `uses` that the input has, and `sample_id`.
- A stateful filter (dedup) overrides `index(batch)`: the map step, small per-row state
  of one shard (ids, hash keys, signatures; never the texts); `resolve(indexes,
  executor)`: the reduce step, on the driver, with every shard's index in shard order
  (heavy parts may fan out through `executor.map`; deterministic); then `__call__`
  marks each shard. Its batches also carry `_row` (Int64: the row's position in the
  stage's input); it identifies rows by `sample_id` when present, else by `_row`.

    class Format(RowFilter):
        name = "format"
        needs = ("completion",)

        def __init__(self, style: str = "think"):
            self.style = self.param("style", style, str, choices=("think", "r1_zero"))

        def verify(self, row):
            return check_format(row["completion"], self.style)

A filter also says what the run's manifest records about it (`manifest_info`) and
releases what it holds in `close`. The filters are named in curate.filters.FILTERS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import polars as pl

from curate.errors import CurateError


class ParamError(CurateError):
    """A bad parameter of a filter: the message names the filter and the parameter, `key`
    (the chain adds where the parameter is written)."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key

    def __reduce__(self):
        return type(self), (str(self), self.key)


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str | None = None  # why the row is dropped ("truncated", "wrong answer", ...); ignored when kept
    scores: dict = field(default_factory=dict)  # score column -> value, e.g. {"math_status": "correct"}


@dataclass
class Decision:
    keep: pl.Series  # bool, one per row
    reason: pl.Series  # str, null where kept; otherwise a short reason ("truncated", "wrong answer", ...)
    scores: dict[str, pl.Series] = field(default_factory=dict)  # extra columns to keep, e.g. "math_status"
    work: dict[str, int] = field(default_factory=dict)  # what deciding took, e.g. {"judge_calls": 3}: set by the chain

    def __post_init__(self):
        n = len(self.keep)
        if len(self.reason) != n or any(len(s) != n for s in self.scores.values()):
            raise ValueError("a filter decision must have one value per row in every column")


class Filter:
    """One base class for every filter: a name, parameters, the columns it needs, the
    score columns it adds, and a decision per batch."""

    name: str = "filter"
    needs: tuple[str, ...] = ("completion",)
    scores: dict[str, pl.DataType] = {}  # the score columns the filter adds, with their types
    # True: plain per-row Python work, which the local executor runs in its worker processes. False (math's
    # pool, code's sandboxes, dedup): there it runs in the driver's process, where its own processes may start
    # (a process pool inside a pool worker can hang). On Ray every filter runs in tasks.
    parallel: bool = False
    def __call__(self, batch: pl.DataFrame) -> Decision:
        raise NotImplementedError

    def index(self, batch: pl.DataFrame) -> pl.DataFrame | None:
        """A stateful filter's map step over one shard (with `_row`): small per-row state,
        never the texts. None here: the filter is stateless."""
        return None

    def resolve(self, indexes: list[pl.DataFrame], executor) -> None:
        """A stateful filter's reduce step, on the driver: every shard's `index`, in shard
        order, before any `__call__`; `executor.map` may spread heavy parts (module-level
        functions of the curate package). The same result whatever the executor."""

    @property
    def stateful(self) -> bool:
        """True when the filter overrides `index` (the chain then indexes, resolves, marks)."""
        return type(self).index is not Filter.index

    def manifest_info(self) -> dict:
        """What the run's manifest records about the filter beyond its parameters (e.g.
        the code sandbox's isolation level); empty by default."""
        return {}

    def fit(self, cpus: int) -> None:
        """This copy runs in a task given `cpus` CPUs (a Ray task): a filter that starts its
        own processes or threads and was not told how many keeps to that many."""

    def work_counts(self) -> dict[str, int]:
        """Running totals of costly work done by this copy of the filter (e.g. judge calls).
        Copies run in many processes: the chain sums each task's increase into the
        funnel step's `work`."""
        return {}

    def close(self) -> None:
        """Release what the filter holds (worker processes); a later call starts again."""

    def decide(self, verdicts: list[Verdict]) -> Decision:
        """The batch's Decision from one Verdict per row: the reason is null where a row
        is kept; each declared score column is typed, null where a verdict lacks it."""
        undeclared = set().union(*(v.scores.keys() for v in verdicts)) - self.scores.keys()
        if undeclared:
            raise ValueError(f"filter {self.name}: score {sorted(undeclared)[0]!r} is not declared in "
                             f"{type(self).__name__}.scores")
        return Decision(
            pl.Series("keep", [v.keep for v in verdicts], dtype=pl.Boolean),
            pl.Series("reason", [None if v.keep else v.reason for v in verdicts], dtype=pl.String),
            {name: pl.Series(name, [v.scores.get(name) for v in verdicts], dtype=dtype)
             for name, dtype in self.scores.items()},
        )

    def params(self) -> dict:
        """The parameters as given, for the manifest and the config fingerprint."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def param(self, key: str, value, kind: type, *, minimum=None, maximum=None, choices=None, optional=False):
        """Check one parameter; a bad one is a ParamError naming the filter and the key."""
        where = f"filter {self.name}: parameter {key}"
        if value is None:
            if optional:
                return None
            raise ParamError(f"{where} is required", key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ParamError(f"{where} must be {kind.__name__}, got {value!r}", key)
        if minimum is not None and value < minimum:
            raise ParamError(f"{where} must be >= {minimum}, got {value!r}", key)
        if maximum is not None and value > maximum:
            raise ParamError(f"{where} must be <= {maximum}, got {value!r}", key)
        if choices is not None and value not in choices:
            raise ParamError(f"{where} must be one of {', '.join(map(str, choices))}, got {value!r}", key)
        return value


class RowFilter(Filter):
    """A filter written as one decision per row: `verify(row) -> Verdict`, where `row`
    maps the columns of `needs` (and of `uses`, when the batch has them) to values."""

    uses: tuple[str, ...] = ()  # columns read when the batch has them (e.g. a per-row `language`)

    def verify(self, row: dict) -> Verdict:
        raise NotImplementedError

    def __call__(self, batch: pl.DataFrame) -> Decision:
        return self.decide([self.verify(row) for row in self.rows(batch)])

    def rows(self, batch: pl.DataFrame) -> Iterator[dict]:
        """The batch's rows as dicts of the columns the filter reads."""
        columns = [c for c in dict.fromkeys((*self.needs, *self.uses)) if c in batch.columns]
        return batch.select(columns).iter_rows(named=True)
