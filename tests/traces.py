"""Realistic long reasoning traces for filter tests, written here from the
GSM8K test problems (MIT, Copyright (c) 2021 OpenAI) with one planted defect each.

`planted_run(dir)` writes a generate-shaped run (the real row schema, in two shards)
and returns {sample_id: expected (filter, reason substring) or None when it must be kept}.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from conftest import GSM8K_TEST, MATH500_TEST
from curate.schema import GENERATION_SCHEMA
from curate.store import RunStore


def gsm8k(n: int, start: int = 100) -> list[dict]:
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()[start:start + n]]
    for r in rows:
        steps, _, final = r["answer"].rpartition("####")
        r["steps"], r["final"] = steps.strip(), final.strip()
    return rows


def long_trace(problem: str, steps: str, final: str, extra: str = "") -> str:
    """A few thousand characters of R1-style thinking, then a summary with the boxed answer."""
    lines = [s for s in steps.splitlines() if s.strip()]
    body = "\n\n".join([
        f"Okay, let me read the problem carefully. {problem}",
        "First, I need to figure out what quantities are given and what is being asked. "
        "Let me go through it step by step and keep track of every number.",
        *[f"Step {i + 1}: {line.replace('<<', '(').replace('>>', ')')}" for i, line in enumerate(lines)],
        extra,
        f"Wait, let me double-check this. Going back over each step: {' '.join(lines)} "
        f"Every step follows from the one before, so the result should be {final}.",
        "Let me also sanity-check the size of the answer. It is a whole number and it is plausible "
        "for the situation described, so I am fairly confident.",
    ])
    return (f"<think>\n{body}\n</think>\n\nWorking through the quantities step by step gives {final}.\n\n"
            f"The answer is \\boxed{{{final}}}.")


def planted_rows() -> tuple[list[dict], dict]:
    base = gsm8k(14)
    rows, expect = [], {}

    def add(i, completion, expected, finish="stop", problem=None, like=None):
        r = base[like if like is not None else i]
        pid = f"gsm-{i:02d}"
        sid = f"{pid}:teacher:0"
        rows.append({"problem_id": pid, "sample_index": 0, "sample_id": sid, "source": "gsm8k", "domain": "math",
                     "problem": problem or r["question"], "reference_answer": r["final"], "tests": None,
                     "template": "reasoning_chat", "template_sha": "0" * 64, "prompt": "[]", "model": "teacher",
                     "backend": "vllm", "sampling": "{}", "completion": completion, "reasoning": None, "answer": None,
                     "final_answer": None, "finish_reason": finish, "prompt_tokens": 100,
                     "completion_tokens": len(completion) // 4, "error": None, "extra": "{}"})
        expect[sid] = expected

    def trace(i, **kw):
        r = base[i]
        return long_trace(r["question"], r["steps"], kw.pop("final", r["final"]), **kw)

    add(0, trace(0), None)
    add(1, trace(1), None)
    add(2, trace(2, final=str(int(float(base[2]["final"].replace(",", ""))) + 7)), ("math", "wrong answer"))
    add(3, trace(3)[: len(trace(3)) // 2], ("length", "truncated"), finish="length")
    add(4, trace(4).replace("<think>\n", "").replace("</think>", ""), ("format", "no <think> block"))
    add(5, trace(5, extra="首先，我们需要把所有的数量加起来，然后再检查一遍结果是否正确。"),
        ("language", "foreign sentence (zh"))
    add(6, trace(6, extra="Теперь нужно внимательно проверить каждый шаг этого решения ещё раз."),
        ("language", "foreign sentence (ru"))
    add(7, trace(7, extra="I keep going around in circles here.\n" * 60), ("readability", ""))
    add(8, trace(8, extra="```python\ntotal = 0\nfor x in range(10):\n    total += x\nprint(total)\n```"),
        ("readability", "code"))
    # a near-duplicate of row 0's trace: the same problem's trace with a few words edited
    add(9, trace(0).replace("Okay, let me read", "Alright, let me read").replace("fairly confident", "quite confident"),
        ("dedup", "near duplicate"), like=0)
    add(10, trace(1), ("dedup", "exact duplicate"), like=1)
    # a MATH-500 problem with a small edit: contaminated
    math500 = json.loads(MATH500_TEST.read_text().splitlines()[0])
    add(11, trace(11), ("decontam", "MATH-500"), problem="Please solve: " + math500["problem"])
    add(12, trace(12).replace(f"\\boxed{{{base[12]['final']}}}", f"\\boxed{{{base[12]['final']}.0}}"), None)
    add(13, trace(13), None)
    return rows, expect


def planted_run(root: Path) -> dict:
    rows, expect = planted_rows()
    store = RunStore(root, "generate")
    store.open(overwrite=False)
    half = len(rows) // 2
    for chunk in (rows[:half], rows[half:]):
        store.write_shard(pa.Table.from_pylist(chunk, schema=GENERATION_SCHEMA))
    store.write_manifest({"config": {}, "status": "complete"})
    store.close()
    return expect
