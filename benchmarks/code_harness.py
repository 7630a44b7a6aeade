"""Per-sample and per-test cost of the code verifier (`verify_code`): an assert-mode
solution with 1, 10, 100 and 1000 asserts, and a stdio program with 1 and 10 cases.

    python benchmarks/code_harness.py [--rounds 5]

Prints one line per case: median wall seconds per sample, and the per-test slope
between the smallest and the largest case of each mode."""

from __future__ import annotations

import argparse
import json
import statistics
import time

from curate.filters import sandbox
from curate.filters.code import verify_code

SOLUTION = "</think>\n```python\ndef f(x):\n    return x + 1\n```\n"
ADD = "</think>\n```python\na, b = map(int, input().split())\nprint(a + b)\n```\n"


def asserts(n: int) -> str:
    return json.dumps({"type": "assert", "code": "\n".join(f"assert f({i}) == {i + 1}" for i in range(n))})


def stdio(n: int) -> str:
    return json.dumps({"type": "stdio", "cases": [{"input": f"{i} 1\n", "output": f"{i + 1}\n"} for i in range(n)]})


def median_wall(tests: str, completion: str, rounds: int) -> float:
    walls = []
    for _ in range(rounds):
        start = time.perf_counter()
        verdict = verify_code(tests, completion, timeout=30)
        walls.append(time.perf_counter() - start)
        assert verdict.status == "passed", verdict
    return statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    print(f"isolation: {sandbox.isolation()}")
    for mode, make, completion, sizes in (("assert", asserts, SOLUTION, (1, 10, 100, 1000)),
                                          ("stdio", stdio, ADD, (1, 10))):
        walls = {n: median_wall(make(n), completion, rounds) for n in sizes}
        for n, wall in walls.items():
            print(f"{mode:6} {n:5} tests: {wall * 1000:8.1f} ms per sample")
        lo, hi = sizes[0], sizes[-1]
        print(f"{mode:6} per-test slope: {(walls[hi] - walls[lo]) / (hi - lo) * 1000:.3f} ms")


if __name__ == "__main__":
    main()
