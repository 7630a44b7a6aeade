"""The code filter and its sandbox. The first half throws hostile programs at
`run_untrusted` and checks what really happened (the file is not there, the listener
got no connection, no process is left); the second half checks the verdicts.

The network tests only ever talk to a listener this test opens on 127.0.0.1."""

import json
import os
import socket
import time
import uuid
from pathlib import Path

import polars as pl
import pytest

from curate.errors import CurateError
from curate.filters import sandbox
from curate.filters.code import Code, extract_code, verify_code
from curate.filters.sandbox import run_untrusted
from helpers import curate

REPO = Path(__file__).resolve().parent.parent
ISOLATED = sandbox.isolation() != "none"
needs_isolation = pytest.mark.skipif(not ISOLATED, reason="neither bwrap nor unshare works here")
needs_bwrap = pytest.mark.skipif(sandbox.isolation() != "bwrap", reason="bubblewrap not available")


def sandbox_processes() -> list[int]:
    """Host processes still running a sandboxed program (their argv names the temp dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"curate-sandbox-" in cmdline:
            found.append(int(pid))
    return found


def process_count() -> int:
    return sum(name.isdigit() for name in os.listdir("/proc"))


# --- hostile programs -------------------------------------------------------------


@needs_isolation
def test_network_is_unreachable_even_on_loopback():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = f"""
import socket
for attempt in range(2):
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=1)
        print("CONNECTED")
    except OSError as e:
        print("refused", type(e).__name__)
"""
    try:
        result = run_untrusted(code, timeout=5)
        with pytest.raises(socket.timeout):
            listener.accept()  # nobody knocked
    finally:
        listener.close()
    assert "CONNECTED" not in result.stdout
    assert result.stdout.count("refused") == 2


@needs_bwrap
def test_writes_outside_the_work_dir_fail_and_leave_nothing():
    name = f"pwned-{uuid.uuid4().hex}"
    targets = [Path("/root") / name, REPO / name, Path("/etc") / name]
    code = f"""
import os
for path in {[str(t) for t in targets]!r}:
    try:
        open(path, "w").write("x")
        print("WROTE", path)
    except OSError as e:
        print("denied", e.errno)
open("inside.txt", "w").write("fine")
print("cwd", os.getcwd())
"""
    result = run_untrusted(code, timeout=5)
    assert result.status == "ok", result.stderr
    assert "WROTE" not in result.stdout
    assert result.stdout.count("denied") == 3
    for target in targets:
        assert not target.exists()
    workdir = result.stdout.split("cwd ")[1].strip()
    assert not Path(workdir).exists()  # the temp dir is gone


@needs_bwrap
def test_home_dirs_are_hidden():
    result = run_untrusted("import os; print(sorted(os.listdir('/root')))", timeout=5)
    assert result.status == "ok", result.stderr
    assert ".bashrc" not in result.stdout and ".cache" not in result.stdout


def test_big_files_are_refused():
    result = run_untrusted("open('big', 'wb').write(b'x' * (20 * 1024 * 1024))", timeout=5)
    assert result.status != "ok"
    assert "File too large" in result.stderr or "No space" in result.stderr


@needs_bwrap
def test_fork_bomb_is_contained():
    before = process_count()
    code = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    result = run_untrusted(code, timeout=2)
    assert result.status == "timeout"
    assert result.wall_s <= 3.0
    time.sleep(0.2)
    assert process_count() <= before + 3
    assert sandbox_processes() == []


def test_memory_bomb_is_stopped():
    result = run_untrusted("x = bytearray(4 * 1024**3)\nprint('ALLOCATED')", timeout=5, memory_mb=512)
    assert result.status in ("error", "killed")
    assert "ALLOCATED" not in result.stdout
    assert "MemoryError" in result.stderr or result.status == "killed"


def test_infinite_loop_times_out_and_leaves_no_process():
    result = run_untrusted("while True:\n    pass", timeout=1)
    assert result.status == "timeout"
    assert 1.0 <= result.wall_s <= 2.0
    assert sandbox_processes() == []


def test_env_secrets_do_not_reach_the_program(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret-xyz")
    code = """
import os
print(sorted(os.environ))
print(os.environ.get("HF_TOKEN"))
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            print(open(f"/proc/{pid}/environ", "rb").read())
        except OSError:
            pass
"""
    result = run_untrusted(code, timeout=5)
    assert result.status == "ok", result.stderr
    assert "HF_TOKEN" not in result.stdout
    assert "secret-xyz" not in result.stdout + result.stderr


@needs_bwrap
def test_the_program_cannot_kill_its_parent():
    code = """
import os, signal
for kill in (lambda: os.kill(os.getppid(), signal.SIGKILL),
             lambda: os.killpg(os.getpgid(os.getppid()), signal.SIGKILL),
             lambda: os.kill(-1, signal.SIGKILL)):
    try:
        kill()
    except OSError as e:
        print("refused", e.errno)
print("ppid", os.getppid())
"""
    result = run_untrusted(code, timeout=5)
    # we are still here, and the program saw only its sandbox's init as parent
    assert result.status in ("ok", "killed")
    assert os.getpid() > 0


def test_gigantic_output_is_capped():
    result = run_untrusted("while True:\n    print('x' * 10000)", timeout=5, max_output_bytes=100_000)
    assert result.status == "output_limit"
    assert len(result.stdout) <= 100_000
    assert result.wall_s < 2.0
    assert sandbox_processes() == []


def test_a_child_that_outlives_the_program_is_reaped():
    code = """
import os, time
if os.fork() == 0:
    time.sleep(60)
print("main done")
"""
    result = run_untrusted(code, timeout=5)
    assert result.status == "ok"
    assert result.stdout == "main done\n"
    assert result.wall_s < 2.0
    time.sleep(0.2)
    assert sandbox_processes() == []


def test_stdin_reaches_the_program_and_the_stdlib_imports():
    result = run_untrusted("import json, sys\nprint(json.dumps(sys.stdin.read().split()))", stdin="a b\nc\n")
    assert result.status == "ok", result.stderr
    assert result.stdout.strip() == '["a", "b", "c"]'
    assert result.isolation == sandbox.isolation()


# --- verdicts ---------------------------------------------------------------------

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
