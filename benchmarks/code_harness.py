"""Per-sample and per-test cost of the code verifier (`verify_code`), and how many of
the reward hacks in tests/test_reward_hacks.py it lets through, optionally side by side
with the verifier of another git revision (rounds interleaved, so machine load hits
both alike).

    python benchmarks/code_harness.py [--rounds 5] [--baseline REV]

Cases: an assert-mode solution with 1, 10, 100 and 1000 asserts; a stdio program with
1, 10 and 40 cases. Prints the median wall seconds per sample, the per-test slope
between the smallest and the largest case of each mode, and the forged passes."""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from curate.filters import sandbox
from curate.filters.code import verify_code

REPO = Path(__file__).resolve().parent.parent
SOLUTION = "</think>\n```python\ndef f(x):\n    return x + 1\n```\n"
ADD = "</think>\n```python\na, b = map(int, input().split())\nprint(a + b)\n```\n"


def asserts(n: int) -> str:
    return json.dumps({"type": "assert", "code": "\n".join(f"assert f({i}) == {i + 1}" for i in range(n))})


def stdio(n: int) -> str:
    return json.dumps({"type": "stdio", "cases": [{"input": f"{i} 1\n", "output": f"{i + 1}\n"} for i in range(n)]})


CASES = [("assert", n, asserts(n), SOLUTION) for n in (1, 10, 100, 1000)]
CASES += [("stdio", n, stdio(n), ADD) for n in (1, 10, 40)]


def load_revision(rev: str):
    """verify_code as of git revision `rev` (its code.py, importing its own sandbox.py)."""
    folder = Path(tempfile.mkdtemp(prefix="code-harness-baseline-"))
    for name in ("sandbox", "code"):
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:filters/{name}.py"], check=True,
                              capture_output=True, text=True).stdout
        text = text.replace("from curate.filters import sandbox", "import baseline_sandbox as sandbox")
        (folder / f"baseline_{name}.py").write_text(text)
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("baseline_code", folder / "baseline_code.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.verify_code


def forged_passes(verify) -> tuple[int, int]:
    sys.path.insert(0, str(REPO / "tests"))
    import test_reward_hacks as hacks

    runs = [(hacks.ASSERTS, code) for code, _, _ in hacks.HACKS.values()]
    runs += [(hacks.STDIO, code) for code, _, _ in hacks.STDIO_HACKS.values()]
    return sum(verify(tests, hacks.solution(code), timeout=10).keep for tests, code in runs), len(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="a git revision to compare with")
    args = parser.parse_args()
    verifiers = {"this": verify_code}
    if args.baseline:
        verifiers[args.baseline] = load_revision(args.baseline)
    print(f"isolation: {sandbox.isolation()}")
    walls = {(name, mode, n): [] for name in verifiers for mode, n, _, _ in CASES}
    for _ in range(args.rounds):
        for mode, n, tests, completion in CASES:
            for name, verify in verifiers.items():
                start = time.perf_counter()
                verdict = verify(tests, completion, timeout=60)
                walls[name, mode, n].append(time.perf_counter() - start)
                assert verdict.status == "passed", (name, verdict)
    for mode in ("assert", "stdio"):
        sizes = [n for m, n, _, _ in CASES if m == mode]
        for n in sizes:
            cells = [f"{name}: {statistics.median(walls[name, mode, n]) * 1000:8.1f} ms" for name in verifiers]
            print(f"{mode:6} {n:5} tests  " + "  ".join(cells))
        lo, hi = sizes[0], sizes[-1]
        slopes = []
        for name in verifiers:
            slope = (statistics.median(walls[name, mode, hi]) - statistics.median(walls[name, mode, lo])) / (hi - lo)
            slopes.append(f"{name}: {slope * 1000:.2f} ms")
        print(f"{mode:6} per-test slope  " + "  ".join(slopes))
    if sandbox.isolation() == "none":
        print("reward hacks: not run (no sandbox here: hostile code would act on this machine)")
        return
    for name, verify in verifiers.items():
        forged, total = forged_passes(verify)
        print(f"reward hacks passed by {name}: {forged}/{total}")


if __name__ == "__main__":
    main()
