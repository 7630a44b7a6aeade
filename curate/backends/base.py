"""What every generation backend takes and gives back.

A backend turns rendered prompts into completions. It is handed an iterable of
`Request`s and yields `(request, samples)` as each request finishes, in any order, so
the run store can write finished work while the engine keeps busy with the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

from curate.errors import CurateError

# DeepSeek-R1's recommended sampling for its models (model card: "temperature within
# 0.5-0.7 (0.6 is recommended)", top-p 0.95).
R1_TEMPERATURE = 0.6
R1_TOP_P = 0.95


class TransientBackendError(RuntimeError):
    """Some requests failed on transient errors (429, 5xx, timeouts, connection errors)
    even after every retry. They were not yielded; running again retries them."""


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = R1_TEMPERATURE
    top_p: float = R1_TOP_P
    max_tokens: int = 4096
    seed: int | None = 0
    stop: tuple[str, ...] = ()
    # thinking budget (s1 budget forcing, curate/backends/budget.py); unset: none
    min_think_tokens: int | None = None
    max_think_tokens: int | None = None
    think_end: str = "</think>"
    wait_text: str = "Wait"

    @property
    def budgeted(self) -> bool:
        return self.min_think_tokens is not None or self.max_think_tokens is not None

    def to_dict(self) -> dict:
        """The fields as JSON; the budget's only when one is set (so a plain run's config
        and rows read as before)."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        if not self.budgeted:
            for name in ("min_think_tokens", "max_think_tokens", "think_end", "wait_text"):
                del d[name]
        return d


@dataclass
class Request:
    """One prompt and the sample indices still wanted for it."""

    key: str  # the problem_id
    prompt: str | list[dict]  # raw text, or chat messages (a final assistant message is a prefill)
    sample_indices: list[int]
    seed: int | None = None  # per-request seed, derived from the run seed and the key

    @property
    def n(self) -> int:
        return len(self.sample_indices)


@dataclass
class Sample:
    index: int  # the sample index within its problem
    text: str | None
    finish_reason: str  # stop / length / error
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    # with a thinking budget: tokens inside the think block (inserted ones included),
    # "Wait"s inserted, whether the end of thinking was forced
    think_tokens: int | None = None
    forced_waits: int | None = None
    forced_stop: bool | None = None


@dataclass
class Backend:
    """Base class: subclasses set `name` and implement `run`."""

    model: str
    sampling: Sampling
    options: dict = field(default_factory=dict)
    name = "base"

    def __post_init__(self) -> None:
        """Subclasses load their engine here."""

    def validate(self, prompt: str | list[dict]) -> None:
        """Raise CurateError if this engine cannot take such a prompt (checked on the
        first prompt, before the run dir is written)."""

    def run(self, requests: Iterable[Request]) -> Iterator[tuple[Request, list[Sample]]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        """Engine facts for the manifest (versions, device, options)."""
        return {"backend": self.name, "model": self.model}


def derive_seed(run_seed: int | None, key: str, salt: int = 0) -> int | None:
    """A stable 31-bit seed per (run seed, problem, salt): sampling does not depend on
    the order or batch a request lands in, so a resumed run draws what an uninterrupted
    one would have drawn."""
    if run_seed is None:
        return None
    digest = hashlib.sha256(f"{run_seed}:{key}:{salt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def split_prefill(prompt: str | list[dict]) -> tuple[list[dict] | None, str]:
    """For chat prompts: (messages, assistant prefill). A final assistant message is a
    prefill the model continues (e.g. "<think>\\n")."""
    if isinstance(prompt, str):
        return None, ""
    if prompt and prompt[-1].get("role") == "assistant":
        return list(prompt[:-1]), prompt[-1].get("content", "")
    return list(prompt), ""


def prompt_text(tokenizer, prompt: str | list[dict], model: str) -> tuple[str, bool]:
    """The text an engine tokenises, and whether the tokenizer should add its special
    tokens: raw text as is (with BOS where the model uses one); chat messages through
    the model's own chat template, continuing a final assistant prefill."""
    messages, prefill = split_prefill(prompt)
    if messages is None:
        return prompt, True
    if not getattr(tokenizer, "chat_template", None):
        raise CurateError(f"{model}: the model has no chat template; use a raw-text template such as r1_zero")
    chat = messages + ([{"role": "assistant", "content": prefill}] if prefill else [])
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=not prefill,
                                         continue_final_message=bool(prefill))
    return text, False
