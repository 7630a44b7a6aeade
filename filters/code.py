"""Code correctness: run the model's final code block against the row's tests, in the
sandbox (curate.filters.sandbox).

The code is the last fenced block of the answer (the part after `</think>`), preferring
```python blocks. The tests are the row's `tests` column, JSON in one of two forms:

- asserts: `{"type": "assert", "code": "assert f(1) == 2\\n..."}` or a list of assert
  strings. The solution and the asserts run as one program; every top-level statement
  of the test code that is not an import/def/class/assignment counts as one case, so a
  wrong answer reads "failed 2/5 tests".
- stdio: `{"type": "stdio", "cases": [{"input": "...", "output": "..."}]}`. The program
  runs once per case with the input on stdin; stdout must equal the output, comparing
  line by line with trailing whitespace (and trailing blank lines) removed.

`verify_code(tests, completion) -> CodeVerdict` is the pure per-row verifier (reused as
the GRPO code reward); `Code` is the batch filter, running rows in a thread pool (each
case is its own subprocess, so threads are enough). The sandbox's isolation level
(bwrap, unshare or none) goes to the run's manifest.

The assert harness reports its count on stdout behind a per-run random nonce, and
catches a solution that calls `sys.exit()` before the tests run. A solution that
reads its own source file (which holds the nonce) could still forge the count; the
sandbox keeps it from doing anything worse than that.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from curate.errors import CurateError
from curate.filters import sandbox
from curate.filters.base import Decision, RowFilter, Verdict
from curate.parsing import parse_completion

FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.S)
PYTHON_TAGS = {"python", "py", "python3", "py3"}
SETUP_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
               ast.AnnAssign)


class CodeVerdict(Verdict):
    """verify_code's Verdict: keep when every test passed; the reason a short detail
    ("failed 2/5 tests", "runtime error: NameError: ...", "no code block"); scores
    `code_status`, `code_passed`, `code_total`, read as `.status`, `.passed`, `.total`.
    `.isolation` is the sandbox's ("bwrap" | "unshare" | "none")."""

    def __init__(self, status: str, passed: int, total: int, isolation: str, reason: str | None = None):
        # status: "passed" | "failed" | "no_code" | "no_tests" | "timeout" | "error" | "output_limit"
        super().__init__(status == "passed", None if status == "passed" else reason,
                         {"code_status": status, "code_passed": passed, "code_total": total})
        object.__setattr__(self, "isolation", isolation)

    @property
    def status(self) -> str:
        return self.scores["code_status"]

    @property
    def passed(self) -> int:
        return self.scores["code_passed"]

    @property
    def total(self) -> int:
        return self.scores["code_total"]


def verify_code(
    tests_json: str | None,
    completion: str | None,
    *,
    timeout: float = 5.0,
    memory_mb: int = 512,
) -> CodeVerdict:
    """Run the completion's final code block against the tests; never raises for
    anything the code does."""
    mode = sandbox.isolation()
    tests = parse_tests(tests_json)
    if tests is None:
        return CodeVerdict("no_tests", 0, 0, mode, "no tests")
    code = extract_code(parse_completion(completion).answer)
    if code is None:
        return CodeVerdict("no_code", 0, 0, mode, "no code block")
    limits = dict(timeout=timeout, memory_mb=memory_mb)
    if tests["type"] == "stdio":
        return _run_stdio(code, tests["cases"], limits, mode)
    return _run_asserts(code, tests["code"], limits, mode)


def extract_code(answer: str | None) -> str | None:
    """The last ```python block of the answer, else its last fenced block, else None."""
    if not answer:
        return None
    blocks = [(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(answer)]
    python = [body for tag, body in blocks if tag in PYTHON_TAGS]
    chosen = python[-1] if python else (blocks[-1][1] if blocks else None)
    return chosen if chosen and chosen.strip() else None


def parse_tests(tests_json: str | None) -> dict | None:
    """Normalise the tests column to {"type": "assert", "code": str} or
    {"type": "stdio", "cases": [{"input", "output"}]}; None when absent or unreadable."""
    if not tests_json or not tests_json.strip():
        return None
    try:
        tests = json.loads(tests_json)
    except json.JSONDecodeError:
        return None
    if isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests):
        return {"type": "assert", "code": "\n".join(tests)}
    if not isinstance(tests, dict):
        return None
    if tests.get("type") == "assert" and isinstance(tests.get("code"), str) and tests["code"].strip():
        return {"type": "assert", "code": tests["code"]}
    cases = tests.get("cases")
    if tests.get("type") == "stdio" and isinstance(cases, list) and cases:
        if all(isinstance(c, dict) and isinstance(c.get("output"), str) for c in cases):
            return {"type": "stdio", "cases": [{"input": c.get("input") or "", "output": c["output"]} for c in cases]}
    return None


def _run_asserts(code: str, test_code: str, limits: dict, mode: str) -> CodeVerdict:
    """One program: the solution, then each test statement, counting the passes."""
    try:
        statements = ast.parse(test_code).body
    except SyntaxError:
        return CodeVerdict("error", 0, 0, mode, "the tests do not parse")
    steps = [(ast.get_source_segment(test_code, s) or ast.unparse(s), not isinstance(s, SETUP_NODES))
             for s in statements]
    total = sum(is_case for _, is_case in steps)
    nonce = secrets.token_hex(16)
    result = sandbox.run_untrusted(_harness(code, steps, nonce), **limits)
    found = re.search(rf"^{nonce} (passed|solution|setup) (\d+) (.*)$", result.stdout, re.M)
    if result.status in ("timeout", "output_limit"):
        return CodeVerdict(result.status, 0, total, mode, result.status.replace("_", " "))
    if found is None or found.group(1) != "passed":
        last = found.group(3) if found else _last_line(result.stderr) or f"exit status {result.returncode}"
        return CodeVerdict("error", 0, total, mode, f"runtime error: {last}"[:200])
    passed = int(found.group(2))
    if passed == total:
        return CodeVerdict("passed", passed, total, mode)
    return CodeVerdict("failed", passed, total, mode, f"failed {total - passed}/{total} tests")


def _harness(code: str, steps: list[tuple[str, bool]], nonce: str) -> str:
    """The assert program. The solution runs with __name__ != "__main__" (its own demo
    code stays quiet); SystemExit from it counts as an error, not a pass."""
    return f"""\
import os as _os, sys as _sys
_g = {{"__name__": "solution", "__builtins__": __builtins__}}
def _report(kind, n, text):
    _os.write(1, ("\\n{nonce} %s %d %s\\n" % (kind, n, text.replace("\\n", " ")[:150])).encode())
try:
    exec(compile({code!r}, "solution.py", "exec"), _g)
except BaseException as e:
    _report("solution", 0, "%s: %s" % (type(e).__name__, e))
    _os._exit(1)
_passed = 0
for _src, _is_case in {steps!r}:
    try:
        exec(compile(_src, "tests.py", "exec"), _g)
        _passed += _is_case
    except BaseException as e:
        if not _is_case:
            _report("setup", 0, "%s: %s" % (type(e).__name__, e))
            _os._exit(1)
_sys.stdout.flush()
_report("passed", _passed, "")
_os._exit(0)
"""


def _run_stdio(code: str, cases: list[dict], limits: dict, mode: str) -> CodeVerdict:
    """One run per case; stop at the first timeout, output overflow or crash."""
    total, passed = len(cases), 0
    for case in cases:
        result = sandbox.run_untrusted(code, stdin=case["input"], **limits)
        if result.status in ("timeout", "output_limit"):
            return CodeVerdict(result.status, passed, total, mode, result.status.replace("_", " "))
        if result.status != "ok":
            last = _last_line(result.stderr) or f"exit status {result.returncode}"
            return CodeVerdict("error", passed, total, mode, f"runtime error: {last}"[:200])
        passed += _normalise(result.stdout) == _normalise(case["output"])
    if passed == total:
        return CodeVerdict("passed", passed, total, mode)
    return CodeVerdict("failed", passed, total, mode, f"failed {total - passed}/{total} tests")


def _normalise(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


class Code(RowFilter):
    """Keep rows whose final code block passes every test of the row."""

    name = "code"
    needs = ("completion", "tests")
    scores = {"code_status": pl.String, "code_passed": pl.Int64, "code_total": pl.Int64}

    def __init__(self, workers: int = 2, timeout: float = 5.0, memory_mb: int = 512, require_isolation: bool = False):
        self.workers = self.param("workers", workers, int, minimum=1)
        self.timeout = self.param("timeout", timeout, float, minimum=0.1)
        self.memory_mb = self.param("memory_mb", memory_mb, int, minimum=64)
        self.require_isolation = self.param("require_isolation", require_isolation, bool)
        if self.require_isolation and self.isolation == "none":
            raise CurateError(
                "filter code: require_isolation is set, but neither bubblewrap nor unshare "
                "can isolate the untrusted code here (install bubblewrap, or allow user namespaces)"
            )

    @property
    def isolation(self) -> str:
        """How the code is contained here ("bwrap" | "unshare" | "none"), for the manifest."""
        return sandbox.isolation()

    def manifest_info(self) -> dict:
        return {"isolation": self.isolation}

    def verify(self, row: dict) -> Verdict:
        return verify_code(row["tests"], row["completion"], timeout=self.timeout, memory_mb=self.memory_mb)

    def __call__(self, batch: pl.DataFrame) -> Decision:
        with ThreadPoolExecutor(self.workers) as pool:
            return self.decide(list(pool.map(self.verify, self.rows(batch))))
