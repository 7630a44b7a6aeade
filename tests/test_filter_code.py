"""The code filter's verdicts: asserts and stdio, counts, reasons, the batch filter and
the manifest. Hostile programs are in test_sandbox_hostile.py, reward hacks in
test_reward_hacks.py."""

import json

import polars as pl
import pytest

from curate.errors import CurateError
from curate.filters import sandbox
from curate.filters.code import Code, extract_code, verify_code
from helpers import curate

SOLVE = "<think>Add one.</think>\nHere:\n```python\ndef f(x):\n    return x + 1\n```\n"
WRONG = "<think>Double.</think>\n```python\ndef f(x):\n    return x * 2\n```\n"
ASSERTS = json.dumps({"type": "assert", "code": "assert f(1) == 2\nassert f(2) == 3\nassert f(0) == 1"})
STDIO = json.dumps({"type": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"},
                                               {"input": "5 5\n", "output": "10"}]})
ADD = "<think>Read two numbers.</think>\n```python\na, b = map(int, input().split())\nprint(a + b, ' ')\n```"


def test_correct_assert_solution_passes():
    v = verify_code(ASSERTS, SOLVE)
    assert (v.keep, v.status, v.passed, v.total) == (True, "passed", 3, 3)


def test_wrong_solution_fails_with_a_count():
    v = verify_code(ASSERTS, WRONG)
    assert (v.keep, v.status, v.reason) == (False, "failed", "failed 2/3 tests")


def test_list_of_asserts_and_exit_before_the_tests():
    assert verify_code(json.dumps(["assert f(1) == 2", "assert f(5) == 6"]), SOLVE).keep
    cheat = "</think>```python\nimport sys\nsys.exit(0)\n```"
    v = verify_code(ASSERTS, cheat)
    assert (v.keep, v.status) == (False, "error")


def test_stdio_cases():
    assert verify_code(STDIO, ADD).status == "passed"
    v = verify_code(STDIO, ADD.replace("a + b", "a * b"))
    assert (v.status, v.passed, v.total) == ("failed", 0, 2)


def test_runtime_error_and_timeout_verdicts():
    v = verify_code(ASSERTS, "</think>```python\nraise ValueError('boom')\n```")
    assert (v.status, v.reason) == ("error", "runtime error: ValueError: boom")
    v = verify_code(STDIO, "</think>```python\nwhile True: pass\n```", timeout=1)
    assert v.status == "timeout"


def test_no_code_and_no_tests():
    assert verify_code(ASSERTS, "<think>x</think>The answer is f(x)=x+1.").status == "no_code"
    assert verify_code(ASSERTS, "<think>```python\ndef f(x): return x+1\n```").status == "no_code"  # truncated
    assert verify_code(None, SOLVE).status == "no_tests"
    assert verify_code("not json", SOLVE).status == "no_tests"


def test_extract_code_prefers_the_last_python_block():
    answer = "```python\nA\n```\ntext\n```python\nB\n```\n```\nC\n```"
    assert extract_code(answer) == "B\n"
    assert extract_code("```\nC\n```") == "C\n"
    assert extract_code("no fences") is None


def test_batch_filter():
    frame = pl.DataFrame(
        {
            "completion": [SOLVE, WRONG, "<think>x</think>no code", SOLVE, ADD],
            "tests": [ASSERTS, ASSERTS, ASSERTS, None, STDIO],
        }
    )
    decision = Code(workers=2, timeout=5.0)(frame)
    assert decision.keep.to_list() == [True, False, False, False, True]
    assert decision.reason.to_list() == [None, "failed 2/3 tests", "no code block", "no tests", None]
    assert decision.scores["code_status"].to_list() == ["passed", "failed", "no_code", "no_tests", "passed"]
    assert decision.scores["code_passed"].to_list() == [3, 1, 0, 0, 2]
    assert decision.scores["code_total"].to_list() == [3, 3, 0, 0, 2]


def test_require_isolation(monkeypatch):
    assert Code().isolation == sandbox.isolation()
    assert "isolation" not in Code().params()
    monkeypatch.setattr(sandbox, "isolation", lambda python=None: "none")
    with pytest.raises(CurateError, match="require_isolation"):
        Code(require_isolation=True)
    assert Code().isolation == "none"


def test_curate_filter_records_the_isolation_in_the_manifest(tmp_path):
    """`curate filter` with the code filter: the sandbox's isolation level reaches
    OUT/manifest.json (filters_info), beside the verdicts."""
    data = tmp_path / "solutions.jsonl"
    rows = [{"sample_id": "a", "completion": SOLVE, "tests": ASSERTS},
            {"sample_id": "b", "completion": WRONG, "tests": ASSERTS}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    curate("filter", "--input", data, "--out", out, "--filters", "code", "--no-progress")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["filters_info"] == {"code": {"isolation": sandbox.isolation()}}
    assert manifest["funnel"]["steps"][0]["by_reason"] == {"failed 2/3 tests": 1}
    kept = pl.read_parquet(out / "kept" / "part-00000.parquet")
    assert kept["sample_id"].to_list() == ["a"] and kept["code_passed"].to_list() == [3]


def test_honest_solutions_of_every_shape_still_pass():
    """The tests run apart from the solution: classes, methods, linked structures the
    tests build with their own helpers, in-place changes, generators, exceptions, the
    solution's imports and prints all behave as in one interpreter."""
    tests = json.dumps({"type": "assert", "code": """
import collections
def build(xs):
    head = None
    for x in reversed(xs):
        head = Node(x, head)
    return head
def to_list(node):
    out = []
    while node:
        out.append(node.val)
        node = node.next
    return out
assert to_list(reverse(build([1, 2, 3]))) == [3, 2, 1]
s = Solution()
assert s.two_sum([2, 7, 11], 9) == [0, 1]
cache = Cache(2)
cache.put("a", 1)
assert cache.get("a") == 1 and cache.size == 1 and len(cache) == 1 and str(cache) == "Cache(1)"
nums = [3, 1, 2]
sort_in_place(nums)
assert nums == [1, 2, 3]
assert list(gen(3)) == [0, 1, 2] and 2 in gen(3)
try:
    f(-1)
    raise AssertionError("no error")
except ValueError:
    pass
assert math.isclose(g(), 0.5) and LIMIT == 10
assert isinstance(h(), tuple) and h() == (1, {2: {3}}, None, b"x", 1j, frozenset({4}), float("inf"))
assert counts("abca") == collections.Counter("abca") or counts("abca") == {"a": 2, "b": 1, "c": 1}
"""})
    code = '''
import math
LIMIT = 10
class Node:
    def __init__(self, val, next=None):
        self.val, self.next = val, next
def reverse(head):
    prev = None
    while head:
        head.next, prev, head = prev, head, head.next
    return prev
class Solution:
    def two_sum(self, nums, target):
        seen = {}
        for i, x in enumerate(nums):
            if target - x in seen:
                return [seen[target - x], i]
            seen[x] = i
class Cache:
    def __init__(self, n):
        self.n, self.data = n, {}
    def put(self, k, v):
        self.data[k] = v
    def get(self, k):
        return self.data.get(k)
    @property
    def size(self):
        return len(self.data)
    def __len__(self):
        return len(self.data)
    def __str__(self):
        return f"Cache({len(self.data)})"
def sort_in_place(a):
    a.sort()
def gen(n):
    yield from range(n)
def f(x):
    if x < 0:
        raise ValueError("negative")
def g():
    return 0.5
def h():
    return (1, {2: {3}}, None, b"x", 1j, frozenset({4}), math.inf)
def counts(s):
    return {c: s.count(c) for c in s}
print("demo output")
if __name__ == "__main__":
    print(f(1))
'''
    v = verify_code(tests, f"</think>\n```python\n{code}```")
    assert (v.keep, v.status, v.passed, v.total) == (True, "passed", 11, 11), v
    v = verify_code(tests, f"</think>\n```python\n{code.replace('a.sort()', 'a.reverse()')}```")
    assert (v.status, v.passed, v.total) == ("failed", 10, 11)


def test_stdio_runs_are_fresh_and_behave_like_a_real_interpreter():
    """All the cases run in one sandbox, each a fresh interpreter: __main__, pickling of
    top-level functions, threads joined and atexit run at exit, mmap of stdin, and no
    file left by one case for the next."""
    program = """
import atexit, mmap, os, pickle, sys, threading
def answer():
    data = mmap.mmap(0, os.fstat(0).st_size, access=mmap.ACCESS_READ).read()
    a, b = map(int, data.split())
    atexit.register(lambda: print(a + b))
if os.path.exists("/tmp/seen") or os.path.exists("seen"):
    print("stale")
open("/tmp/seen", "w").close()
open("seen", "w").close()
assert pickle.loads(pickle.dumps(answer)) is answer and __name__ == "__main__"
threading.stack_size(1 << 24)
threading.Thread(target=answer).start()
"""
    v = verify_code(STDIO, f"</think>```python\n{program}```")
    assert (v.keep, v.status, v.passed, v.total) == (True, "passed", 2, 2), v


def test_stdio_each_case_has_its_own_timeout():
    cases = json.dumps({"type": "stdio", "cases": [{"input": "1", "output": "1"}, {"input": "2", "output": "2"},
                                                   {"input": "loop", "output": "3"}, {"input": "4", "output": "4"}]})
    program = "import time\nx = input()\ntime.sleep(0.6)\nwhile x == 'loop':\n    pass\nprint(x)"
    v = verify_code(cases, f"</think>```python\n{program}\n```", timeout=1)
    assert (v.status, v.passed, v.total, v.reason) == ("timeout", 2, 4, "timeout")  # 0.6 s each is within 1 s


def test_names_the_tests_also_use_locally_still_come_from_the_solution():
    tests = json.dumps({"type": "assert", "code": "def run(f, sum=0):\n    return f(1) + sum\nassert run(f) == 2\n"
                                                  "assert sum([f(1)]) == 2"})
    v = verify_code(tests, "</think>```python\nsum = 5\ndef f(x):\n    return x + 1\n```")
    assert (v.status, v.passed, v.total) == ("passed", 2, 2), v  # `sum` stays the builtin: the tests define one


def test_test_code_that_looks_like_the_harness_is_just_test_code():
    tests = json.dumps({"type": "assert", "code": "WANTED = None\nSTEPS = WANTED = GUARDED = None\nassert f(1) == 2"})
    v = verify_code(tests, SOLVE)
    assert (v.status, v.passed, v.total) == ("passed", 1, 1), v
