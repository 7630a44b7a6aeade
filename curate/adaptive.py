"""Adaptive rejection sampling: `curate generate --until-correct K --max-samples M`.

Generation runs in rounds. After each sample comes back it is verified with the
filters' own verifiers (curate.filters.math's `Math` for a problem with a reference
answer, curate.filters.code's `Code` for one with tests), and only the problems with
fewer than K correct samples get another round, until they have M samples.

Round sizes (`round_size`), per problem, from that problem's own results only:
- round 1: K samples, the fewest that could finish it;
- while it has no correct sample: as many as it has had (doubling: K, K, 2K, 4K, ...);
- once it has c >= 1 correct: exactly K - c more;
always at most M - generated.
Why: a sample drawn after the K-th correct one is waste, and a round of K - c samples
can never hold one, so a problem known to be solvable wastes nothing. Before its first
correct sample a problem's pass rate is only known to be small, and doubling reaches a
rare success in log2(M / K) rounds while spending at most about twice what it needed.
Sizing rounds at the expected need from the pass rate instead (Laplace's estimate
(c + 1) / (n + 2), doubling at most) took fewer rounds but drew more samples past the
K-th correct one (BENCHMARKS.md). A round is one engine batch over every open problem,
so on large sets an extra round costs one drain of the engine.

Resume. Sample i of a problem is always drawn with the seed derived from (run seed,
problem, i) (generate._requests), a round's samples are indices generated ..
generated + size - 1, and a request's rows are written together, so each problem's
rows on disk are whole rounds. Its next round follows from those rows alone (its own
verdicts), so a run killed at any moment continues where each problem stopped and ends
with the rows of an uninterrupted run, never drawing a sample twice.

The rows get `round`, `correct` and `verdict` (the verifier's status); the manifest's
`adaptive` entry holds per problem the samples spent, correct ones, rounds, completion
tokens and the pass-rate estimate correct / generated (the maximum-likelihood estimate
under either stopping rule). `samples_expected` in the manifest's counts is problems x M
while rounds remain, and the samples drawn once the run is done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import polars as pl

from curate.errors import CurateError

log = logging.getLogger("curate.generate")


@dataclass
class Problem:
    generated: int = 0  # samples 0 .. generated-1 exist
    correct: int = 0
    rounds: int = 0
    tokens: int = 0  # completion tokens spent


def check(until_correct: int | None, max_samples: int | None, problems: pl.DataFrame, path: str) -> None:
    """Refuse options or problems that adaptive sampling cannot work with (before anything is written)."""
    if max_samples is not None and until_correct is None:
        raise CurateError("--max-samples needs --until-correct K (with a fixed count, use --num-samples)")
    if until_correct is None:
        return
    if until_correct < 1:
        raise CurateError("--until-correct must be at least 1")
    if max_samples is None or max_samples < until_correct:
        raise CurateError(f"--until-correct {until_correct} needs --max-samples M with M >= {until_correct} "
                          "(the most samples a problem gets)")
    for i, row in enumerate(problems.iter_rows(named=True)):
        if not _text(row["tests"]) and not _text(row["reference_answer"]):
            raise CurateError(f"--until-correct needs a verifier for every problem: {path}: row {i + 1} "
                              f"(problem_id {row['problem_id']}) has no reference answer and no tests")


def _text(value) -> bool:
    return bool(value and str(value).strip())


def round_size(generated: int, correct: int, k: int, m: int) -> int:
    """How many samples a problem gets next (0: it is done). See the module docstring."""
    if correct >= k or generated >= m:
        return 0
    if generated == 0:
        size = k
    elif correct == 0:
        size = generated
    else:
        size = k - correct
    return min(m - generated, size)


class Rounds:
    """Each problem's state, read from the run's shards, and the verifiers."""

    def __init__(self, p):
        self.p = p
        self.k, self.m = p.opts.until_correct, p.opts.max_samples
        self.rows = {r["problem_id"]: r for r in p.problems.iter_rows(named=True)}
        self.state = {pid: Problem() for pid in self.rows}
        table = p.store.read_columns(["problem_id", "sample_index", "round", "correct", "completion_tokens"])
        if table is not None:
            done = pl.from_arrow(table).group_by("problem_id").agg(
                pl.len().alias("generated"), pl.col("correct").fill_null(False).sum().alias("correct"),
                pl.col("round").max().alias("rounds"), pl.col("completion_tokens").fill_null(0).sum().alias("tokens"))
            for r in done.iter_rows(named=True):
                if r["problem_id"] in self.state:
                    self.state[r["problem_id"]] = Problem(r["generated"], r["correct"], r["rounds"] or 0, r["tokens"])
        self._filters: dict = {}

    def pending(self) -> list[tuple[dict, list[int]]]:
        """(problem row, sample indices) of every problem's next round."""
        out = []
        for pid, s in self.state.items():
            size = round_size(s.generated, s.correct, self.k, self.m)
            if size:
                out.append((self.rows[pid], list(range(s.generated, s.generated + size))))
        return out

    def verify(self, key: str, samples: list) -> list[dict]:
        """Verify one request's samples; the columns each row gets (round, correct, verdict)."""
        row, s = self.rows[key], self.state[key]
        kind = "code" if _text(row["tests"]) else "math"
        batch = pl.DataFrame({"completion": [x.text for x in samples],
                              "reference_answer": [row["reference_answer"]] * len(samples),
                              "tests": [row["tests"]] * len(samples)},
                             schema={c: pl.String for c in ("completion", "reference_answer", "tests")})
        decision = self._filter(kind)(batch)
        statuses = decision.scores[f"{kind}_status"].to_list()
        s.rounds += 1
        s.generated += len(samples)
        s.correct += int(decision.keep.sum())
        s.tokens += sum(x.completion_tokens or 0 for x in samples)
        return [{"round": s.rounds, "correct": bool(ok), "verdict": status}
                for ok, status in zip(decision.keep.to_list(), statuses)]

    def _filter(self, kind: str):
        if kind not in self._filters:
            from curate.filters import get_filter

            self._filters[kind] = get_filter(kind)()
        return self._filters[kind]

    def summary(self) -> dict:
        """The manifest's `adaptive` entry."""
        problems = [{"problem_id": pid, "samples": s.generated, "correct": s.correct, "rounds": s.rounds,
                     "completion_tokens": s.tokens,
                     "pass_rate": round(s.correct / s.generated, 4) if s.generated else None}
                    for pid, s in self.state.items()]
        solved = sum(s.correct >= self.k for s in self.state.values())
        return {
            "until_correct": self.k, "max_samples": self.m,
            "verifiers": {kind: f.manifest_info() for kind, f in self._filters.items()},
            "solved": solved,  # problems with >= K correct samples
            "exhausted": sum(s.correct < self.k and s.generated >= self.m for s in self.state.values()),
            "samples": sum(s.generated for s in self.state.values()),
            "completion_tokens": sum(s.tokens for s in self.state.values()),
            "rounds": max((s.rounds for s in self.state.values()), default=0),
            "problems": problems,
        }

    def close(self) -> None:
        for f in self._filters.values():
            close = getattr(f, "close", None)
            if close:
                close()


def pending(p) -> list[tuple[dict, list[int]]]:
    """What the next round asks for, read from the shards (empty: the run is done)."""
    return Rounds(p).pending()


def run_rounds(p, backend, writer, bar, requests) -> None:
    """Round after round until no problem needs more; verdicts go into the rows, the
    per-problem table into the manifest after every round. `requests(p, pending)` turns
    (row, indices) into backend Requests."""
    rounds = Rounds(p)
    try:
        while todo := rounds.pending():
            log.info("round: %d problems, %d samples", len(todo), sum(len(i) for _, i in todo))
            for req, samples in backend.run(requests(p, todo)):
                writer.add(req, samples, rounds.verify(req.key, samples))
                bar.advance(len(samples), sum(s.completion_tokens or 0 for s in samples))
            writer.flush(force=True)
            p.store.update(adaptive=rounds.summary())
        writer.counts["samples_expected"] = writer.counts["samples_done"]  # every problem is done
        p.store.update(adaptive=rounds.summary())
    finally:
        rounds.close()
