"""Run untrusted Python (a model's code answer) so that it cannot hurt the host.

`run_untrusted(code, stdin=...)` writes the code to `main.py` in a fresh temp dir and
runs it in a child process, returning a `SandboxResult`. Two variants for the code
verifier: `run_untrusted_cases(code, inputs)` runs it once per input in one sandbox (a
fresh fork per input), `run_with_checker(program, checker)` runs a program and a
checker that talks to it over two pipes, each in its own sandbox. What contains what:

- **bubblewrap** (when `/usr/bin/bwrap` works; `isolation == "bwrap"`): new network
  namespace (only a private loopback: nothing outside, not even the host's 127.0.0.1),
  new PID namespace (the parent and every other host process are invisible; when the
  program exits, the namespace's init exits and the kernel kills whatever it left
  behind), new IPC namespace, a read-only view of `/`, a private size-capped tmpfs for
  the working dir and for `/tmp`, and `/root` and `/home` hidden behind empty tmpfs
  mounts (the interpreter's own prefix is mounted back, read-only).
- **unshare** (fallback; `isolation == "unshare"`): `unshare --net --pid --mount-proc
  --fork` (with `--map-root-user` when not root): no network, a private PID namespace
  and its own `/proc`, but the file system is the host's (writes are limited only by
  permissions).
- **nothing** (`isolation == "none"`): rlimits, the process group and the wall clock
  only. The program CAN reach the network and write wherever the user running curate
  can. `Code(require_isolation=True)` refuses to run in that case.

Always, whatever the isolation:
- an empty environment (PATH, LANG, HOME=<work dir> only): no tokens or keys leak;
- `python -I` (no PYTHON* variables, no user site, script dir not trusted);
- a bootstrap sets rlimits inside the child before running the code: CPU seconds
  (timeout + 1), address space (`memory_mb`), file size (10 MB), open files (64), no
  core dumps, processes (64);
- under bubblewrap and as root, the bootstrap also drops to an unprivileged uid/gid: the
  kernel does not enforce RLIMIT_NPROC for root, so this is what makes the process
  limit (and thus fork-bomb containment) real; it also removes every capability. The
  uid is drawn at random per sandbox from a range no account uses (`SANDBOX_UIDS`,
  where this user namespace maps it; else 65534, nobody): RLIMIT_NPROC counts per uid
  across the machine, so a fork bomb in one sandbox cannot starve the others, and two
  sandboxes (a program and its checker) are never the same user;
- its own session and process group, SIGKILLed as a whole at the wall-clock timeout,
  at the output cap, and as soon as the main program exits (a child that outlives it
  is reaped);
- stdout and stderr are read in chunks; past `max_output_bytes` (both together) the
  group is killed and the status is "output_limit".

The rlimits are set by a bootstrap inside the child, not by `preexec_fn`: the code
filter runs sandboxes from a thread pool, and `preexec_fn` is not safe with threads.

What is probed once per process: whether bwrap runs a trivial program here, else
whether unshare does. See `isolation()`.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

NOBODY = 65534
SANDBOX_UIDS = range(2_000_000_000, 2_100_000_000)  # as root: one drawn per sandbox (see _sandbox_uid)
MAX_PROCESSES = 64
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_OPEN_FILES = 64
WORKDIR_TMPFS_BYTES = 64 * 1024 * 1024  # bwrap only: the working dir and /tmp are tmpfs of this size
HIDDEN_DIRS = ("/root", "/home")  # bwrap only: replaced by empty tmpfs mounts

# Runs first inside the child: set the limits, drop root if asked, then become the
# real program (exec keeps the limits and the uid). argv: cpu, as, nproc, fsize,
# nofile, uid (-1: keep), python, script ("-": the program comes on stdin), its args.
BOOTSTRAP = """\
import os, resource, sys
cpu, mem, nproc, fsize, nofile, uid = map(int, sys.argv[1:7])
python, script, *args = sys.argv[7:]
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if uid >= 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
os.execv(python, [python, "-I", script, *args])
"""


@dataclass
class SandboxResult:
    status: str  # "ok" | "error" | "timeout" | "killed" | "output_limit"
    returncode: int | None
    stdout: str  # truncated to max_output_bytes
    stderr: str
    wall_s: float
    isolation: str  # "bwrap" | "unshare" | "none"


def run_untrusted(
    code: str,
    *,
    stdin: str = "",
    timeout: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = 1_000_000,
    python: str = sys.executable,
) -> SandboxResult:
    """Run `code` as a Python program with `stdin` as its input; never raises for
    anything the program does."""
    return _run_one(isolation(python), python, code, stdin, timeout, memory_mb, max_output_bytes)


def run_with_checker(
    program: str,
    checker: str,
    *,
    timeout: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = 1_000_000,
    python: str = sys.executable,
) -> tuple[SandboxResult, SandboxResult]:
    """Run an untrusted `program` and a `checker` program that talks to it, each in its
    own sandbox; returns (checker's result, program's result).

    The two share nothing but two pipes: the program's stdin and stdout. The checker
    gets their other ends as file descriptors, `sys.argv[1]` (write to the program) and
    `sys.argv[2]` (read from it); its own stdout comes only to us. The checker's source
    goes in on its stdin and is never written to a file, so whatever it holds (expected
    values) is out of the program's reach under bwrap and unshare: separate PID, IPC and
    network namespaces, separate /tmp. Both run under the same limits and one deadline;
    when the checker exits, both are killed."""
    mode = isolation(python)
    with _workdir() as program_dir, _workdir() as checker_dir:
        script = _write_script(program_dir, program)
        solver = _start(_command(mode, python, program_dir, script, timeout, memory_mb), program_dir, mode,
                        stdout=subprocess.PIPE)
        to_solver, from_solver = solver.proc.stdin, solver.proc.stdout
        try:
            fds = (to_solver.fileno(), from_solver.fileno())
            argv = _command(mode, python, checker_dir, "-", timeout, memory_mb, args=fds)
            judge = _start(argv, checker_dir, mode, pass_fds=fds)
        except BaseException:
            _kill_group(solver.proc)
            solver.proc.wait()
            raise
        finally:
            to_solver.close()  # only the checker holds the program's pipes now
            from_solver.close()
        _feed_stdin(judge.proc, checker.encode("utf-8"))
        streams = {judge.proc.stdout: bytearray(), judge.proc.stderr: bytearray(), solver.proc.stderr: bytearray()}
        why, wall = _watch([judge, solver], streams, judge, time.monotonic() + timeout, max_output_bytes)
        out, err, solver_err = streams.values()
        return (_result(judge, why, out, err, wall, max_output_bytes),
                _result(solver, why, b"", solver_err, wall, max_output_bytes))


def run_untrusted_cases(
    code: str,
    inputs: list[str],
    *,
    timeout: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = 1_000_000,
    python: str = sys.executable,
) -> list[SandboxResult]:
    """Run `code` once per input, as `run_untrusted` would, but all in one sandbox: a
    runner forks a fresh interpreter per input (one that has never run the program),
    with the input as its stdin; each run has its own `timeout` and output cap. Stops
    after the first run that does not end "ok"; returns one result per run made.

    The runner shares the sandbox with the program, so the program may tamper with it:
    it may choose any output for any run, as it could by computing it. Whatever judges
    the outputs must do so outside (the expected outputs never enter the sandbox)."""
    private_tmp = isolation(python) == "bwrap"
    runner = CASE_RUNNER.replace("SETTINGS = None", f"SETTINGS = {[code, timeout, max_output_bytes, private_tmp]!r}")
    total = timeout * len(inputs) + 2.0
    cap = (2 * max_output_bytes + 10_000) * len(inputs)
    whole = run_untrusted(runner, stdin=json.dumps(inputs), timeout=total, memory_mb=memory_mb, max_output_bytes=cap,
                          python=python)
    results = []
    for line in whole.stdout.splitlines():
        try:
            status, returncode, out, err, wall = json.loads(line)
            result = SandboxResult(str(status), int(returncode), str(out), str(err), float(wall), whole.isolation)
            results.append(result)
        except (ValueError, TypeError):
            break
        if status != "ok" or len(results) == len(inputs):
            return results[: len(inputs)]
    status = whole.status if whole.status != "ok" else "error"
    return results + [SandboxResult(status, whole.returncode, "", whole.stderr, whole.wall_s, whole.isolation)]


# The stdio runner (run_untrusted_cases): for each input, fork, make the input file the
# child's stdin and a file its stdout and stderr, run the program as __main__ in the
# child (which then exits as an interpreter does: atexit, threads joined, stdout flushed),
# wait with the run's deadline and output cap, kill what it left running, empty the work
# dir (and the private /tmp) again, and print one JSON line per run: [status,
# returncode, stdout, stderr tail, wall seconds].
CASE_RUNNER = r"""
import builtins, json, os, select, shutil, signal, sys, time, types

SETTINGS = None
source, timeout, cap, private_tmp = SETTINGS
inputs = json.loads(sys.stdin.read())
with open("solution.py", "w") as f:
    f.write(source)
try:
    program = compile(source, "solution.py", "exec")
except (SyntaxError, ValueError) as e:
    program = e


def child(i):
    os.setpgid(0, 0)
    for fd, name, flags in ((0, "in", os.O_RDONLY), (1, "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, "err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(f"{name}{i}", flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        old = getattr(sys, name)
        stream = open(fd, mode, encoding=old.encoding, errors=old.errors, closefd=False)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    sys.argv = ["solution.py"]
    main = types.ModuleType("__main__")
    main.__file__ = "solution.py"
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    if isinstance(program, BaseException):
        raise program
    exec(program, main.__dict__)


def wait(pid, deadline):
    handle = os.pidfd_open(pid)
    try:
        while True:
            select.select([handle], [], [], max(0.0, min(0.05, deadline - time.monotonic())))
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                return None, code
            over = "timeout" if time.monotonic() >= deadline else None
            try:
                if os.path.getsize(f"out{i}") + os.path.getsize(f"err{i}") > cap:
                    over = "output_limit"
            except OSError:
                pass
            if over:
                os.killpg(pid, signal.SIGKILL)
                return over, os.waitpid(pid, 0)[1]
    finally:
        os.close(handle)


def read(path, limit):
    with open(path, "rb") as f:
        data = f.read(limit)
    os.unlink(path)
    return data.decode("utf-8", "replace")


for i, text in enumerate(inputs):
    with open(f"in{i}", "w") as f:
        f.write(text)
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            pid = os.fork()
            break
        except BlockingIOError:  # the process limit, for now
            if time.monotonic() >= deadline:
                pid = None
                break
            time.sleep(0.01)
    if pid is None:
        print(json.dumps(["error", 1, "", "OSError: fork failed", 0.0]), flush=True)
        break
    if pid == 0:
        child(i)
        sys.exit(0)
    over, code = wait(pid, deadline)
    try:
        os.killpg(pid, signal.SIGKILL)  # whatever it left behind
    except OSError:
        pass
    if os.WIFSIGNALED(code):
        returncode, sig = -os.WTERMSIG(code), os.WTERMSIG(code)
        status = over or ("timeout" if sig == signal.SIGXCPU else "killed")
    else:
        returncode = os.WEXITSTATUS(code)
        status = over or ("ok" if returncode == 0 else "error")
    out, err = read(f"out{i}", cap + 1), read(f"err{i}", 1 << 20)[-4000:]
    if len(out.encode()) > cap and status == "ok":
        status = "output_limit"
    for folder in (".", "/tmp") if private_tmp else (".",):  # the next run starts as fresh as this one did
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if folder == "." and name in ("main.py", "solution.py"):
                continue
            try:
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
            except OSError:
                pass
    print(json.dumps([status, returncode, out, err, time.monotonic() - start]), flush=True)
    if status != "ok":
        break
"""


@cache
def isolation(python: str = sys.executable) -> str:
    """The strongest isolation that works here: "bwrap", "unshare" or "none" (probed
    once per process and interpreter, by running a trivial program)."""
    for mode in ("bwrap", "unshare"):
        if _works(mode, python):
            return mode
    return "none"


def _works(mode: str, python: str) -> bool:
    tool = "bwrap" if mode == "bwrap" else "unshare"
    if shutil.which(tool) is None:
        return False
    try:
        result = _run_one(mode, python, "print('ok')\n", "", 10.0, 512, 10_000)
    except OSError:
        return False
    return result.status == "ok" and result.stdout.strip() == "ok"


def _command(
    mode: str, python: str, workdir: str, script: str, timeout: float, memory_mb: int, args: tuple = ()
) -> list[str]:
    """The argv: the isolation wrapper, then the bootstrap, which execs the program
    (`script`, or "-" for a program read from stdin) with `args`."""
    drop_root = mode == "bwrap" and os.geteuid() == 0
    limits = [
        int(timeout) + 1,
        memory_mb * 1024 * 1024,
        MAX_PROCESSES,
        MAX_FILE_BYTES,
        MAX_OPEN_FILES,
        _sandbox_uid() if drop_root else -1,
    ]
    program = [python, "-I", "-c", BOOTSTRAP, *map(str, limits), python, script, *map(str, args)]
    if mode == "bwrap":
        return _bwrap(python, workdir, script) + program
    if mode == "unshare":
        user = [] if os.geteuid() == 0 else ["--map-root-user"]
        return ["unshare", "--net", "--pid", "--mount-proc", "--fork", "--kill-child", *user, "--"] + program
    return program


def _sandbox_uid() -> int:
    """A random uid (used as gid too) from SANDBOX_UIDS when this user namespace maps
    the whole range for users and groups, else nobody."""
    return random.choice(SANDBOX_UIDS) if _maps_sandbox_uids() else NOBODY


@cache
def _maps_sandbox_uids() -> bool:
    for table in ("/proc/self/uid_map", "/proc/self/gid_map"):
        try:
            with open(table) as f:
                ranges = [tuple(map(int, line.split())) for line in f if line.strip()]
        except (OSError, ValueError):
            return False
        if not any(inside <= SANDBOX_UIDS.start and SANDBOX_UIDS.stop <= inside + count for inside, _, count in ranges):
            return False
    return True


def _bwrap(python: str, workdir: str, script: str) -> list[str]:
    """bubblewrap: read-only root, no network, private PIDs, private writable work dir."""
    argv = [
        "bwrap",
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--die-with-parent", "--new-session",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--perms", "1777", "--size", str(WORKDIR_TMPFS_BYTES), "--tmpfs", "/tmp",
    ]  # fmt: skip
    hidden = [d for d in HIDDEN_DIRS if os.path.isdir(d)]
    for d in hidden:
        argv += ["--tmpfs", d]
    # The interpreter may live under a hidden dir (pyenv under /root, a venv under
    # /home, a checkout under /tmp): mount its install prefix and its venv back,
    # read-only. bwrap creates missing parents as 0700, which the sandbox's uid could not traverse.
    for d in _interpreter_dirs(python):
        for h in ("/tmp", *hidden):
            if d == h or d.startswith(h + "/"):
                parts = d[len(h) :].strip("/").split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    argv += ["--perms", "0755", "--dir", os.path.join(h, *parts[:i])]
                argv += ["--ro-bind", d, d]
    argv += [
        "--perms", "1777", "--size", str(WORKDIR_TMPFS_BYTES), "--tmpfs", workdir,
    ]  # fmt: skip
    if script != "-":
        argv += ["--ro-bind", script, script]
    return argv + ["--chdir", workdir, "--"]


def _interpreter_dirs(python: str) -> list[str]:
    """The directories the interpreter needs: its venv (two levels above the given
    path), its real install prefix, and for this interpreter sys.prefix/base_prefix."""
    dirs = {os.path.dirname(os.path.dirname(os.path.abspath(python)))}
    dirs.add(os.path.dirname(os.path.dirname(os.path.realpath(python))))
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        dirs |= {sys.prefix, sys.base_prefix}
    return sorted(d for d in dirs if os.path.isdir(d))


@contextmanager
def _workdir():
    """A fresh temp dir for one program, removed afterwards."""
    workdir = tempfile.mkdtemp(prefix="curate-sandbox-")
    try:
        os.chmod(workdir, 0o755)
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _write_script(workdir: str, code: str) -> str:
    script = os.path.join(workdir, "main.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(code)
    os.chmod(script, 0o644)
    return script


def _run_one(mode: str, python: str, code: str, stdin: str, timeout: float, memory_mb: int, cap: int) -> SandboxResult:
    with _workdir() as workdir:
        script = _write_script(workdir, code)
        child = _start(_command(mode, python, workdir, script, timeout, memory_mb), workdir, mode)
        _feed_stdin(child.proc, stdin.encode("utf-8"))
        streams = {child.proc.stdout: bytearray(), child.proc.stderr: bytearray()}
        why, wall = _watch([child], streams, child, time.monotonic() + timeout, cap)
        return _result(child, why, *streams.values(), wall, cap)


@dataclass
class _Child:
    proc: subprocess.Popen
    mode: str
    namespace_init: int | None  # bwrap: the host pid of the PID namespace's init


def _start(argv: list[str], workdir: str, mode: str, stdout=subprocess.PIPE, pass_fds: tuple = ()) -> _Child:
    """Start one sandboxed program in its own session, with an empty environment and
    only stdin, stdout, stderr (and `pass_fds`) open."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
    info_r, info_w = os.pipe() if mode == "bwrap" else (None, None)
    if mode == "bwrap":  # bwrap tells us the host pid of the namespace's init
        argv = [argv[0], "--info-fd", str(info_w), *argv[1:]]
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=env,
            start_new_session=True,
            close_fds=True,
            pass_fds=(*pass_fds, info_w) if info_w is not None else pass_fds,
        )
    except BaseException:
        if info_r is not None:
            os.close(info_r)
        raise
    finally:
        if info_w is not None:
            os.close(info_w)
    return _Child(proc, mode, _read_info(info_r) if info_r is not None else None)


def _watch(children: list[_Child], streams: dict, main: _Child, deadline: float, cap: int) -> tuple[str | None, float]:
    """Read `streams` (pipe -> buffer) in chunks until they all close; kill every child
    at the deadline, once the buffers together pass `cap` bytes, or once `main` has
    exited (whatever it left running still holds the pipes: kill the groups so they
    close, then drain what is buffered). Returns ("timeout" | "output_limit" | None,
    wall seconds)."""
    start = time.monotonic()
    why = None
    sel = selectors.DefaultSelector()
    for pipe, buffer in streams.items():
        sel.register(pipe, selectors.EVENT_READ, buffer)
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = "timeout"
                break
            for key, _ in sel.select(timeout=min(remaining, 0.05)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if sum(map(len, streams.values())) > cap:
                    why = "output_limit"
                    break
            if why:
                break
            if main.proc.poll() is not None:
                for child in children:
                    _kill_group(child)
    finally:
        for child in children:
            _kill_group(child)
            child.proc.wait()
        sel.close()
        for pipe in streams:
            pipe.close()
    return why, time.monotonic() - start


def _result(child: _Child, why: str | None, out: bytes, err: bytes, wall: float, cap: int) -> SandboxResult:
    code = child.proc.returncode
    return SandboxResult(
        status=why or _status(code, child.mode),
        returncode=code,
        stdout=bytes(out[:cap]).decode("utf-8", "replace"),
        stderr=bytes(err[:cap]).decode("utf-8", "replace"),
        wall_s=wall,
        isolation=child.mode,
    )


def _feed_stdin(proc: subprocess.Popen, data: bytes) -> None:
    """Write stdin and close it. Inputs larger than the pipe buffer go through a
    thread so a program that never reads cannot block us past the deadline."""
    if len(data) <= 32768:
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        return

    def write():
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    threading.Thread(target=write, daemon=True).start()


def _read_info(fd: int) -> int | None:
    """bwrap's --info-fd JSON ({"child-pid": N}); None if bwrap failed before writing it."""
    with os.fdopen(fd, "rb") as f:
        data = f.read(4096)  # bwrap closes it right after writing, or on failure
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def _kill_group(child: _Child | subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (its session leader's group). Under
    bwrap, first SIGKILL the PID namespace's init: the kernel then kills every process
    in the namespace, and the outer bwrap exits only once they are all gone, so
    `proc.wait()` returning means nothing is left."""
    proc = child.proc if isinstance(child, _Child) else child
    if getattr(child, "namespace_init", None) and proc.poll() is None:
        try:
            os.kill(child.namespace_init, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _status(code: int, mode: str) -> str:
    """ok / error / timeout (CPU limit) / killed (any other signal). bwrap and unshare
    report a program killed by signal N as exit code 128 + N."""
    if code == 0:
        return "ok"
    sig = -code if code < 0 else (code - 128 if mode != "none" and code > 128 else None)
    if sig == signal.SIGXCPU:
        return "timeout"
    if sig is not None:
        return "killed"
    return "error"
