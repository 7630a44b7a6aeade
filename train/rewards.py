"""R1's rule-based rewards for GRPO, each a thin wrapper around a verifier in
curate.filters: one verifier, two uses, so filtering and reward never disagree.

Every reward has TRL's signature, `reward(completions, **columns) -> list[float | None]`
(TRL passes the dataset's columns by name, one value per completion, and logs each
reward function under its own name: `rewards/accuracy/mean`, `rewards/format/mean`, ...).
None means "cannot be scored" (no reference answer); TRL leaves it out of that reward.

The rewards, each with its verifier and its value:

- `accuracy`: `filters/math.py verify_math` (math-verify in the reward's own MathPool:
  spawned workers, per-chunk wall-clock guard); `filters/code.py verify_code` (the
  sandbox) for rows with `tests`. Value: 1.0 right, 0.0 wrong; None without a reference
  answer or tests. With a judge (cascade mode, `--judge`), the judge scores maths
  answers the rules cannot read, and stdio outputs that differ from the expected ones
  (`filters/code.py code_cascade`: it sees outputs, never runs code; long outputs and
  verdict markers are never sent; every differing case must be judged acceptable).
- `format`: `filters/format.py check_format` (`think`: `<think>…</think>` then an answer;
  `r1_zero`: `<think>…</think> <answer>…</answer>`). Value: 1.0 well formed, else 0.0.
- `language`: `filters/language.py target_language_ratio` of the reasoning (R1: "the
  proportion of target language words in the CoT"). Value: the share, 0.0–1.0.
- `overlong`: `filters/length.py is_truncated`, plus DAPO's soft overlong punishment (Yu
  et al., 2025, eq. 13). Value: 0 up to `max_len - buffer` tokens, then down linearly to
  -1 at `max_len`; -1 when truncated.

A prompt whose template (or the model's chat template) already opened `<think>` leaves
the completion without its opening tag. The `prefill` column (written by
curate.train.grpo) holds that text; each reward checks `prefill + completion`, the whole
assistant turn, so a prefilled completion is read exactly like one that wrote the tag
itself (and an unclosed think block is still "no answer").
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from curate.errors import CurateError
from curate.filters import sandbox
from curate.filters.code import JUDGE_CASES, code_cascade, verify_code
from curate.filters.format import check_format
from curate.filters.judge import Judge, cascade
from curate.filters.language import normalise_language, target_language_ratio
from curate.filters.length import is_truncated
from curate.filters.math import UNDECIDED, UNVERIFIABLE, MathPool, math_question
from curate.parsing import parse_completion

NAMES = ("accuracy", "format", "language", "overlong")


def assistant_text(completion, prefill: str | None = None) -> str:
    """The whole assistant turn: the prefill the prompt put there, then what the model
    wrote. TRL hands completions as text, or as messages for chat datasets."""
    if not isinstance(completion, str):
        completion = "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")
    return (prefill or "") + completion


def _texts(completions, prefill) -> list[str]:
    prefill = prefill if prefill is not None else [None] * len(completions)
    return [assistant_text(c, p) for c, p in zip(completions, prefill)]


# --- accuracy ------------------------------------------------------------------------

class Accuracy:
    """The accuracy reward: 1.0 when the answer verifies (maths: against
    `reference_answer`; code: every test in `tests` passes in the sandbox), 0.0 when it
    does not, None when the row has neither a usable reference answer nor tests.

    It owns its MathPool (`workers` math-verify processes, `timeout` seconds per step),
    whose processes start on the first call and are reused every step; `close()` ends
    them (a later call starts them again). With a `judge`, one judge answers both kinds of
    question: maths through its template, code outputs through `judge_code_output`
    (at most `judge_cases` differing cases per sample)."""

    __name__ = "accuracy"  # TRL logs a reward function under its __name__

    def __init__(self, workers: int | None = None, timeout: float = 5.0, judge: Judge | dict | None = None,
                 judge_cases: int = JUDGE_CASES):
        self.pool = MathPool(workers, timeout)
        self.judge_cases = judge_cases
        # cascade: an LLM judge scores what the rules cannot decide (filters/judge.py)
        self.judge = Judge.from_spec(judge, "accuracy reward") if judge is not None else None

    def __call__(self, completions, reference_answer=None, tests=None, prefill=None, problem=None,
                 **_) -> list[float | None]:
        texts = _texts(completions, prefill)
        n = len(texts)
        golds = reference_answer if reference_answer is not None else [None] * n
        tests = tests if tests is not None else [None] * n
        problems = problem if problem is not None else [""] * n
        out: list[float | None] = [None] * n
        code_rows = [i for i in range(n) if tests[i]]
        math_rows = [i for i in range(n) if not tests[i] and golds[i] is not None and str(golds[i]).strip()]
        if math_rows:
            verdicts = self.pool.verify([(str(golds[i]), texts[i]) for i in math_rows])
            if self.judge is not None:
                rows = [{"problem": problems[i], "reference_answer": str(golds[i]), "completion": texts[i]}
                        for i in math_rows]
                verdicts = cascade(self.judge, [math_question(r, v) for r, v in zip(rows, verdicts)], verdicts,
                                   UNDECIDED, [f"{r['problem']}\0{r['completion']}" for r in rows])
            for i, v in zip(math_rows, verdicts):
                unverifiable = v.scores["math_status"] in UNVERIFIABLE and v.scores.get("verdict_by") != "judge"
                out[i] = None if unverifiable else float(v.keep)
        if code_rows:
            if sandbox.isolation() == "none":  # a policy's code, unconfined, could signal every process it can reach
                raise CurateError("accuracy reward: code tests need a sandbox to run a policy's code (install "
                                  "bubblewrap, or allow unprivileged user namespaces for unshare)")
            keep = self.judge_cases if self.judge is not None else 0
            with ThreadPoolExecutor(min(4, len(code_rows))) as threads:  # each sample in its own sandboxes
                verdicts = list(threads.map(lambda i: verify_code(tests[i], texts[i], keep_runs=keep), code_rows))
            if self.judge is not None:
                rows = [{"problem": problems[i], "completion": texts[i]} for i in code_rows]
                verdicts = code_cascade(self.judge, rows, verdicts, self.judge_cases, template="judge_code_output")
            for i, v in zip(code_rows, verdicts):
                out[i] = None if v.scores["code_status"] == "no_tests" else float(v.keep)
        return out

    def close(self) -> None:
        self.pool.close()
        if self.judge is not None:
            self.judge.close()


accuracy = Accuracy()


def close() -> None:
    """End the accuracy reward's math-verify processes (a later call starts new ones)."""
    accuracy.close()


# --- format ------------------------------------------------------------------------


def format(completions, prefill=None, style: str = "think", **_) -> list[float]:  # noqa: A001 - TRL logs it as "format"
    """1.0 when `check_format(text, style)` keeps the text, else 0.0."""
    return [float(check_format(t, style).keep) for t in _texts(completions, prefill)]


# --- language consistency ------------------------------------------------------------


def language(completions, prefill=None, lang: str = "en", **columns) -> list[float]:
    """The target-language share of the reasoning's letters (the language filter's
    ratio). The target is the row's `language` column when set, else `lang`. No
    reasoning: 1.0, as the filter (nothing foreign found; `format` judges the shape)."""
    rows = columns.get("language") or [None] * len(completions)
    out = []
    for text, row_lang in zip(_texts(completions, prefill), rows):
        reasoning = parse_completion(text).reasoning
        out.append(target_language_ratio(reasoning, normalise_language(row_lang or lang)) if reasoning else 1.0)
    return out


# --- overlong ------------------------------------------------------------------------


def overlong(completions, completion_ids=None, prefill=None, max_len: int = 1024, buffer: int = 256,
             **_) -> list[float]:
    """DAPO's soft overlong punishment on the completion's length in tokens L:
    0 when L <= max_len - buffer, (max_len - buffer - L) / buffer up to max_len, and -1
    for a truncated completion (`is_truncated`: it hit max_len, or its think block never
    closed)."""
    out = []
    for i, text in enumerate(_texts(completions, prefill)):
        length = len(completion_ids[i]) if completion_ids is not None else 0
        if is_truncated(text, "length" if length >= max_len else "stop"):
            out.append(-1.0)
        elif length <= max_len - buffer:
            out.append(0.0)
        else:
            out.append(max(-1.0, (max_len - buffer - length) / buffer))
    return out


REWARDS = {"accuracy": accuracy, "format": format, "language": language, "overlong": overlong}
