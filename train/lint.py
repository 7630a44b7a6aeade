"""Check a student's chat template on real rows before any training step.

A distillation run can look healthy (the loss falls) and still produce a student that
never reasons or never stops. The causes sit in the chat template and the tokenizer,
and every one of them shows on a single rendered row:

* the template drops the `<think>` block from the assistant turn (DeepSeek-R1-Distill's
  template keeps only the text after `</think>`; Qwen3's does so for assistant turns
  before the last user turn): the student learns answers without reasoning; or it drops
  an empty one (`<think>\n\n</think>`, a row without a chain of thought), so the student
  does not learn to open and close the block on every answer;
* the loss mask cannot be built (assistant-only loss needs `{% generation %}` markers),
  or it leaves the reasoning or the end-of-turn token out of the trained tokens;
* the token that ends the assistant turn is not one the student stops at
  (a base model's EOS is `<|endoftext|>`, its chat template ends turns with `<|im_end|>`);
* the pad token is that end-of-turn token: every consumer that masks padding by id
  (transformers' DataCollatorForLanguageModeling, many eval/RL scripts) drops it from
  the loss, and the embedding row of a pad id gets no gradient (`padding_idx`);
* most rows are longer than `max_length`: truncation cuts their answers and stops.

The rows are tokenised by TRL's own dataset preparation (`SFTTrainer._prepare_dataset`)
and collated by TRL's own collator, so the lint sees exactly the labels training sees.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass, field

THINK = re.compile(r"<think>(.*?)</think>", re.S)
EMPTY_THINK = re.compile(r"<think>\s*</think>")
LOSSES = ("completion", "assistant", "all")
# Distinct pad tokens that common students ship (Llama 3.x, Qwen / SmolLM, DeepSeek).
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "<｜▁pad▁｜>", "<|endoftext|>")


@dataclass
class LintReport:
    rows_checked: int = 0
    max_length: int | None = None
    loss: str = "completion"
    rendered: str = ""  # the first checked row, rendered by the template
    trained: str = ""  # the tokens of that row that carry loss, decoded
    end_token: str | None = None  # the token that closes the trained assistant turn
    eos_tokens: list[str] = field(default_factory=list)
    pad_token: str | None = None
    lengths: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # each one refuses training; each names the fix
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        if self.ok:
            return f"lint: ok ({self.rows_checked} rows checked)"
        return f"lint: refused ({self.problems[0]})"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "rows_checked": self.rows_checked, "loss": self.loss, "max_length": self.max_length,
                "end_token": self.end_token, "eos_tokens": self.eos_tokens, "pad_token": self.pad_token,
                "longest_row_tokens": max(self.lengths, default=0), "problems": self.problems, "notes": self.notes}

    def render(self, max_chars: int = 2000) -> str:
        lines = [f"── rendered row ({len(self.lengths) and self.lengths[0]} tokens) ──", _cut(self.rendered, max_chars),
                 f"── trained tokens ({self.loss} loss) ──", _cut(self.trained, max_chars),
                 f"── checks on {self.rows_checked} rows ──",
                 f"end of turn {self.end_token!r} · student stops at {', '.join(map(repr, self.eos_tokens))} · "
                 f"pad {self.pad_token!r} · longest row {max(self.lengths, default=0)} tokens"
                 f" (max length {self.max_length})"]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"problem: {p}" for p in self.problems]
        lines.append(self.verdict())
        return "\n".join(lines)


def to_prompt_completion(messages: list[dict]) -> dict:
    """Split a conversation at its last assistant turn: TRL's prompt-completion shape,
    whose loss covers the completion only and needs no `{% generation %}` markers."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        raise ValueError("needs a user turn followed by an assistant turn")
    return {"prompt": messages[:last], "completion": messages[last:last + 1]}


def training_template(tokenizer, loss: str) -> tuple[str | None, str | None]:
    """(template TRL will render with, or None for the tokenizer's own; a problem or None).
    Assistant-only loss needs `{% generation %}` markers; TRL has training variants of the
    templates it knows (Qwen, Llama 3, DeepSeek-R1-Distill, ...)."""
    if loss != "assistant":
        return None, None
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return None, None
    try:
        return get_training_chat_template(tokenizer), None
    except ValueError:
        return None, ("the assistant-only loss mask cannot be built: the chat template has no "
                      "{% generation %} markers and TRL has no training variant of it; fix: --loss completion "
                      "(trains the last assistant turn, any template) or --chat-template FILE with "
                      "{% generation %}…{% endgeneration %} around the assistant turn")


def choose_pad_token(tokenizer, end_token: str | None, rendered: list[str]) -> str | None:
    """A special token to pad with that is neither an EOS / end-of-turn token nor
    rendered by the template; None when the tokenizer has none."""
    taken = {tokenizer.eos_token, end_token, tokenizer.bos_token}
    vocab = tokenizer.get_vocab()
    specials = [t for t in PAD_CANDIDATES if t in vocab]
    specials += [t for t in (tokenizer.unk_token,) if t]
    for tok in specials:
        if tok not in taken and not any(tok in text for text in rendered):
            return tok
    return None


def lint(tokenizer, rows: list[dict], *, loss: str = "completion", max_length: int | None = None,
         eos_token_ids: list[int] | None = None, padding_free: bool = False) -> LintReport:
    """Lint `tokenizer`'s chat template on `rows` (dicts with a `messages` list)."""
    report = LintReport(rows_checked=len(rows), max_length=max_length, loss=loss, pad_token=tokenizer.pad_token)
    if tokenizer.chat_template is None:
        report.problems.append("the student's tokenizer has no chat template; fix: --chat-template FILE (a .jinja)")
        return report

    # 1. the rendered text keeps every trained assistant turn's reasoning
    try:
        texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    except Exception as e:  # noqa: BLE001 - jinja raises many kinds
        report.problems.append(f"the chat template fails on a data row ({type(e).__name__}: {str(e)[:160]}); "
                               "fix: --chat-template FILE")
        return report
    report.rendered = texts[0]
    reasoning = [_trained_reasoning(r["messages"], loss) for r in rows]
    dropped = [i for i, (text, bodies) in enumerate(zip(texts, reasoning)) if not _keeps(text, bodies)]
    if dropped and all(not any(reasoning[i]) for i in dropped):
        report.problems.append(
            f"the chat template drops an empty <think></think> block from the assistant turn ({len(dropped)} of "
            f"{len(rows)} rows, those without a chain of thought, render without the think tags), so the student "
            "would not learn to open and close the block on every answer; fix: --chat-template FILE with a template "
            "that renders assistant content verbatim")
        return report
    if dropped:
        report.problems.append(
            f"the chat template drops the <think> block from the assistant turn ({len(dropped)} of {len(rows)} rows "
            "render without their reasoning), so the student would learn answers without reasoning; fix: "
            "--chat-template FILE with a template that renders assistant content verbatim (TRL ships "
            "deepseek_r1_distill_training.jinja and qwen3_training.jinja in trl/chat_templates/)")
        return report

    # 2. TRL's own tokenisation and loss mask
    template, problem = training_template(tokenizer, loss)
    if problem:
        report.problems.append(problem)
        return report
    try:
        prepared = _prepare_with_trl(tokenizer, rows, loss, template)
    except Exception as e:  # noqa: BLE001 - TRL raises RuntimeError / ValueError / TemplateError
        report.problems.append(f"the loss mask cannot be built by TRL ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:200]}); fix: --loss completion or --chat-template FILE")
        return report
    report.lengths = [len(p["input_ids"]) for p in prepared]
    added = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
    eos_ids = set(eos_token_ids or []) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
    report.eos_tokens = sorted(tokenizer.convert_ids_to_tokens(sorted(eos_ids)))
    ends = []
    for i, p in enumerate(prepared):
        trained_ids = [t for t, label in zip(p["input_ids"], p["labels"]) if label != -100]
        if not trained_ids:
            report.problems.append(f"row {i}: the loss mask is empty (no token is trained); fix: --loss completion")
            return report
        trained = tokenizer.decode(trained_ids)
        if i == 0:
            report.trained = trained
        if not _keeps(trained, reasoning[i]) or (reasoning[i] and "</think>" not in trained):
            report.problems.append(f"row {i}: the reasoning is rendered but left out of the trained tokens; "
                                   "fix: --loss completion")
            return report
        ends.append(_last_content_token(tokenizer, trained_ids))

    # 3. the trained turn ends on a token the student stops at
    not_special = [i for i, t in enumerate(ends) if t not in added]
    if not_special:
        i = not_special[0]
        report.problems.append(
            f"row {i}: the trained tokens end on ordinary text ({tokenizer.decode([ends[i]])!r}), not on an "
            "end-of-turn token: the template attributes the end of turn to the next message or emits none, so the "
            "student never learns to stop; fix: --chat-template FILE whose assistant turn ends with the EOS token")
        return report
    end = max(set(ends), key=ends.count)
    report.end_token = tokenizer.convert_ids_to_tokens(end)
    if end not in eos_ids:
        report.problems.append(
            f"the assistant turn ends with {report.end_token!r} but the student stops only at "
            f"{', '.join(map(repr, report.eos_tokens))}: it would never stop; fix: --eos-token {report.end_token!r}")
        return report

    # 4. the pad token is not the end-of-turn token, and the real collator keeps its label
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token is not None else tokenizer.eos_token_id  # TRL pads with EOS
    if pad_id == end:
        fix = choose_pad_token(tokenizer, report.end_token, texts)
        report.problems.append(
            f"the pad token is the end-of-turn token {report.end_token!r}: collators that mask padding by id "
            "(transformers' DataCollatorForLanguageModeling) drop it from the loss, and its embedding row is the "
            "model's padding_idx, so the student never learns to stop; fix: "
            + (f"--pad-token {fix!r}" if fix else "add a pad token to the tokenizer and pass --pad-token"))
        return report
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collate = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=padding_free)
    batch = collate([{"input_ids": p["input_ids"], "labels": p["labels"]} for p in prepared])
    kept = int(((batch["labels"] == end) & (batch["input_ids"] == end)).sum())
    if kept < len(prepared):
        report.problems.append(f"the collator masks the end-of-turn token {report.end_token!r} in "
                               f"{len(prepared) - kept} of {len(prepared)} rows; "
                               "fix: --pad-token with a distinct token")
        return report

    # 5. lengths
    if max_length:
        over = sum(n > max_length for n in report.lengths)
        if over * 2 > len(rows):
            report.problems.append(
                f"{over} of {len(rows)} rows are longer than --max-length {max_length} (longest "
                f"{max(report.lengths)} tokens): truncation would cut their answers and end-of-turn tokens; fix: "
                f"--max-length {_round_up(sorted(report.lengths)[int(0.95 * (len(rows) - 1))])} or drop long rows")
        elif over:
            report.notes.append(f"{over} of {len(rows)} rows are longer than --max-length {max_length} and will be "
                                "truncated (they lose their end-of-turn token)")
    return report


def _trained_reasoning(messages: list[dict], loss: str) -> list[str]:
    """The reasoning bodies of the assistant turns that carry loss ("" for an empty think block)."""
    turns = [m for m in messages if m["role"] == "assistant"]
    if loss == "completion":
        turns = turns[-1:]
    out = []
    for m in turns:
        match = THINK.search(m["content"] or "")
        if match:
            out.append(match.group(1).strip())
    return out


def _keeps(text: str, bodies: list[str]) -> bool:
    """Whether `text` holds every think block: a reasoning body, or empty think tags."""
    return all(b in text if b else EMPTY_THINK.search(text) for b in bodies)


def _prepare_with_trl(tokenizer, rows: list[dict], loss: str, template: str | None) -> list[dict]:
    """input_ids and labels for `rows`, by TRL's SFTTrainer dataset preparation (no truncation)."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    if loss == "completion":
        records = [to_prompt_completion(r["messages"]) for r in rows]
    else:
        records = [{"messages": r["messages"]} for r in rows]
    args = SFTConfig(output_dir="/tmp/curate-lint", max_length=None, assistant_only_loss=loss == "assistant",
                     completion_only_loss=loss == "completion", report_to=[], use_cpu=True, bf16=False)
    trainer_view = types.SimpleNamespace(_tokenizer=tokenizer, chat_template=template,
                                         completion_only_loss=loss == "completion")
    progress = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        prepared = SFTTrainer._prepare_dataset(trainer_view, datasets.Dataset.from_list(records), tokenizer, args,
                                               False, None, "lint")
    finally:
        if progress:
            datasets.enable_progress_bars()
    return [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in prepared]


def _last_content_token(tokenizer, ids: list[int]) -> int:
    for t in reversed(ids):
        if tokenizer.decode([t]).strip():
            return t
    return ids[-1]


def _round_up(n: int) -> int:
    size = 1024
    while size < n:
        size *= 2
    return size


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n // 2] + f"\n… [{len(text) - n} chars] …\n" + text[-n // 2:]
