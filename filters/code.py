"""Code correctness: run the model's final code block against the row's tests, in the
sandbox (curate.filters.sandbox).

The code is the last fenced block of the answer (the part after `</think>`), preferring
```python blocks. The tests are the row's `tests` column, JSON in one of two forms:

- asserts: `{"type": "assert", "code": "assert f(1) == 2\\n..."}` or a list of assert
  strings. Every top-level statement of the test code that is not an import/def/class/
  assignment counts as one case, so a wrong answer reads "failed 2/5 tests".
- stdio: `{"type": "stdio", "cases": [{"input": "...", "output": "..."}]}`. The program
  runs once per case with the input on stdin; stdout must equal the output, comparing
  line by line with trailing whitespace (and trailing blank lines) removed.

`verify_code(tests, completion) -> CodeVerdict` is the pure per-row verifier (reused as
the GRPO code reward); `Code` is the batch filter, running rows in a thread pool (the
work is in sandboxed subprocesses, so threads are enough). The sandbox's isolation
level (bwrap, unshare or none) goes to the run's manifest.

Cascade mode (`code: {mode: cascade, judge: {...}}`, `code_cascade`): a stdio sample
that ran cleanly on every case but whose output differs from the expected one on a few
cases ("0.500000" for "0.5", "Yes" for "YES", another valid answer) goes to an LLM judge
(filters/judge.py, prompts/judge_code_output.jinja), one question per mismatching case;
it passes only when every one is judged acceptable. Timeouts, crashes, output
overflows and assert-mode failures stay the rules' to decide. The judge sees outputs,
never runs code: an output much longer than the expected one, or holding a verdict
marker, is never sent (docs/ARCHITECTURE.md, "Verification you can trust").

The count cannot be forged by the solution (docs/ARCHITECTURE.md, "The code verifier's
trust boundary"): in assert mode the solution runs in one sandbox and the tests in
another (the checker, `sandbox.run_with_checker`); the checker calls the solution's
functions over a pipe, values come back as plain data of exact builtin types (never an
object whose `__eq__` the solution wrote), expected values never cross to the
solution, and the report is the checker's alone. In stdio mode the host compares the
captured stdout itself.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import polars as pl

from curate.errors import CurateError
from curate.filters import sandbox
from curate.filters.base import Decision, ParamError, RowFilter, Verdict
from curate.filters.judge import JUDGE_SCORES, VERDICT, Judge, Judged, cascade, cascade_judge
from curate.parsing import parse_completion

FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.S)
PYTHON_TAGS = {"python", "py", "python3", "py3"}
SETUP_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
               ast.AnnAssign)
# what a judge is shown (code_questions): at most JUDGE_CASES mismatching cases per sample;
# an expected or actual output over JUDGED_CHARS, or an output over LENGTH_RATIO times the
# expected one (+ LENGTH_SLACK characters), is not sent at all; the input and the problem
# are context, cut to INPUT_CHARS and PROBLEM_CHARS
JUDGE_CASES = 3
JUDGED_CHARS = 2000
LENGTH_RATIO, LENGTH_SLACK = 4, 16
INPUT_CHARS, PROBLEM_CHARS = 1000, 6000


class CaseRun(NamedTuple):
    """One stdio case as it ran: its input and expected output, the program's stdout
    (its first JUDGED_CHARS + 1 characters) and that stdout's whole length."""

    input: str
    expected: str
    output: str
    output_chars: int


class CodeVerdict(Verdict):
    """verify_code's Verdict: keep when every test passed; the reason a short detail
    ("failed 2/5 tests", "runtime error: NameError: ...", "no code block"); scores
    `code_status`, `code_passed`, `code_total`, read as `.status`, `.passed`, `.total`.
    `.isolation` is the sandbox's ("bwrap" | "unshare" | "none"). `.runs`: stdio cases
    kept for a judge (verify_code's `keep_runs`), else empty."""

    def __init__(self, status: str, passed: int, total: int, isolation: str, reason: str | None = None,
                 runs: tuple[CaseRun, ...] = ()):
        # status: "passed" | "failed" | "no_code" | "no_tests" | "timeout" | "error" | "output_limit"
        super().__init__(status == "passed", None if status == "passed" else reason,
                         {"code_status": status, "code_passed": passed, "code_total": total})
        object.__setattr__(self, "isolation", isolation)
        object.__setattr__(self, "runs", runs)

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
    keep_runs: int = 0,
) -> CodeVerdict:
    """Run the completion's final code block against the tests; never raises for
    anything the code does. `keep_runs`: in stdio mode, keep that many cases in `.runs`
    for a judge (the first mismatching ones; those of a passing program, the first ones)."""
    mode = sandbox.isolation()
    tests = parse_tests(tests_json)
    if tests is None:
        return CodeVerdict("no_tests", 0, 0, mode, "no tests")
    code = extract_code(parse_completion(completion).answer)
    if code is None:
        return CodeVerdict("no_code", 0, 0, mode, "no code block")
    limits = dict(timeout=timeout, memory_mb=memory_mb)
    if tests["type"] == "stdio":
        return _run_stdio(code, tests["cases"], limits, mode, keep_runs)
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
    """The solution in one sandbox, the tests in another (the checker), joined only by
    a pipe of plain data; the checker's report is the count."""
    try:
        tree = ast.parse(test_code)
    except SyntaxError:
        return CodeVerdict("error", 0, 0, mode, "the tests do not parse")
    steps = [(source, not isinstance(s, SETUP_NODES)) for s, source in zip(tree.body, _sources(test_code, tree.body))]
    total = sum(is_case for _, is_case in steps)
    # The names the tests read come from the solution, unless the tests define them (their
    # definitions run later and win) or they are builtins. A builtin the tests read and
    # never define themselves (`abs`, `sorted`) must stay the builtin: a solution that
    # redefines one is an error ("guarded").
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    stored |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    stored |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    stored |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
               for a in n.names}
    guarded = {name for name in loaded - stored if hasattr(builtins, name)}
    settings = (steps, sorted(loaded), sorted(guarded))
    checker = CHECKER.replace("STEPS = WANTED = GUARDED = None", f"STEPS, WANTED, GUARDED = {settings!r}")
    report, solution = sandbox.run_with_checker(SERVER + f"serve({code!r})\n", checker, **limits)
    if report.status in ("timeout", "output_limit"):
        return CodeVerdict(report.status, 0, total, mode, report.status.replace("_", " "))
    try:
        kind, passed, text = json.loads(report.stdout)
    except (ValueError, TypeError):
        last = _last_line(report.stderr) or _last_line(solution.stderr) or f"exit status {report.returncode}"
        return CodeVerdict("error", 0, total, mode, f"runtime error: {last}"[:200])
    if kind != "passed":
        return CodeVerdict("error", 0, total, mode, f"runtime error: {text}"[:200])
    if passed == total:
        return CodeVerdict("passed", passed, total, mode)
    return CodeVerdict("failed", passed, total, mode, f"failed {total - passed}/{total} tests")


def _sources(text: str, statements: list[ast.stmt]) -> list[str]:
    """Each statement's source text (`ast.get_source_segment`, which splits the whole
    text again on every call, takes seconds for a thousand asserts)."""
    lines = [line.encode() for line in re.findall(r".*?(?:\r\n|\r|\n)|.+$", text, re.S)]
    sources = []
    for s in statements:
        first, last = s.lineno - 1, s.end_lineno - 1
        if first == last:
            chunk = lines[first][s.col_offset : s.end_col_offset]
        else:
            chunk = lines[first][s.col_offset :] + b"".join(lines[first + 1 : last]) + lines[last][: s.end_col_offset]
        sources.append(chunk.decode())
    return sources


# The solution's side: runs the solution's code (as module "solution"), then answers the
# checker's requests, one JSON line each way, on what were stdin and stdout (the
# solution's own prints go to stderr, its stdin reads nothing). Values go out as plain
# data of exact builtin types; anything else (a subclass of int, an object with its own
# __eq__, a class instance) goes out as a numbered reference the checker can only call,
# read attributes of, index, iterate or ask for its truth value, length or text.
# Everything here runs in the solution's process and may be subverted by it: the checker
# trusts none of it.
SERVER = r'''
import json as _json, os as _os, sys as _sys, types as _types

def serve(source):
    requests = _os.fdopen(_os.dup(0), "rb")
    answers = _os.fdopen(_os.dup(1), "wb")
    null = _os.open(_os.devnull, _os.O_RDONLY)
    _os.dup2(null, 0)
    _os.dup2(2, 1)
    objects, refs = {}, {}

    def enc(x):
        t = type(x)
        if x is None or t in (bool, int, float, str):
            return x
        if t is list:
            return [enc(v) for v in x]
        if t in (tuple, set, frozenset):
            return {{tuple: "t", set: "s", frozenset: "f"}[t]: [enc(v) for v in x]}
        if t is dict:
            return {"d": [[enc(k), enc(v)] for k, v in x.items()]}
        if t is bytes:
            return {"b": x.hex()}
        if t is complex:
            return {"c": [x.real, x.imag]}
        if id(x) not in refs:
            refs[id(x)] = len(objects) + 1
            objects[len(objects) + 1] = x
        return {"r": refs[id(x)]}

    def dec(x):
        if type(x) is list:
            return [dec(v) for v in x]
        if type(x) is not dict:
            return x
        (tag, v), = x.items()
        if tag == "r":
            return objects[v]
        if tag == "d":
            return {dec(k): dec(w) for k, w in v}
        if tag == "b":
            return bytes.fromhex(v)
        if tag == "c":
            return complex(*v)
        return {"t": tuple, "s": set, "f": frozenset}[tag](dec(w) for w in v)

    def answer(message):
        answers.write(_json.dumps(message).encode() + b"\n")
        answers.flush()

    def error(e):
        return {"e": [type(e).__name__, str(e)[:500]]}

    space = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec(compile(source, "solution.py", "exec"), space)
    except BaseException as e:
        answer(error(e))
        return
    answer({"v": None})
    for line in requests:
        try:
            op, ref, *rest = _json.loads(line)
            target = objects[ref] if ref else None
            if op == "names":
                found = {n: ({"m": space[n].__name__} if isinstance(space[n], _types.ModuleType) else enc(space[n]))
                         for n in rest[0] if n in space}
                answer({"n": found})
                continue
            if op == "call":
                args = [dec(a) for a in rest[0]]
                value = target(*args, **{k: dec(v) for k, v in rest[1].items()})
                answer({"v": enc(value), "a": [enc(a) if type(a) in (list, dict, set) else None for a in args]})
                continue
            if op == "next":
                try:
                    value = next(target)
                except StopIteration:
                    answer({"stop": True})
                    continue
            elif op == "set":
                value = setattr(target, rest[0], dec(rest[1]))
            else:
                value = {"get": lambda: getattr(target, rest[0]), "item": lambda: target[dec(rest[0])],
                         "len": lambda: len(target), "bool": lambda: bool(target), "iter": lambda: iter(target),
                         "str": lambda: str(target), "repr": lambda: repr(target)}[op]()
            answer({"v": enc(value)})
        except BaseException as e:
            answer(error(e))
'''

# The trusted side, in its own sandbox: runs the tests, with the solution's names bound
# to proxies. A call sends its arguments to the solution as plain data and turns the
# answer back into fresh builtin objects with this process's own json parser, so every
# comparison, truth test and assert in the tests runs on values the solution cannot
# subvert; a reference comes back as a `Solution` proxy, equal only to itself. Expected
# values never cross to the solution. The report (kind, passed, text) is the only line
# this process writes to its stdout; the tests' own prints go to stderr.
CHECKER = r'''
import builtins, importlib, json, os, sys

STEPS = WANTED = GUARDED = None
MAX_ANSWER = 64 * 1024 * 1024
to_solution = os.fdopen(int(sys.argv[1]), "wb")
from_solution = os.fdopen(int(sys.argv[2]), "rb")
report = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
gone = None


class SolutionError(Exception):
    """An exception the solution raised, of a type that is not a builtin one."""


class SolutionGone(Exception):
    """The solution's process has exited, or broke the protocol."""


def finish(kind, passed, text):
    report.write(json.dumps([kind, passed, text]) + "\n")
    report.flush()
    os._exit(0)


def ask(*message):
    global gone
    if gone:
        raise SolutionGone(gone)
    try:
        to_solution.write(json.dumps(list(message)).encode() + b"\n")
        to_solution.flush()
        line = from_solution.readline(MAX_ANSWER)
    except OSError:
        line = b""
    if not line.endswith(b"\n"):
        gone = "the solution exited during the tests" if not line else "an answer over 64 MB"
        raise SolutionGone(gone)
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    if type(answer) is not dict:
        gone = "the solution broke the protocol"
        raise SolutionGone(gone)
    if "e" in answer:
        raise exception(answer["e"])
    return answer


def exception(e):
    name, text = e if type(e) is list and len(e) == 2 and all(type(p) is str for p in e) else ("?", "?")
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            return cls(text)
        except Exception:
            pass
    return SolutionError(f"{name}: {text}")


def encode(x):
    t = type(x)
    if x is None or t in (bool, int, float, str):
        return x
    if t is list:
        return [encode(v) for v in x]
    if t in (tuple, set, frozenset):
        return {{tuple: "t", set: "s", frozenset: "f"}[t]: [encode(v) for v in x]}
    if t is dict:
        return {"d": [[encode(k), encode(v)] for k, v in x.items()]}
    if t is bytes:
        return {"b": x.hex()}
    if t is complex:
        return {"c": [x.real, x.imag]}
    if t is Solution:
        return {"r": object.__getattribute__(x, "_solution_ref")}
    raise TypeError(f"a {t.__name__} cannot be passed to the solution")


proxies = {}


def decode(x):
    t = type(x)
    if x is None or t in (bool, int, float, str):
        return x
    if t is list:
        return [decode(v) for v in x]
    if t is dict and len(x) == 1:
        (tag, v), = x.items()
        if tag == "r" and type(v) is int:
            return proxies.setdefault(v, Solution(v))
        if tag == "b" and type(v) is str:
            return bytes.fromhex(v)
        if tag == "c" and type(v) is list and len(v) == 2 and all(type(p) in (int, float) for p in v):
            return complex(*v)
        if type(v) is list and tag in ("t", "s", "f"):
            return {"t": tuple, "s": set, "f": frozenset}[tag](decode(w) for w in v)
        if type(v) is list and tag == "d" and all(type(p) is list and len(p) == 2 for p in v):
            return {decode(k): decode(w) for k, w in v}
    raise SolutionError("the solution sent a malformed value")


def strict(value, kind):
    if type(value) is not kind:
        raise SolutionError(f"the solution answered a {type(value).__name__} where a {kind.__name__} is due")
    return value


class Solution:
    """An object that lives in the solution's process. Equal only to itself, hashed
    by identity, no arithmetic; attributes, calls, items, iteration, len, bool, str
    are asked of the solution, and what comes back is plain data (or another proxy)."""

    __slots__ = ("_solution_ref",)

    def __init__(self, ref):
        object.__setattr__(self, "_solution_ref", ref)

    def _solution_ask(self, op, *rest):
        return decode(ask(op, object.__getattribute__(self, "_solution_ref"), *rest).get("v"))

    def __getattr__(self, name):
        return self._solution_ask("get", name)

    def __setattr__(self, name, value):
        self._solution_ask("set", name, encode(value))

    def __call__(self, *args, **kwargs):
        answer = ask("call", object.__getattribute__(self, "_solution_ref"), [encode(a) for a in args],
                     {k: encode(v) for k, v in kwargs.items()})
        after = answer.get("a")
        if type(after) is list and len(after) == len(args):
            for arg, new in zip(args, after):  # arguments the solution changed in place
                new = None if new is None else decode(new)
                if type(arg) is list and type(new) is list:
                    arg[:] = new
                elif type(arg) in (dict, set) and type(new) is type(arg):
                    arg.clear()
                    arg.update(new)
        return decode(answer.get("v"))

    def __getitem__(self, key):
        return self._solution_ask("item", encode(key))

    def __iter__(self):
        iterator = self._solution_ask("iter")
        if type(iterator) is not Solution:
            raise SolutionError("the solution answered a plain value for iter()")
        while True:
            answer = ask("next", object.__getattribute__(iterator, "_solution_ref"))
            if answer.get("stop") is True:
                return
            yield decode(answer.get("v"))

    def __len__(self):
        return strict(self._solution_ask("len"), int)

    def __bool__(self):
        return strict(self._solution_ask("bool"), bool)

    def __str__(self):
        return strict(self._solution_ask("str"), str)

    def __repr__(self):
        return strict(self._solution_ask("repr"), str)

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def __hash__(self):
        return id(self)


def main():
    line = from_solution.readline(MAX_ANSWER)
    if not line:
        finish("solution", 0, "the solution exited before the tests ran")
    try:
        hello = json.loads(line)
    except ValueError:
        hello = None
    if type(hello) is not dict:
        finish("solution", 0, "the solution broke the protocol")
    if "e" in hello:
        error = exception(hello["e"])
        finish("solution", 0, str(error) if type(error) is SolutionError else f"{type(error).__name__}: {error}")
    space = {"__name__": "tests", "__builtins__": builtins}
    try:
        found = ask("names", 0, WANTED).get("n")
    except Exception as e:
        finish("solution", 0, f"{type(e).__name__}: {e}")
    for name, value in (found.items() if type(found) is dict else ()):
        if name not in WANTED:
            continue
        if name in GUARDED:
            finish("setup", 0, f"the solution redefines {name!r}, which the tests use")
        if hasattr(builtins, name):
            continue
        if type(value) is dict and set(value) == {"m"} and type(value["m"]) is str:
            if value["m"].split(".")[0] in sys.stdlib_module_names:
                space[name] = importlib.import_module(value["m"])  # our own copy of the module
            continue
        try:
            space[name] = decode(value)
        except SolutionError:
            pass
    passed = 0
    for source, is_case in STEPS:
        try:
            exec(compile(source, "tests.py", "exec"), space)
            passed += is_case
        except BaseException as e:
            if not is_case:
                finish("setup", 0, f"{type(e).__name__}: {e}")
    if gone:
        finish("solution", passed, gone)
    finish("passed", passed, "")


main()
'''


def _run_stdio(code: str, cases: list[dict], limits: dict, mode: str, keep_runs: int = 0) -> CodeVerdict:
    """One fresh run per case, all in one sandbox; the outputs are compared here, outside
    it. Stops at the first timeout, output overflow or crash."""
    total, passed = len(cases), 0
    matched, mismatched = [], []  # the first `keep_runs` of each, for a judge
    for case, result in zip(cases, sandbox.run_untrusted_cases(code, [c["input"] for c in cases], **limits)):
        if result.status in ("timeout", "output_limit"):
            return CodeVerdict(result.status, passed, total, mode, result.status.replace("_", " "))
        if result.status != "ok":
            last = _last_line(result.stderr) or f"exit status {result.returncode}"
            return CodeVerdict("error", passed, total, mode, f"runtime error: {last}"[:200])
        same = _normalise(result.stdout) == _normalise(case["output"])
        passed += same
        kept = matched if same else mismatched
        if len(kept) < keep_runs:
            kept.append(CaseRun(case["input"], case["output"], result.stdout[: JUDGED_CHARS + 1], len(result.stdout)))
    if passed == total:
        return CodeVerdict("passed", passed, total, mode, runs=tuple(matched))
    return CodeVerdict("failed", passed, total, mode, f"failed {total - passed}/{total} tests", tuple(mismatched))


def _normalise(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


class Code(Judged, RowFilter):
    """Keep rows whose final code block passes every test of the row; in cascade mode,
    or whose differing stdio outputs an LLM judge accepts (`code_cascade`)."""

    name = "code"
    rule_scores = {"code_status": pl.String, "code_passed": pl.Int64, "code_total": pl.Int64}

    def __init__(self, workers: int | None = None, timeout: float = 5.0, memory_mb: int = 512,
                 require_isolation: bool = False, mode: str = "rules", judge: dict | None = None,
                 judge_cases: int | None = None):
        self.workers = self.param("workers", workers if workers is not None else 2, int, minimum=1)
        self._sandboxes = self.workers  # at once (threads, each waiting on a sandboxed process)
        self._workers_given = workers is not None
        self.timeout = self.param("timeout", timeout, float, minimum=0.1)
        self.memory_mb = self.param("memory_mb", memory_mb, int, minimum=64)
        self.require_isolation = self.param("require_isolation", require_isolation, bool)
        if self.require_isolation and self.isolation == "none":
            raise CurateError(
                "filter code: require_isolation is set, but neither bubblewrap nor unshare "
                "can isolate the untrusted code here (install bubblewrap, or allow user namespaces)"
            )
        # cascade: an LLM judge on outputs that differ from the expected ones (filters/judge.py)
        self._judge = cascade_judge(self, mode, judge, template="judge_code_output")
        cases = self.param("judge_cases", judge_cases, int, minimum=1, optional=True)
        if cases is not None and self._judge is None:
            raise ParamError("filter code: parameter judge_cases needs mode: cascade", "judge_cases")
        self._cases = cases or JUDGE_CASES
        if self._judge is not None:
            self.judge_cases = self._cases

    @property
    def needs(self) -> tuple[str, ...]:
        return ("completion", "tests", "problem") if self._judge else ("completion", "tests")

    @property
    def uses(self) -> tuple[str, ...]:
        return ("sample_id",) if self._judge else ()

    @property
    def scores(self) -> dict:
        extra = {name: pl.String for name in (*JUDGE_SCORES, "code_judged")} if self._judge else {}
        return {**self.rule_scores, **extra}

    @property
    def isolation(self) -> str:
        """How the code is contained here ("bwrap" | "unshare" | "none"), for the manifest."""
        return sandbox.isolation()

    def manifest_info(self) -> dict:
        return {"isolation": self.isolation, **super().manifest_info()}

    def fit(self, cpus: int) -> None:
        if not self._workers_given:
            self._sandboxes = max(1, min(self.workers, cpus))

    def verify(self, row: dict) -> Verdict:
        return self._second_opinion([row], [self._rules(row)])[0]

    def __call__(self, batch: pl.DataFrame) -> Decision:
        rows = list(self.rows(batch))
        with ThreadPoolExecutor(self._sandboxes) as pool:
            verdicts = list(pool.map(self._rules, rows))
        return self.decide(self._second_opinion(rows, verdicts))

    def _rules(self, row: dict) -> CodeVerdict:
        return verify_code(row["tests"], row["completion"], timeout=self.timeout, memory_mb=self.memory_mb,
                           keep_runs=self._cases if self._judge else 0)

    def _second_opinion(self, rows: list[dict], verdicts: list[CodeVerdict]) -> list[Verdict]:
        return code_cascade(self._judge, rows, verdicts, self._cases) if self._judge else verdicts


# -- cascade mode: the judge on outputs the strict comparison rejects ---------------------


def code_questions(problem: str, verdict: CodeVerdict, cases: int = JUDGE_CASES) -> tuple[list[dict] | None, str]:
    """What the judge is asked about a sample: one question (problem, input, expected
    output, the program's output) per kept stdio case, or None and why not. A failed
    sample with more mismatching cases than `cases`, or with an output the judge must not
    see (too long to judge whole; over LENGTH_RATIO times the expected length, the room
    a persuasive text would need; holding a verdict marker) is not asked."""
    if not verdict.runs:
        return None, ""
    differ = verdict.total - verdict.passed
    if verdict.status == "failed" and differ > cases:
        return None, f"{differ} outputs differ, more than judge_cases ({cases})"
    questions = []
    for run in verdict.runs[:cases]:
        if VERDICT.search(run.output):
            return None, "an output holding a verdict marker"
        if max(run.output_chars, len(run.expected)) > JUDGED_CHARS:
            return None, f"an output over {JUDGED_CHARS:,} characters"
        if run.output_chars > LENGTH_RATIO * len(run.expected.strip()) + LENGTH_SLACK:
            return None, f"an output of {run.output_chars:,} characters for {len(run.expected.strip()):,} expected"
        questions.append({"problem": _clip(problem, PROBLEM_CHARS), "input": _clip(run.input, INPUT_CHARS),
                          "expected_output": run.expected.rstrip(), "output": run.output.rstrip()})
    return questions, ""


def code_cascade(judge: Judge, rows: list[dict], verdicts: list[CodeVerdict], cases: int = JUDGE_CASES,
                 template: str | None = None) -> list[Verdict]:
    """The rules' verdicts with the judge's second opinion (filters/judge.py `cascade`):
    a stdio sample whose only failures are differing outputs is the judge's to decide,
    and passes when every differing case is judged acceptable. `rows` give `problem`
    (and `sample_id`, else the completion, as the sample's key). Scores added:
    `judge_verdict`, `verdict_by`, and `code_judged`, the (expected, output) pairs the
    judge saw, as JSON (for `curate audit`). A failed sample that was not asked says why
    in its reason."""
    asked = [code_questions(str(r.get("problem") or ""), v, cases) for r, v in zip(rows, verdicts)]
    keys = [str(r.get("sample_id") or f"{r.get('problem')}\0{r.get('completion')}") for r in rows]
    judged = cascade(judge, [q for q, _ in asked], verdicts, ("failed",), keys, status="code_status",
                     template=template, rejected="judged not acceptable")
    out = []
    for (questions, why), v in zip(asked, judged):
        seen = [[q["expected_output"], q["output"]] for q in questions] if v.scores["judge_verdict"] else None
        reason = f"{v.reason}; not judged: {why}" if why and not v.keep and v.reason else v.reason
        out.append(Verdict(v.keep, reason, {**v.scores, "code_judged": json.dumps(seen) if seen else None}))
    return out


def _clip(text: str, limit: int) -> str:
    """The text, or its head and tail with the cut said in between."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 3 // 4], text[-(limit // 4) :]
    return f"{head}\n[... {len(text) - len(head) - len(tail):,} characters cut ...]\n{tail}"
