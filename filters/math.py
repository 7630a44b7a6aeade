"""Math correctness: is the answer after `</think>` equal to the reference answer?

Three things live here:

- `verify_math(gold, completion) -> MathVerdict` (a Verdict, filters/base.py), the pure
  per-row verifier, also used as the GRPO accuracy reward by curate.train;
- `MathPool`, verify_math over many pairs in worker processes, with a wall-clock
  guard: used by the filter, the accuracy reward and `curate eval`;
- `Math`, the batch filter the chain runs: a MathPool over a polars batch.

How a row is read (docs/ARCHITECTURE.md, "Choices and measured pitfalls"):

1. Only the answer part counts: the text after `</think>` (curate.parsing). A completion
   whose think block never closed has no answer, whatever its reasoning says.
2. The final answer is read by class (filters/answers.py): the last run of `\\boxed{}`
   (all of it when the gold has several parts, else its last box), a choice letter, a
   number with units, a time, a decimal comma; without a box, math-verify's default
   extraction reads the answer text ("The answer is 18.", "#### 18").
3. Digit-group separators are removed on both sides before parsing: math-verify reads
   `1\\,000` as 1*0 (and so "matches" a gold of 0), `1 000` likewise, `1\\u2009000` as 0.
4. The gold (its last run of boxes, if it has any) is parsed as `\\boxed{gold}`: measured
   on MATH-500, bare golds such as `\\left( 3, \\frac{\\pi}{2} \\right)` or `\\sqrt{51}` parse
   to nothing or to a fragment (51 of 500 empty, 392 of 500 self-verify), boxed ones all
   parse and all 500 self-verify.
5. What text alone settles is settled without math-verify (`same_answer`): when the
   gold and the answer are both plain integers (after step 3), math-verify's answer is
   known (it compares them exactly); choices and times are compared as such
   (`quick_verdict`; MathPool settles these rows in its own
   process and sends only the others to its workers). Most maths answers are integers (all of GSM8K, 57% of MATH-500's
   golds); this skips ~0.8 ms of parsing per row. Two plain numbers (integers, decimals,
   fractions of integers) more than 0.1% apart are wrong without parsing too: math-verify
   rounds to 6 digits and cannot find them equal. A boxed answer that is the gold's
   own text (after step 3) is correct without parsing either (every MATH-500 gold
   verifies against itself; a gold math-verify cannot parse, such as `\\text{Monday}`,
   is still matched by the same text). The gold's parse is kept per process (a
   problem's k samples share it).
6. math-verify's timeout is `signal.alarm`: it counts whole seconds (a float such as 0.5
   makes every parse fail silently, so it is rounded up here) and it works only in a
   process's main thread. MathPool therefore runs verify_math in worker
   processes, never threads, and guards each chunk with a wall clock on top, for the
   hangs a signal cannot interrupt (long C-level arithmetic).

A gold that is missing, a timeout and an error are never a pass; nor is a gold that
does not parse, unless the boxed answer is its very text.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from functools import lru_cache
from importlib.metadata import version
from multiprocessing import get_context

import polars as pl
from math_verify import parse, verify
from math_verify.errors import TimeoutException
from sympy import Basic, MatrixBase

from curate.errors import CurateError
from curate.filters.answers import read_answers, same_answer
from curate.filters.base import Decision, RowFilter, Verdict
from curate.filters.judge import JUDGE_SCORES, Judged, cascade, cascade_judge
from curate.parsing import parse_completion

STATUSES = ("correct", "wrong", "no_answer", "no_gold", "unparseable_gold", "timeout", "error")
REASONS = {
    "wrong": "wrong answer",
    "no_answer": "no answer",
    "no_gold": "no reference answer",
    "unparseable_gold": "unparseable reference answer",
    "timeout": "verification timeout",
    "error": "verification error",
}
UNVERIFIABLE = ("no_gold", "unparseable_gold")
UNDECIDED = ("no_answer", "unparseable_gold", "timeout", "error")  # what a judge may decide in cascade mode
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


class MathVerdict(Verdict):
    """verify_math's Verdict: keep when correct; the reason from the status; scores
    `math_status` (one of STATUSES) and `math_predicted` (what was read from the answer:
    the boxed content, or math-verify's extraction), read as `.status`, `.predicted`."""

    def __init__(self, correct: bool, status: str, predicted: str | None = None):
        super().__init__(bool(correct), None if correct else REASONS.get(status, status),
                         {"math_status": status, "math_predicted": predicted})

    @property
    def correct(self) -> bool:
        return self.keep

    @property
    def status(self) -> str:
        return self.scores["math_status"]

    @property
    def predicted(self) -> str | None:
        return self.scores["math_predicted"]


# --- digit groups -------------------------------------------------------------------

# 1\,000  1{,}000  1\!000  1\ 000  1~000  1 000 (thin, narrow no-break, no-break, plain space)
_SPACED_GROUPS = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\\,|\{,\}|\\!|\\;|\\:|\\ |~|[ \u2009\u202f\u00a0])\d{3})+(?!\d)")
_SPACED_SEPARATOR = re.compile(r"\\,|\{,\}|\\!|\\;|\\:|\\ |~|[ \u2009\u202f\u00a0]")
# 1,000 and 12,345,678; a comma inside brackets is read as a tuple/interval separator
_COMMA_GROUPS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")


def normalise_digit_groups(text: str) -> str:
    """Remove thousands separators, so that `1\\,000`, `1{,}000`, `1 000` and `1,000`
    all read as 1000. A comma-grouped number inside `(`, `[` or `\\{` is left alone:
    `(100,200)` is a pair, not 100200."""
    text = _SPACED_GROUPS.sub(lambda m: _SPACED_SEPARATOR.sub("", m.group(0)), text)

    def ungroup(m: re.Match) -> str:
        before = text[: m.start()]
        depth = (
            before.count("(") + before.count("[") + before.count("\\{")
            - before.count(")") - before.count("]") - before.count("\\}")
        )
        return m.group(0) if depth > 0 else m.group(0).replace(",", "")

    return _COMMA_GROUPS.sub(ungroup, text)


# --- the verifier -------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _parse_gold(gold_text: str, seconds: int) -> tuple:
    """math-verify's parse of a gold answer, kept per process: a problem's k samples
    share one gold (a timeout raises, and is not kept)."""
    return tuple(parse(f"\\boxed{{{gold_text}}}", parsing_timeout=seconds, raise_on_error=True))


def quick_verdict(gold: str | None, completion: str | None) -> MathVerdict | None:
    """The verdicts verify_math reaches without math-verify (steps 3 and 5 of the module
    docstring): no gold; a boxed answer that is the gold's own text; two plain
    integers. None: math-verify must decide. Cheap and signal-free, so the batch filter
    runs it in its own process and sends only the rest to the workers."""
    if gold is None or not gold.strip():
        return MathVerdict(False, "no_gold", None)
    reading = read_answers(gold, parse_completion(completion).answer)
    if not reading.whole:
        return None
    same = same_answer(normalise_digit_groups(reading.gold).strip(), normalise_digit_groups(reading.pred).strip())
    if same is None:
        return None
    return MathVerdict(same, "correct" if same else "wrong", reading.predicted)


def verify_math(gold: str | None, completion: str | None, *, timeout: float = 5.0) -> MathVerdict:
    """Check the answer part of `completion` against the reference answer `gold`.

    Must run in a process's main thread (math-verify's timeout is SIGALRM). `timeout`
    bounds each math-verify step (parsing the gold, parsing the answer, comparing);
    it is rounded up to whole seconds, at least 1.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("verify_math must run in a process's main thread (math-verify times out with SIGALRM)")
    seconds = max(1, math.ceil(timeout))

    quick = quick_verdict(gold, completion)
    if quick is not None:
        return quick
    reading = read_answers(gold, parse_completion(completion).answer)
    predicted = reading.predicted

    try:
        # gold first, then the prediction, then verify(gold, prediction): the order matters
        gold_parsed = list(_parse_gold(normalise_digit_groups(reading.gold), seconds))
        if not any(isinstance(g, (Basic, MatrixBase)) for g in gold_parsed):
            # only a raw-string fallback (or nothing): there is no mathematical object to compare with
            return MathVerdict(False, "unparseable_gold", None)
        if reading.pred is None:
            return MathVerdict(False, "no_answer", None)
        if reading.whole:
            pred_text = f"\\boxed{{{normalise_digit_groups(reading.pred)}}}"
            pred_parsed = parse(pred_text, parsing_timeout=seconds, raise_on_error=True)
        else:
            pred_parsed = parse(normalise_digit_groups(reading.pred), parsing_timeout=seconds, raise_on_error=True)
            predicted = next((p for p in pred_parsed if isinstance(p, str)), None)
        if not pred_parsed:
            return MathVerdict(False, "no_answer", predicted)
        ok = verify(gold_parsed, pred_parsed, timeout_seconds=seconds, raise_on_error=True)
    except TimeoutException:
        return MathVerdict(False, "timeout", predicted)
    except Exception:  # sympy / latex2sympy failures on odd input: never a pass
        return MathVerdict(False, "error", predicted)
    return MathVerdict(bool(ok), "correct" if ok else "wrong", predicted)


# --- the worker pool ----------------------------------------------------------------


def verify_chunk(pairs: list[tuple[str | None, str | None]], timeout: float, verifier: Callable) -> list[MathVerdict]:
    """Run in a worker process (its main thread): one verdict per (gold, completion)."""
    return [verifier(gold, completion, timeout=timeout) for gold, completion in pairs]


def _ready() -> None:
    """A no-op task: a worker that ran it has started and imported this module."""


class MathPool:
    """verify_math over many (gold, completion) pairs, in `workers` spawned processes
    (math-verify's timeout is a signal, which only a process's main thread receives).

    The verdicts that need no math-verify (`quick_verdict`) are settled in the caller's
    process; the rest travel to the workers in chunks of at most `chunk_size`. The
    processes start on first use and are reused until `close()` (a later call starts
    them again); use it as a context manager to close it. A chunk that has not come
    back after `timeout * len(chunk) + guard_slack_s` is taken as hung: the processes
    are killed, that chunk's pairs are "timeout", the chunks that were running beside it
    run again on new processes. A chunk whose worker died is retried once, then "error".

    `verifier` is a test hook: a picklable stand-in for verify_math (the tests use one
    that hangs, to exercise the wall-clock guard)."""

    def __init__(self, workers: int | None = None, timeout: float = 5.0, *, chunk_size: int = 64,
                 guard_slack_s: float = 10.0, verifier: Callable = verify_math):
        self.workers = DEFAULT_WORKERS if workers is None else workers
        if self.workers < 1:
            raise CurateError(f"math verification needs at least 1 worker process, got {self.workers}")
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.guard_slack_s = guard_slack_s  # worker start-up, pickling, scheduling
        self.verifier = verifier
        self._executor: ProcessPoolExecutor | None = None

    def verify(self, pairs: list[tuple[str | None, str | None]]) -> list[MathVerdict]:
        """One MathVerdict per (gold, completion), in order, whatever the workers do."""
        if self.verifier is not verify_math:
            return self._verify_in_workers(pairs)
        verdicts = [quick_verdict(gold, completion) for gold, completion in pairs]
        todo = [i for i, v in enumerate(verdicts) if v is None]
        for i, verdict in zip(todo, self._verify_in_workers([pairs[i] for i in todo]) if todo else []):
            verdicts[i] = verdict
        return verdicts

    def _verify_in_workers(self, pairs: list[tuple[str | None, str | None]]) -> list[MathVerdict]:
        results: list[MathVerdict | None] = [None] * len(pairs)
        # at least 4 chunks per worker when there are few pairs, so the workers finish together
        size = max(1, min(self.chunk_size, -(-len(pairs) // (4 * self.workers))))
        chunks = [(start, pairs[start : start + size]) for start in range(0, len(pairs), size)]
        pending = list(reversed(chunks))  # popped from the end: first chunk first
        attempts: dict[int, int] = {}
        running: dict = {}  # future -> (start, chunk, deadline)

        def settle(start: int, chunk: list, status: str) -> None:
            results[start : start + len(chunk)] = [MathVerdict(False, status, None)] * len(chunk)

        while pending or running:
            # keep exactly one chunk per worker in flight, so a chunk's clock starts when it does
            while pending and len(running) < self.workers:
                start, chunk = pending.pop()
                future = self.start().submit(verify_chunk, chunk, self.timeout, self.verifier)
                running[future] = (start, chunk, time.monotonic() + self.timeout * len(chunk) + self.guard_slack_s)
            nearest = min(deadline for _, _, deadline in running.values())
            done, _ = wait(running, timeout=max(0.0, nearest - time.monotonic()), return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                start, chunk, _ = running.pop(future)
                try:
                    results[start : start + len(chunk)] = future.result()
                except Exception:  # a worker died (crash, OOM kill): retry once, then give up on the chunk
                    broken = True
                    attempts[start] = attempts.get(start, 0) + 1
                    if attempts[start] < 2:
                        pending.append((start, chunk))
                    else:
                        settle(start, chunk, "error")
            if not done and running and time.monotonic() >= nearest:
                # hung beyond what math-verify's own alarm can stop: kill the workers
                now = time.monotonic()
                for start, chunk, deadline in running.values():
                    if deadline <= now:
                        settle(start, chunk, "timeout")
                    else:
                        pending.append((start, chunk))  # innocent bystander: run it again
                running.clear()
                self.close(kill=True)
            elif broken:
                self.close(kill=True)  # the executor is broken; the next submit builds a fresh one
        return results

    def start(self) -> ProcessPoolExecutor:
        """The worker processes' executor, started now if it is not running. Spawned,
        not forked: the caller may run threads (polars'), and forking a threaded process
        can deadlock."""
        if self._executor is None:
            self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"))
            for future in [self._executor.submit(_ready) for _ in range(self.workers)]:
                future.result()  # every worker up and this module imported: no start-up in a chunk's clock
        return self._executor

    def close(self, kill: bool = False) -> None:
        """End the worker processes (a later verify starts new ones). `kill` ends hung ones."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if kill:
            for process in list((getattr(executor, "_processes", None) or {}).values()):
                process.kill()
        executor.shutdown(wait=not kill, cancel_futures=True)

    def __enter__(self) -> MathPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# --- the batch filter ---------------------------------------------------------------


class Math(Judged, RowFilter):
    """Keep rows whose answer verifies against `reference_answer` (rows without a
    usable reference too, with `keep_unverifiable`).

    A batch is verified by a MathPool of `workers` processes (chunks of `chunk_size`,
    a wall clock of `timeout * rows + guard_slack_s` per chunk), created with the filter
    and reused across batches (the chain calls the filter once per shard); `close()`
    ends its processes.

    Score columns: `math_status` (one of STATUSES), `math_predicted`.
    """

    name = "math"
    rule_scores = {"math_status": pl.String, "math_predicted": pl.String}

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 5.0,
        keep_unverifiable: bool = False,
        chunk_size: int = 64,
        guard_slack_s: float = 10.0,
        mode: str = "rules",
        judge: dict | None = None,
        _verify: Callable = verify_math,
    ):
        self.workers = self.param("workers", workers if workers is not None else DEFAULT_WORKERS, int, minimum=1)
        self.timeout = self.param("timeout", timeout, float, minimum=0.001)
        self.keep_unverifiable = self.param("keep_unverifiable", keep_unverifiable, bool)
        self.chunk_size = self.param("chunk_size", chunk_size, int, minimum=1)
        # added to timeout * rows for a chunk's wall-clock budget: worker start-up, pickling, scheduling
        self.guard_slack_s = self.param("guard_slack_s", guard_slack_s, float, minimum=0.0)
        # _verify: MathPool's test hook (not a parameter: it stays out of params())
        self._workers_given = workers is not None
        self._pool = MathPool(self.workers, self.timeout, chunk_size=self.chunk_size,
                              guard_slack_s=self.guard_slack_s, verifier=_verify)
        # cascade: an LLM judge decides what the rules cannot (filters/judge.py)
        self._judge = cascade_judge(self, mode, judge)

    @property
    def needs(self) -> tuple[str, ...]:
        return ("completion", "reference_answer", "problem") if self._judge else ("completion", "reference_answer")

    @property
    def uses(self) -> tuple[str, ...]:
        return ("sample_id",) if self._judge else ()

    @property
    def scores(self) -> dict:
        extra = {name: pl.String for name in JUDGE_SCORES} if self._judge else {}
        return {**self.rule_scores, **extra}

    @property
    def pool(self) -> MathPool:
        return self._pool

    def verify(self, row: dict) -> Verdict:
        """One row, in this process (its main thread)."""
        verdicts = [self._pool.verifier(row["reference_answer"], row["completion"], timeout=self.timeout)]
        return self.settle(self._second_opinion([row], verdicts)[0])

    def __call__(self, batch: pl.DataFrame) -> Decision:
        pairs = list(zip(batch["reference_answer"].to_list(), batch["completion"].to_list()))
        verdicts = self._second_opinion(batch, self._pool.verify(pairs))
        return self.decide([self.settle(v) for v in verdicts])

    def _second_opinion(self, rows, verdicts: list[MathVerdict]) -> list[Verdict]:
        """In cascade mode, the judge's verdicts on what the rules left undecided (and on its sample)."""
        if self._judge is None:
            return verdicts
        if isinstance(rows, pl.DataFrame):
            rows = list(self.rows(rows))
        questions = [math_question(r, v) for r, v in zip(rows, verdicts)]
        keys = [str(r.get("sample_id") or f"{r.get('problem')}\0{r.get('completion')}") for r in rows]
        return cascade(self._judge, questions, verdicts, UNDECIDED, keys)

    def settle(self, verdict: Verdict) -> Verdict:
        """The verifier's verdict, but kept when unverifiable and `keep_unverifiable` (and no judge decided it)."""
        if (self.keep_unverifiable and verdict.scores["math_status"] in UNVERIFIABLE
                and verdict.scores.get("verdict_by") != "judge"):
            return Verdict(True, None, verdict.scores)
        return verdict

    def manifest_info(self) -> dict:
        return {"verifier": f"math-verify {version('math-verify')}", "timeout_s": max(1, math.ceil(self.timeout)),
                **super().manifest_info()}

    def fit(self, cpus: int) -> None:
        if not self._workers_given and self._pool.workers > cpus:
            self._pool.close()
            self._pool.workers = max(1, cpus)

    def close(self) -> None:
        self._pool.close()
        super().close()


def math_question(row: dict, verdict: Verdict) -> dict | None:
    """What the judge is asked about a row: its problem, reference and final answer (the
    answer read by the rules, else the answer text after the reasoning, its last 2,000
    characters); None when there is no reference or no answer text to judge."""
    gold = row.get("reference_answer")
    if gold is None or not str(gold).strip():
        return None
    answer = verdict.scores.get("math_predicted") or parse_completion(row.get("completion")).answer
    if not answer or not answer.strip():
        return None
    return {"problem": str(row.get("problem") or ""), "reference_answer": str(gold), "final_answer": answer[-2000:]}


if __name__ == "__main__":
    # Throughput: python -m curate.filters.math [pairs] [workers]
    import json
    import sys
    from importlib import resources

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    data = resources.files("curate.data")  # MATH-500 and GSM8K answers, shipped with curate
    golds = [json.loads(line)["answer"] for line in (data / "math500.jsonl").open()]
    golds += [json.loads(line)["answer"].rsplit("####", 1)[1].strip() for line in (data / "gsm8k_test.jsonl").open()]
    rows = [(golds[i % len(golds)], golds[(i + i % 2) % len(golds)]) for i in range(n)]  # half right, half wrong
    batch = pl.DataFrame(
        {
            "reference_answer": [g for g, _ in rows],
            "completion": [f"<think>\nWork it out.\n</think>\n\nThe answer is $\\boxed{{{a}}}$." for _, a in rows],
        }
    )
    f = Math(workers=workers)
    f(batch.head(workers * f.chunk_size))  # start the pool outside the clock
    t = time.perf_counter()
    decision = f(batch)
    elapsed = time.perf_counter() - t
    f.close()
    statuses = decision.scores["math_status"].value_counts(sort=True).rows()
    print(f"{n} pairs, {workers} workers: {elapsed:.2f} s, {n / elapsed:.0f} pairs/s, "
          f"{n / elapsed / workers:.0f} pairs/s/worker; {statuses}")
