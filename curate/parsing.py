"""Split a completion into reasoning, answer and final answer.

Handles what teachers actually emit:
- `<think>…</think> answer` (DeepSeek-R1 and its distillations);
- a template that prefills `<think>`: the completion starts inside the block and has
  only the closing tag;
- an unclosed `<think>` (the generation hit max_tokens): all of it is reasoning, and
  there is no answer;
- `<|begin_of_thought|>…<|end_of_thought|> <|begin_of_solution|>…<|end_of_solution|>`
  (Sky-T1, OpenThoughts, Bespoke-Stratos);
- R1-Zero's `<think>…</think> <answer>…</answer>`: the answer is inside the tags.

final_answer is the last `\\boxed{…}` (or `\\fbox{…}`) of the answer part, with nested
braces; failing that, the text inside R1-Zero `<answer>` tags; else None.
"""

from __future__ import annotations

import re
from typing import NamedTuple

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
THOUGHT = ("<|begin_of_thought|>", "<|end_of_thought|>")
SOLUTION = ("<|begin_of_solution|>", "<|end_of_solution|>")
ANSWER_TAGS = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S)


class Parsed(NamedTuple):
    reasoning: str | None
    answer: str | None
    final_answer: str | None


def parse_completion(text: str | None, prefill: str = "") -> Parsed:
    """`prefill` is what the prompt already put in the assistant turn (e.g. "<think>\\n")."""
    if text is None:
        return Parsed(None, None, None)
    reasoning, answer = _split(text, prefill)
    if answer is None:
        return Parsed(reasoning, None, None)
    tagged = ANSWER_TAGS.search(answer)
    if tagged:
        answer = tagged.group(1).strip()
    final = last_boxed(answer)
    if final is None and tagged:
        final = answer or None
    return Parsed(reasoning, answer, final)


def _split(text: str, prefill: str) -> tuple[str | None, str | None]:
    opened_by_prefill = THINK_OPEN in prefill and THINK_CLOSE not in prefill
    if THOUGHT[0] in text or THOUGHT[1] in text:
        head, sep, tail = text.partition(THOUGHT[1])
        reasoning = head.split(THOUGHT[0], 1)[-1].strip()
        if not sep:
            return reasoning, None
        solution = tail.split(SOLUTION[0], 1)[-1].split(SOLUTION[1], 1)[0]
        return reasoning, solution.strip()
    if THINK_CLOSE in text:
        head, _, tail = text.partition(THINK_CLOSE)
        reasoning = head.split(THINK_OPEN, 1)[-1] if THINK_OPEN in head else head
        return reasoning.strip(), tail.strip()
    if THINK_OPEN in text:  # opened, never closed: truncated
        return text.split(THINK_OPEN, 1)[1].strip(), None
    if opened_by_prefill:  # the prompt opened the block and the model never closed it
        return text.strip(), None
    return None, text.strip()


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{…} or \\fbox{…}, braces balanced; None if absent."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    while start >= 0:
        i = text.find("{", start)
        between = text[start:i] if i >= 0 else ""
        if i >= 0 and re.fullmatch(r"\\(boxed|fbox)\s*", between):
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
        # `\boxed 5` (no brace) or unbalanced: look further back
        start = max(text.rfind("\\boxed", 0, start), text.rfind("\\fbox", 0, start))
    return None
