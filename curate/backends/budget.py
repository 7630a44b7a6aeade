"""Thinking budgets (s1 budget forcing, arXiv:2501.19393): `--min-think-tokens`,
`--max-think-tokens`.

A budgeted sample is generated in phases, each a continuation of the prompt plus the
completion's token ids so far (so the model sees exactly the tokens it is credited with,
and prefix caching makes a continuation cheap):

- thinking: stop at the end-of-thinking delimiter (`think_end`, "</think>"), at most
  `max_think - thinking tokens so far` tokens. An end before `min_think` tokens is
  taken back (the tokens before the delimiter are kept, the delimiter dropped) and
  `wait_text` ("Wait") is appended: a forced continuation. Reaching `max_think` appends
  the delimiter ("\\n</think>\\n\\n"): a forced stop.
- answering: after the delimiter, what is left of `max_tokens`, with the run's own
  stop strings.

Accounting: `completion_tokens` counts every token of the completion, inserted ones
("Wait", a forced delimiter) included, and never exceeds `max_tokens`; `think_tokens`
counts the tokens before the delimiter. `forced_waits` and `forced_stop` say what was
forced. A sample that stops (EOS, a stop string, `max_tokens`) while thinking is left
as the model left it.

`Forcing` is the per-sample state machine; backends feed it each phase's output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from curate.errors import CurateError


def check_budget(min_think: int | None, max_think: int | None, think_end: str, backend: str) -> None:
    """Refuse a budget the options or the backend cannot honour (one line naming the option)."""
    if min_think is None and max_think is None:
        return
    if min_think is not None and min_think < 1:
        raise CurateError("--min-think-tokens must be at least 1")
    if max_think is not None and max_think < 0:
        raise CurateError("--max-think-tokens must be >= 0")
    if min_think is not None and max_think is not None and min_think > max_think:
        raise CurateError(f"--min-think-tokens {min_think} is more than --max-think-tokens {max_think}")
    if not think_end:
        raise CurateError("--think-end must not be empty")
    if backend != "vllm":
        option = "--min-think-tokens" if min_think is not None else "--max-think-tokens"
        raise CurateError(f"{option}: thinking budgets need --backend vllm (not implemented for --backend {backend}; "
                          "see the README)")


@dataclass
class Forcing:
    """One sample's budget-forced generation. `phase()` says how to generate next;
    `feed()` takes that phase's output and says whether another phase follows."""

    min_think: int | None
    max_think: int | None
    think_end: str
    wait_text: str
    max_tokens: int
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    ids: list[int] = field(default_factory=list)  # the completion's tokens so far
    thinking: bool = True
    think_tokens: int = 0
    waits: int = 0
    forced_stop: bool = False
    text: str | None = None  # the final text, once done
    finish_reason: str | None = None

    def phase(self) -> tuple[int, list[str]]:
        """(max tokens for the next phase, extra stop strings)."""
        left = self.max_tokens - len(self.ids)
        if not self.thinking:
            return left, []
        if self.max_think is not None:
            left = min(left, self.max_think - self.think_tokens)
        return left, [self.think_end]

    def feed(self, text: str, token_ids: list[int], finish_reason: str, stop_reason) -> bool:
        """Take a phase's output (vLLM's CompletionOutput fields); True: generate again."""
        token_ids = list(token_ids)
        cap, _ = self.phase()
        if self.thinking and stop_reason == self.think_end:
            kept, leftover = _before(token_ids, self.decode, self.think_end)
            thought = self.think_tokens + len(kept) + len(self.encode(leftover))
            if self.min_think is not None and thought < self.min_think:
                inserted = self.encode(leftover + self.wait_text)  # forced continuation
                self.waits += 1
                self.ids += kept + inserted
                self.think_tokens += len(kept) + len(inserted)
            else:
                self.ids += token_ids  # the model's own end of thinking
                self.think_tokens += len(kept)
                self.thinking = False
        elif self.thinking and finish_reason == "length" and len(token_ids) >= cap and self.max_think is not None \
                and self.think_tokens + len(token_ids) >= self.max_think:
            self.ids += token_ids  # forced stop
            self.think_tokens += len(token_ids)
            so_far = self.decode(self.ids)
            self.ids += self.encode(("" if so_far.endswith("\n") else "\n") + self.think_end + "\n\n")
            self.thinking = False
            self.forced_stop = True
        else:  # the sample's own end: EOS, a stop string, max_tokens
            if self.thinking:
                self.think_tokens += len(token_ids)
            self.text = self.decode(self.ids) + text
            self.ids += token_ids
            self.finish_reason = finish_reason
            return False
        if len(self.ids) >= self.max_tokens:  # what was inserted used up the budget
            self.ids = self.ids[: self.max_tokens]
            self.text, self.finish_reason = self.decode(self.ids), "length"
            return False
        return True


def _before(token_ids: list[int], decode: Callable[[list[int]], str], end: str) -> tuple[list[int], str]:
    """The tokens wholly before the first `end` in their text, and the text between
    them and `end` (a token that straddles the delimiter's start)."""
    full = decode(token_ids)
    at = full.find(end)
    if at < 0:
        return token_ids, ""
    lo, hi = 0, len(token_ids)  # the most tokens whose text does not reach past `at`
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(decode(token_ids[:mid])) <= at:
            lo = mid
        else:
            hi = mid - 1
    return token_ids[:lo], full[len(decode(token_ids[:lo])):at]
