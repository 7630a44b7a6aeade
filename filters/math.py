"""Math correctness: is the answer after `</think>` equal to the reference answer?

Two things live here (filters/base.py):

- `verify_math(gold, completion) -> MathVerdict`, the pure per-row verifier, also used
  as the GRPO accuracy reward by curate.train;
- `Math`, the batch filter the chain runs: verify_math over a polars batch, in worker
  processes, with a wall-clock guard.

How a row is read (docs/ARCHITECTURE.md, "Choices and measured pitfalls"):

1. Only the answer part counts: the text after `</think>` (curate.parsing). A completion
   whose think block never closed has no answer, whatever its reasoning says.
2. The last `\\boxed{}` of the answer is preferred; without one, math-verify's default
   extraction reads the answer text ("The answer is 18.", "#### 18", "A: 18").
3. Digit-group separators are removed on both sides before parsing: math-verify reads
   `1\\,000` as 1*0 (and so "matches" a gold of 0), `1 000` likewise, `1\\u2009000` as 0.
4. The gold is parsed as `\\boxed{gold}`: measured on MATH-500, bare golds such as
   `\\left( 3, \\frac{\\pi}{2} \\right)` or `\\sqrt{51}` parse to nothing or to a
   fragment (51 of 500 empty, 392 of 500 self-verify), boxed ones all parse and all
   500 self-verify.
5. Integers are compared as integers: when the gold and the boxed answer are both plain
   integers (after step 3), math-verify's answer is known (it compares them exactly),
   so it is not called (`quick_verdict`; the batch filter settles these rows in its own
   process and sends only the others to its workers). Most maths answers are integers (all of GSM8K, 57% of MATH-500's
   golds); this skips ~0.8 ms of parsing per row. A boxed answer that is the gold's
   own text (after step 3) is correct without parsing either (every MATH-500 gold
   verifies against itself; a gold math-verify cannot parse, such as `\\text{Monday}`,
   is still matched by the same text). The gold's parse is kept per process (a
   problem's k samples share it).
6. math-verify's timeout is `signal.alarm`: it counts whole seconds (a float such as 0.5
   makes every parse fail silently, so it is rounded up here) and it works only in a
   process's main thread. The batch filter therefore runs verify_math in worker
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
from functools import lru_cache
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Callable, NamedTuple

import polars as pl
from math_verify import parse, verify
from math_verify.errors import TimeoutException
from sympy import Basic, MatrixBase

from curate.filters.base import Decision, Filter, decide
from curate.parsing import last_boxed, parse_completion

STATUSES = ("correct", "wrong", "no_answer", "no_gold", "unparseable_gold", "timeout", "error")


class MathVerdict(NamedTuple):
    correct: bool
    status: str  # one of STATUSES
    predicted: str | None  # what was read from the answer: the boxed content, or math-verify's extraction


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

_INTEGER = re.compile(r"-?\d+")


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
    answer = parse_completion(completion).answer
    boxed = last_boxed(answer) if answer else None
    if boxed is None:
        return None
    gold_text = normalise_digit_groups(last_boxed(gold) or gold.strip()).strip()
    boxed_text = normalise_digit_groups(boxed).strip()
    if boxed_text == gold_text:
        return MathVerdict(True, "correct", boxed)
    if _INTEGER.fullmatch(gold_text) and _INTEGER.fullmatch(boxed_text):
        ok = int(gold_text) == int(boxed_text)
        return MathVerdict(ok, "correct" if ok else "wrong", boxed)
    return None


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
    answer = parse_completion(completion).answer
    boxed = last_boxed(answer) if answer else None
    predicted = boxed

    try:
        # gold first, then the prediction, then verify(gold, prediction): the order matters
        gold_text = normalise_digit_groups(last_boxed(gold) or gold.strip())
        gold_parsed = list(_parse_gold(gold_text, seconds))
        if not any(isinstance(g, (Basic, MatrixBase)) for g in gold_parsed):
            # only a raw-string fallback (or nothing): there is no mathematical object to compare with
            return MathVerdict(False, "unparseable_gold", None)
        if not answer:
            return MathVerdict(False, "no_answer", None)
        if boxed is not None:
            pred_parsed = parse(f"\\boxed{{{normalise_digit_groups(boxed)}}}", parsing_timeout=seconds, raise_on_error=True)
        else:
            pred_parsed = parse(normalise_digit_groups(answer), parsing_timeout=seconds, raise_on_error=True)
            predicted = next((p for p in pred_parsed if isinstance(p, str)), None)
        if not pred_parsed:
            return MathVerdict(False, "no_answer", predicted)
        ok = verify(gold_parsed, pred_parsed, timeout_seconds=seconds, raise_on_error=True)
    except TimeoutException:
        return MathVerdict(False, "timeout", predicted)
    except Exception:  # sympy / latex2sympy failures on odd input: never a pass
        return MathVerdict(False, "error", predicted)
    return MathVerdict(bool(ok), "correct" if ok else "wrong", predicted)


# --- the batch filter ---------------------------------------------------------------

REASONS = {
    "wrong": "wrong answer",
    "no_answer": "no answer",
    "no_gold": "no reference answer",
    "unparseable_gold": "unparseable reference answer",
    "timeout": "verification timeout",
    "error": "verification error",
}
UNVERIFIABLE = ("no_gold", "unparseable_gold")


def verify_chunk(pairs: list[tuple[str | None, str | None]], timeout: float, verifier: Callable) -> list[tuple]:
    """Run in a worker process (its main thread): one verdict per (gold, completion)."""
    return [tuple(verifier(gold, completion, timeout=timeout)) for gold, completion in pairs]


class Math(Filter):
    """Keep rows whose answer verifies against `reference_answer`.

    Rows are verified in chunks of `chunk_size` by a pool of `workers` processes,
    created on first use and reused across batches (the chain calls the filter once
    per shard); `close()` ends it. A chunk that has not come back after
    `timeout * len(chunk) + guard_slack_s` is taken as hung: the pool is killed, that chunk's
    rows are "timeout", the chunks that were running beside it run again on a new pool.

    Score columns: `math_status` (one of STATUSES), `math_predicted`.
    """

    name = "math"
    needs = ("completion", "reference_answer")

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 5.0,
        keep_unverifiable: bool = False,
        chunk_size: int = 64,
        guard_slack_s: float = 10.0,
        _verify: Callable = verify_math,
    ):
        self.workers = self.param("workers", workers if workers is not None else min(4, os.cpu_count() or 1), int, minimum=1)
        self.timeout = self.param("timeout", timeout, float, minimum=0.001)
        self.keep_unverifiable = self.param("keep_unverifiable", keep_unverifiable, bool)
        self.chunk_size = self.param("chunk_size", chunk_size, int, minimum=1)
        # added to timeout * rows for a chunk's wall-clock budget: worker start-up, pickling, scheduling
        self.guard_slack_s = self.param("guard_slack_s", guard_slack_s, float, minimum=0.0)
        # Test hook: a picklable stand-in for verify_math (tests use one that hangs, to
        # exercise the wall-clock guard). Not a parameter: it stays out of params().
        self._verify = _verify
        self._pool: ProcessPoolExecutor | None = None

    def __call__(self, batch: pl.DataFrame) -> Decision:
        pairs = list(zip(batch["reference_answer"].to_list(), batch["completion"].to_list()))
        verdicts = self.verify_all(pairs)
        keep = [v[1] == "correct" or (self.keep_unverifiable and v[1] in UNVERIFIABLE) for v in verdicts]
        reasons = [REASONS.get(v[1]) for v in verdicts]
        return decide(keep, reasons, math_status=[v[1] for v in verdicts], math_predicted=[v[2] for v in verdicts])

    def verify_all(self, pairs: list[tuple[str | None, str | None]]) -> list[tuple]:
        """(correct, status, predicted) per pair, in order, whatever the workers do. The
        verdicts that need no math-verify (quick_verdict) are settled here; only the
        others travel to the workers."""
        if self._verify is verify_math:
            quick = [quick_verdict(gold, completion) for gold, completion in pairs]
            todo = [i for i, v in enumerate(quick) if v is None]
            slow = self._verify_in_pool([pairs[i] for i in todo]) if todo else []
            for i, verdict in zip(todo, slow):
                quick[i] = verdict
            return [tuple(v) for v in quick]
        return self._verify_in_pool(pairs)

    def _verify_in_pool(self, pairs: list[tuple[str | None, str | None]]) -> list[tuple]:
        results: list[tuple | None] = [None] * len(pairs)
        # at least 4 chunks per worker when there are few pairs, so the workers finish together
        size = max(1, min(self.chunk_size, -(-len(pairs) // (4 * self.workers))))
        chunks = [(start, pairs[start : start + size]) for start in range(0, len(pairs), size)]
        pending = list(reversed(chunks))  # popped from the end: first chunk first
        attempts: dict[int, int] = {}
        running: dict = {}  # future -> (start, chunk, deadline)

        def settle(start: int, chunk: list, status: str) -> None:
            results[start : start + len(chunk)] = [(False, status, None)] * len(chunk)

        while pending or running:
            # keep exactly one chunk per worker in flight, so a chunk's clock starts when it does
            while pending and len(running) < self.workers:
                start, chunk = pending.pop()
                future = self.pool().submit(verify_chunk, chunk, self.timeout, self._verify)
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
                # hung beyond what math-verify's own alarm can stop: kill the pool
                now = time.monotonic()
                for start, chunk, deadline in running.values():
                    if deadline <= now:
                        settle(start, chunk, "timeout")
                    else:
                        pending.append((start, chunk))  # innocent bystander: run it again
                running.clear()
                self.close(kill=True)
            elif broken:
                self.close(kill=True)  # the pool is broken; the next submit builds a fresh one
        return results

    def pool(self) -> ProcessPoolExecutor:
        """The worker pool, created on first use. Spawned, not forked: the parent runs
        polars' thread pool, and forking a threaded process can deadlock."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"))
        return self._pool

    def close(self, kill: bool = False) -> None:
        """End the worker pool (a later call starts a new one). `kill` ends hung workers."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
        pool.shutdown(wait=not kill, cancel_futures=True)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


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
    print(f"{n} pairs, {workers} workers: {elapsed:.2f} s, {n / elapsed:.0f} pairs/s, {n / elapsed / workers:.0f} pairs/s/worker; {statuses}")
