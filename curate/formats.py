"""Read reasoning traces in the layouts public sets and teachers use, as curate rows.

`resolve(columns, preset, column_map)` inspects an input's columns (after `--map`) and
returns the `Layout` that turns its rows into the row schema (docs/ARCHITECTURE.md, "The
row"); `Layout.apply(frame)` does it to one shard. Layouts:

- `flat`: a problem column (problem, question, prompt, instruction) and a completion
  column (completion, response, output, generation);
- `messages`: OpenAI chat messages (role/content, a list or JSON text): the last user turn
  is the problem, the last assistant turn the completion;
- `conversations`: ShareGPT turns (from/value; human/user, gpt/assistant, system).

A separate reasoning column (`reasoning_content`, or `reasoning` beside a completion that
spells no reasoning) is folded into the completion as `<think>…</think>`; in a set
written after a prefilled `<think>` (traces that close the block without opening it),
every trace gets its opening tag, so an untagged one reads as an unclosed thought. Without a
`reference_answer` column, the first of answer, final_answer, solution, ground_truth_solution
(a solution: its last `\\boxed{}`) is the reference answer, read as `curate generate` reads it
(curate.inputs.reference_answer). Rows that are not curate rows get `problem_id` (a hash
of the problem text), `reasoning`, `answer` and `final_answer` (curate.parsing) and a null
`finish_reason` (the length filter then infers truncation). `--preset NAME` names the
columns of a public set (PRESETS); `--map` overrides it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import polars as pl

from curate.errors import CurateError
from curate.inputs import ANSWER_COLUMNS, PROBLEM_COLUMNS, reference_answer
from curate.parsing import THINK_CLOSE, THINK_OPEN, THOUGHT, has_markup, last_boxed, parse_trace

COMPLETION_COLUMNS = ("completion", "response", "output", "generation")
REASONING_COLUMNS = ("reasoning_content", "reasoning")
USER_ROLES, ASSISTANT_ROLES = ("user", "human"), ("assistant", "gpt", "model")

# Column names of public long-CoT sets (their Hub cards): ROW_COLUMN -> candidate input columns,
# the first present wins. Sets without a preset are read by inspection.
PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    # system + conversations [{from: user|assistant, value}], Sky-T1's thought/solution tags
    "openthoughts": {"completion": ("conversations",), "reference_answer": ("ground_truth_solution",)},
    "bespoke-stratos": {"completion": ("conversations",)},
    "sky-t1": {"completion": ("conversations",)},
    # problem, solution, answer, messages [user, assistant with <think>], generations, finish_reasons
    "openr1-math": {"completion": ("messages",), "reference_answer": ("answer",)},
    # problem, solution (a worked solution ending in \boxed{}, untagged), messages; 1.5 adds answer
    "numinamath": {"problem": ("problem",), "reasoning_content": ("solution",),
                   "reference_answer": ("answer", "solution")},
    # question, solution, thinking_trajectories (a list), attempt; s1K-1.1: deepseek_* columns
    "s1k": {"problem": ("question",), "reasoning_content": ("thinking_trajectories", "deepseek_thinking_trajectory"),
            "completion": ("attempt", "deepseek_attempt"), "reference_answer": ("solution",)},
    # question, solution (the long reasoning, untagged, ending in \boxed{}), answer: the reasoning is the
    # solution, and the answer part its last \boxed{} (a set with no completion column)
    "limo": {"problem": ("question",), "reasoning_content": ("solution",), "reference_answer": ("answer",)},
}


@dataclass
class Layout:
    """How one input's columns become curate rows."""

    kind: str  # flat, messages, conversations
    columns: dict[str, str] = field(default_factory=dict)  # row column -> input column
    reference: str | None = None  # the input column read as the reference answer
    curate_rows: bool = False  # the input already has the row schema (a curate run)

    def output_columns(self, names: list[str]) -> list[str]:
        """The columns the filters see."""
        added = ["completion", "problem_id", "reasoning", "answer", "final_answer", "finish_reason"]
        if self.kind != "flat" or "problem" in self.columns:
            added.append("problem")
        return sorted({*names, *added, *(["reference_answer"] if self.reference else [])})

    @property
    def passthrough(self) -> bool:
        """The input is curate rows already: `apply` returns it as it is."""
        return self.curate_rows and self.kind == "flat" and not self.columns.get("reasoning_content")

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self.passthrough:
            return frame
        records = frame.select(sorted(set(self.columns.values()) | ({self.reference} - {None}))).to_dicts()
        rows = [self._row(r) for r in records]
        new = {name: [r[name] for r in rows] for name in ("problem", "completion")}
        if self.kind == "flat" and "problem" not in self.columns:
            del new["problem"]
        if not self.curate_rows:
            new["completion"] = _open_prefilled(new["completion"])
            traces = [parse_trace(c) for c in new["completion"]]
            new["reasoning"] = [t.reasoning for t in traces]
            new["answer"] = [t.answer for t in traces]
            new["final_answer"] = [t.final_answer for t in traces]
            new["problem_id"] = [problem_id(r["problem"] or r["completion"]) for r in rows]
        if self.reference:
            new["reference_answer"] = [reference_answer(r.get(self.reference), self.reference) for r in records]
        out = frame.with_columns([pl.Series(k, v, dtype=pl.String) for k, v in new.items()])
        if "problem_id" in frame.columns and not self.curate_rows:  # the input's own ids win
            if frame.schema["problem_id"].is_nested():
                raise CurateError(f"column 'problem_id' holds {frame.schema['problem_id']} values; ids are text or "
                                  "numbers")
            out = out.with_columns(pl.coalesce(frame["problem_id"].cast(pl.String), pl.col("problem_id")))
        if "finish_reason" not in out.columns:
            out = out.with_columns(pl.lit(None, pl.String).alias("finish_reason"))
        return out

    def _row(self, record: dict) -> dict:
        if self.kind == "flat":
            problem = record.get(self.columns.get("problem", ""))
            completion = _text(record.get(self.columns["completion"])) if "completion" in self.columns else None
            reasoning = record.get(self.columns["reasoning_content"]) if "reasoning_content" in self.columns else None
        else:
            problem, completion, reasoning = _turns(record.get(self.columns["completion"]), self.kind)
            if "problem" in self.columns:
                problem = record.get(self.columns["problem"]) or problem
            if "reasoning_content" in self.columns:
                reasoning = record.get(self.columns["reasoning_content"]) or reasoning
        reasoning = _text(reasoning)
        if "completion" not in self.columns and reasoning:  # a set of reasoning only (LIMO): its final box answers
            boxed = last_boxed(reasoning)
            completion = f"The final answer is $\\boxed{{{boxed}}}$." if boxed is not None else None
        if reasoning and reasoning.strip() and not has_markup(completion) \
                and reasoning.strip() != (completion or "").strip():
            completion = f"<think>\n{reasoning.strip()}\n</think>\n\n{(completion or '').strip()}"
        return {"problem": _text(problem), "completion": completion}


def resolve(names: list[str], preset: str | None = None, column_map: dict | None = None,
            shown: str = "the input") -> Layout:
    """The layout of an input with columns `names` (already renamed by --map)."""
    mapped = set((column_map or {}).keys())
    wanted: dict[str, tuple[str, ...]] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise CurateError(f"--preset {preset!r}: unknown preset (presets: {', '.join(sorted(PRESETS))})")
        wanted = {dst: srcs for dst, srcs in PRESETS[preset].items() if dst not in mapped}
    chosen = {dst: next((s for s in srcs if s in names), None) for dst, srcs in wanted.items()}
    if preset and wanted.get("completion") and not chosen.get("completion"):
        raise CurateError(f"--preset {preset}: {shown} has none of the columns {', '.join(wanted['completion'])} "
                          f"(columns: {', '.join(names)})")
    columns = {dst: src for dst, src in chosen.items() if src}
    if preset and "completion" not in wanted and columns.get("reasoning_content") and "completion" not in mapped:
        return Layout("flat", columns, chosen.get("reference_answer"), False)  # reasoning only: its last box answers
    curate_rows = {"reference_answer", "sample_id", "completion"} <= set(names)
    completion = columns.get("completion") or _first(("completion",), names) or \
        _first(("conversations", "messages"), names) or _first(COMPLETION_COLUMNS, names)
    if completion is None:
        raise CurateError(f"{shown} has no completion: looked for completion, conversations, messages, "
                          f"{', '.join(COMPLETION_COLUMNS[1:])} (columns: {', '.join(names)}); "
                          "pass --preset NAME or --map completion=COLUMN")
    kind = completion if completion in ("conversations", "messages") else "flat"
    columns["completion"] = completion
    if "problem" not in columns and (problem := _first(PROBLEM_COLUMNS, names)) and (kind == "flat" or
                                                                                      problem == "problem"):
        columns["problem"] = problem
    if "reasoning_content" not in columns:
        reasoning = _first(REASONING_COLUMNS, names)
        if reasoning and not (curate_rows and reasoning == "reasoning"):  # curate's own: parsed from the completion
            columns["reasoning_content"] = reasoning
    reference = chosen.get("reference_answer") or ("reference_answer" if "reference_answer" in names else None) \
        or _first(ANSWER_COLUMNS, names)
    return Layout(kind, columns, reference if reference != "reference_answer" else None, curate_rows)


def _open_prefilled(completions: list[str | None]) -> list[str | None]:
    """A set written after a prefilled `<think>` (its traces close the block without opening
    it) gets the opening tag back on every trace without one: an untagged trace there is an
    unclosed thought, not an answer."""
    closed = [c for c in completions if c and THINK_CLOSE in c]
    if not closed or sum(THINK_OPEN not in c for c in closed) * 2 < len(closed):
        return completions
    return [c if c is None or THINK_OPEN in c or THOUGHT[0] in c else f"{THINK_OPEN}\n{c}" for c in completions]


def problem_id(problem: str | None) -> str:
    """A stable id from the problem text (16 hex digits of sha256)."""
    return hashlib.sha256((problem or "").encode()).hexdigest()[:16]


def _first(candidates: tuple[str, ...], names: list[str]) -> str | None:
    return next((c for c in candidates if c in names), None)


def _text(value) -> str | None:
    """A cell as text: a list of strings (s1K's thinking_trajectories) joined by blank lines."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "\n\n".join(str(v) for v in value if v is not None)
    return str(value)


def _chat(value, kind: str) -> tuple[list[dict], str, str]:
    """The turns of a chat cell (a list or JSON text), its role key and its text key."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    role_key, text_key = ("from", "value") if kind == "conversations" else ("role", "content")
    turns = [t for t in value if isinstance(t, dict)] if isinstance(value, (list, tuple)) else []
    return turns, role_key, text_key


def first_user_turn(value, kind: str) -> str | None:
    """The text of a chat's first user (human) turn, past any system turn: the problem a
    chat row poses (`curate generate`'s and `curate train grpo`'s prompts)."""
    turns, role_key, text_key = _chat(value, kind)
    user = next((t for t in turns if str(t.get(role_key)).lower() in USER_ROLES), None)
    return _text((user or {}).get(text_key))


def _turns(value, kind: str) -> tuple[str | None, str | None, str | None]:
    """(problem, completion, reasoning) of a chat: the last user turn before the last
    assistant turn, that assistant turn, and its own reasoning field if it has one."""
    turns, role_key, text_key = _chat(value, kind)
    last = max((i for i, t in enumerate(turns) if str(t.get(role_key)).lower() in ASSISTANT_ROLES), default=None)
    if last is None:
        return None, None, None
    user = next((t for t in reversed(turns[:last]) if str(t.get(role_key)).lower() in USER_ROLES), None)
    assistant = turns[last]
    reasoning = next((assistant.get(k) for k in REASONING_COLUMNS if assistant.get(k)), None)
    return (user or {}).get(text_key), _text(assistant.get(text_key)), reasoning
