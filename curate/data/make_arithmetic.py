"""Write `arithmetic.jsonl`: one- and two-step arithmetic word problems with their answers,
with small numbers, so that the embedded SmolLM2-135M-Instruct solves part of them (the demo's
problem set: `make demo`). Seeded, so the file is reproducible:

    python -m curate.data.make_arithmetic [--n 30] [--seed 0] [--out curate/data/arithmetic.jsonl]

Each line: `question`, `answer` (an integer, as text), `steps` (1 or 2).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

NAMES = ["Ana", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jack", "Kofi", "Lena", "Mia",
         "Noah", "Omar", "Priya", "Sam", "Tara", "Umar", "Vera"]
THINGS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "shells", "cards", "balloons"]


def one_step(r: random.Random, name: str, thing: str) -> tuple[str, int]:
    a, b = r.randint(2, 9), r.randint(1, 5)
    kind = r.choice(["add", "add", "sub", "sub", "mul", "div"])
    if kind == "add":
        return f"{name} has {a} {thing}. {name} gets {b} more {thing}. How many {thing} does {name} have now?", a + b
    if kind == "sub":
        a = r.randint(b + 1, 9)
        return f"{name} has {a} {thing} and gives {b} of them away. How many {thing} does {name} have left?", a - b
    if kind == "mul":
        a = r.randint(2, 4)
        return f"There are {a} bags with {b} {thing} in each bag. How many {thing} are there in total?", a * b
    a = r.randint(2, 4)
    return f"{name} shares {a * b} {thing} equally among {b} friends. How many {thing} does each friend get?", a


def two_step(r: random.Random, name: str, thing: str) -> tuple[str, int]:
    kind = r.choice(["add_sub", "mul_add", "twice", "change"])
    if kind == "add_sub":
        a, b = r.randint(2, 6), r.randint(1, 3)
        c = r.randint(1, a)
        return (f"{name} has {a} {thing}, gets {b} more, and then gives {c} away. "
                f"How many {thing} does {name} have now?", a + b - c)
    if kind == "mul_add":
        a, b, c = 2, r.randint(2, 4), r.randint(1, 3)
        return (f"{name} buys {a} packs of {thing} with {b} {thing} in each pack, and already had {c} {thing}. "
                f"How many {thing} does {name} have in total?", a * b + c)
    if kind == "twice":
        a = r.randint(2, 5)
        return (f"{name} collects {a} {thing} on Monday and twice as many on Tuesday. "
                f"How many {thing} does {name} collect on the two days together?", 3 * a)
    price, k = r.randint(2, 3), 2
    paid = 10
    return (f"{thing.capitalize()} cost {price} dollars each. {name} buys {k} {thing} and pays with a {paid}-dollar note. "
            f"How many dollars of change does {name} get?", paid - price * k)


def problems(n: int, seed: int) -> list[dict]:
    """n problems, alternately one- and two-step, no question twice."""
    r = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        steps = 1 + len(out) % 2
        question, answer = (one_step if steps == 1 else two_step)(r, r.choice(NAMES), r.choice(THINGS))
        if question not in seen:
            seen.add(question)
            out.append({"question": question, "answer": str(answer), "steps": steps})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("arithmetic.jsonl")))
    args = ap.parse_args()
    rows = problems(args.n, args.seed)
    Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{args.out}: {len(rows)} problems")


if __name__ == "__main__":
    main()
