"""Write the trace-layout fixtures of tests/data/formats from GSM8K test problems
(curate/data/gsm8k_test.jsonl; MIT, Copyright (c) 2021 OpenAI). Seeded: rerunning it
gives the same bytes. Run from the repository root:

    python tests/data/formats/make_fixtures.py

Each small file holds 8 traces in one layout: 5 clean and correct, 2 truncated (no
finish_reason), 1 wrong. skyt1_100.jsonl holds 100 traces in the Sky-T1 form: 80 clean,
10 truncated with no finish_reason, 10 wrong.
"""

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
GSM8K = HERE.parents[2] / "curate" / "data" / "gsm8k_test.jsonl"
SYSTEM = ("Your role as an assistant involves thoroughly exploring questions through a systematic long thinking "
          "process before providing the final precise and accurate solutions.")
OPENERS = ["Okay, let me work through this problem step by step.", "Alright, let me read the question carefully.",
           "Let me think about what the question is asking.", "First, I need to understand what is given."]
CHECKS = ["Let me double-check that calculation to be sure.", "Let me verify this by going over the steps again.",
          "Before answering, I should check each step once more."]
CLOSERS = ["Everything is consistent, so I am confident in the result.", "The numbers check out.",
           "That matches what I found before."]


def problems() -> list[tuple[str, str, str, list[str]]]:
    """(question, gsm8k answer text, final number, worked steps) for every GSM8K test problem."""
    out = []
    for line in GSM8K.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        work, _, final = r["answer"].rpartition("####")
        steps = [re.sub(r"<<[^>]*>>", "", s).strip() for s in work.strip().splitlines() if s.strip()]
        out.append((r["question"], r["answer"], final.strip().replace(",", ""), steps))
    return out


def reasoning(steps: list[str], final: str, rng: random.Random) -> str:
    """A plain long-CoT reasoning text around the worked steps."""
    parts = [rng.choice(OPENERS)]
    for i, step in enumerate(steps):
        lead = "So" if i else "To start,"
        parts.append(f"{lead} {step[0].lower()}{step[1:]}")
    parts.append(rng.choice(CHECKS))
    parts.append(" ".join(steps[-1:]) + f" Yes, that gives {final}.")
    parts.append(f"{rng.choice(CLOSERS)} The final answer is {final}.")
    return "\n\n".join(parts)


def cut(text: str) -> str:
    """The text cut off mid-sentence, as a generation that hit max_tokens."""
    words = text.split(" ")
    return " ".join(words[: max(3, len(words) * 2 // 3)])


def thought(r: str, answer: str, kind: str) -> str:
    if kind == "truncated":
        return f"<|begin_of_thought|>\n\n{cut(r)}"
    solution = f"The total is {answer}.\n\nTherefore, the answer is $\\boxed{{{answer}}}$."
    return (f"<|begin_of_thought|>\n\n{r}\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n{solution}\n\n"
            "<|end_of_solution|>")


def think(r: str, answer: str, kind: str, open_tag: bool = True) -> str:
    head = "<think>\n" if open_tag else ""
    if kind == "truncated":
        return f"{head}{cut(r)}"
    return f"{head}{r}\n</think>\n\nThe answer is $\\boxed{{{answer}}}$."


def kinds(n: int, truncated: int, wrong: int, rng: random.Random) -> list[str]:
    labels = ["truncated"] * truncated + ["wrong"] * wrong + ["clean"] * (n - truncated - wrong)
    rng.shuffle(labels)
    return labels


def layout_rows(name: str, items, rng: random.Random) -> list[dict]:
    rows = []
    for (question, gold_text, final, steps), kind in zip(items, kinds(len(items), 2, 1, rng)):
        shown = str(int(final) + 7) if kind == "wrong" else final
        r = reasoning(steps, shown, rng)
        if name == "skyt1":
            rows.append({"system": SYSTEM, "conversations": [
                {"from": "user", "value": question}, {"from": "assistant", "value": thought(r, shown, kind)}],
                "answer": final})
        elif name == "openthoughts_sharegpt":
            rows.append({"conversations": [
                {"from": "system", "value": SYSTEM}, {"from": "human", "value": question},
                {"from": "gpt", "value": thought(r, shown, kind)}], "reference_answer": final})
        elif name == "messages":
            rows.append({"messages": [
                {"role": "system", "content": "You are a careful maths tutor."}, {"role": "user", "content": question},
                {"role": "assistant", "content": think(r, shown, kind)}], "answer": gold_text})
        elif name == "reasoning_content":
            content = None if kind == "truncated" else f"The answer is $\\boxed{{{shown}}}$."
            rows.append({"problem": question, "reasoning_content": cut(r) if kind == "truncated" else r,
                         "completion": content, "finish_reason": "length" if kind == "truncated" else "stop",
                         "final_answer": final})
        elif name == "r1_zero":
            text = (f"<think>\n{cut(r)}" if kind == "truncated"
                    else f"<think>\n{r}\n</think>\n<answer>{shown}</answer>")
            rows.append({"question": question, "response": text, "answer": gold_text})
        elif name == "prefilled_think":
            rows.append({"problem": question, "completion": think(r, shown, kind, open_tag=False),
                         "answer": final})
    return rows


LAYOUTS = ("skyt1", "openthoughts_sharegpt", "messages", "reasoning_content", "r1_zero", "prefilled_think")


def main() -> None:
    rng = random.Random(10)
    pool = problems()
    order = rng.sample(range(len(pool)), 100 + 8 * len(LAYOUTS))
    for i, name in enumerate(LAYOUTS):
        items = [pool[j] for j in order[100 + 8 * i: 108 + 8 * i]]
        write(HERE / f"{name}.jsonl", layout_rows(name, items, rng))
    rows = []
    for j, kind in zip(order[:100], kinds(100, 10, 10, rng)):
        question, _, final, steps = pool[j]
        shown = str(int(final) + 7) if kind == "wrong" else final
        rows.append({"system": SYSTEM, "conversations": [
            {"from": "user", "value": question},
            {"from": "assistant", "value": thought(reasoning(steps, shown, rng), shown, kind)}],
            "answer": final, "kind": kind})
    write(HERE / "skyt1_100.jsonl", rows)


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
