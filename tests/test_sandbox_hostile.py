"""Hostile programs thrown at the sandbox (`run_untrusted`, and `run_with_checker` for
the pair the code verifier uses): each checks what really happened on the host (the
file is not there, the listener got no connection, the process still runs, nothing
is left behind), not only what the program printed.

The network tests only ever talk to a listener this test opens on 127.0.0.1."""

import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from curate.filters import sandbox
from curate.filters.sandbox import run_untrusted, run_untrusted_cases, run_with_checker

REPO = Path(__file__).resolve().parent.parent
ISOLATED = sandbox.isolation() != "none"
needs_isolation = pytest.mark.skipif(not ISOLATED, reason="neither bwrap nor unshare works here")
needs_bwrap = pytest.mark.skipif(sandbox.isolation() != "bwrap", reason="bubblewrap not available")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the drop of root happens only when curate runs as root")


def sandbox_processes(grace: float = 2.0) -> list[int]:
    """Sandboxed programs of this test session still alive on the host (their argv names
    a sandbox temp dir; this process or init is their ancestor: other sessions on the
    machine run their own). A killed process takes a moment to disappear from /proc:
    ask again for up to `grace` seconds before answering."""
    deadline = time.monotonic() + grace
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if b"curate-sandbox-" in Path(f"/proc/{pid}/cmdline").read_bytes() and _ours(int(pid)):
                    found.append(int(pid))
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _ours(pid: int) -> bool:
    while pid > 1:
        if pid == os.getpid():
            return True
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if parent == 1:
            return True  # an orphan: it left its sandbox's process tree
        pid = parent
    return False


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
    assert result.wall_s <= 4.0
    assert sandbox_processes() == []


def test_memory_bomb_is_stopped():
    result = run_untrusted("x = bytearray(4 * 1024**3)\nprint('ALLOCATED')", timeout=5, memory_mb=512)
    assert result.status in ("error", "killed")
    assert "ALLOCATED" not in result.stdout
    assert "MemoryError" in result.stderr or result.status == "killed"


def test_infinite_loop_times_out_and_leaves_no_process():
    result = run_untrusted("while True:\n    pass", timeout=1)
    assert result.status == "timeout"
    assert 1.0 <= result.wall_s <= 2.5
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
    assert result.wall_s < 3.0
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
    assert result.wall_s < 3.0
    time.sleep(0.2)
    assert sandbox_processes() == []


def test_stdin_reaches_the_program_and_the_stdlib_imports():
    result = run_untrusted("import json, sys\nprint(json.dumps(sys.stdin.read().split()))", stdin="a b\nc\n")
    assert result.status == "ok", result.stderr
    assert result.stdout.strip() == '["a", "b", "c"]'
    assert result.isolation == sandbox.isolation()


def test_no_file_descriptor_is_inherited():
    secret = os.open(__file__, os.O_RDONLY)
    os.set_inheritable(secret, True)  # even one the host forgot to mark close-on-exec
    try:
        code = f"""
import os
print(sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
try:
    os.read({secret}, 10)
    print("READ")
except OSError as e:
    print("refused", e.errno)
"""
        result = run_untrusted(code, timeout=5)
    finally:
        os.close(secret)
    assert result.status == "ok", result.stderr
    fds, refused = result.stdout.splitlines()
    assert json.loads(fds) == [0, 1, 2, 3]  # 3: the listing's own directory handle
    assert refused == "refused 9"  # EBADF


@needs_bwrap
def test_the_host_processes_are_invisible():
    code = f"""
import os
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(pids)
for path in ("/proc/{os.getpid()}/environ", "/proc/{os.getpid()}/cmdline", "/proc/{os.getppid()}/mem"):
    try:
        open(path, "rb").read(100)
        print("READ", path)
    except OSError as e:
        print("refused", e.errno)
"""
    result = run_untrusted(code, timeout=5)
    assert result.status == "ok", result.stderr
    pids, *refusals = result.stdout.splitlines()
    assert len(json.loads(pids)) <= 3  # the namespace's init, the program, perhaps its bootstrap
    assert refusals == ["refused 2"] * 3  # ENOENT: no such process in here


@needs_bwrap
def test_symlinks_lead_nowhere_outside():
    victim = REPO / "README.md"
    before = victim.read_bytes()
    code = f"""
import os
os.symlink({str(victim)!r}, "readme")
os.symlink("/root", "home")
os.symlink("/etc/shadow", "shadow")
for step in (lambda: open("readme", "a").write("pwned"), lambda: os.listdir("home/.ssh"),
             lambda: open("shadow").read()):
    try:
        step()
        print("DONE")
    except OSError as e:
        print("refused", e.errno)
"""
    result = run_untrusted(code, timeout=5)
    assert result.status == "ok", result.stderr
    assert "DONE" not in result.stdout
    assert result.stdout.count("refused") == 3
    assert victim.read_bytes() == before


@needs_bwrap
def test_ptrace_attach_is_refused():
    code = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for pid in (1, os.getppid()):
    print(libc.ptrace(16, pid, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
"""
    result = run_untrusted(code, timeout=5)
    assert result.status == "ok", result.stderr
    assert result.stdout.split() == ["-1", "1", "-1", "1"]  # EPERM


def test_killing_its_own_group_kills_only_the_program():
    result = run_untrusted("import os, signal\nos.killpg(0, signal.SIGKILL)\nprint('ALIVE')", timeout=5)
    assert result.status == "killed"
    assert "ALIVE" not in result.stdout
    assert os.getpid() > 0 and sandbox_processes() == []


@needs_bwrap
def test_a_host_process_cannot_be_signalled():
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        code = f"""
import os, signal
for kill in (lambda: os.kill({bystander.pid}, signal.SIGKILL), lambda: os.killpg({bystander.pid}, signal.SIGKILL)):
    try:
        kill()
        print("KILLED")
    except OSError as e:
        print("refused", e.errno)
"""
        result = run_untrusted(code, timeout=5)
        assert result.stdout.split() == ["refused", "3", "refused", "3"]  # ESRCH: not in its namespace
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_memory_from_a_c_extension_is_capped():
    code = """
import ctypes, mmap
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
print("malloc", libc.malloc(2 << 30))
try:
    mmap.mmap(-1, 2 << 30)
    print("MAPPED")
except OSError as e:
    print("mmap refused", e.errno)
"""
    result = run_untrusted(code, timeout=5, memory_mb=512)
    assert result.status == "ok", result.stderr
    assert result.stdout.splitlines() == ["malloc None", "mmap refused 12"]  # NULL, ENOMEM


@needs_bwrap
def test_shared_memory_and_var_tmp_stay_private():
    name = f"pwned-{uuid.uuid4().hex}"
    code = f"""
for path in ("/dev/shm/{name}", "/var/tmp/{name}", "/tmp/{name}"):
    try:
        open(path, "w").write("x")
        print("wrote", path)
    except OSError as e:
        print("refused", e.errno)
"""
    result = run_untrusted(code, timeout=5)
    assert result.status == "ok", result.stderr
    assert "wrote /tmp/" in result.stdout  # its own private /tmp
    for host in (Path("/dev/shm") / name, Path("/var/tmp") / name, Path("/tmp") / name):
        assert not host.exists()


@needs_isolation
def test_udp_abstract_sockets_and_dns_reach_nothing():
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract_name = f"\0curate-test-{uuid.uuid4().hex}"
    abstract.bind(abstract_name)
    abstract.listen(1)
    abstract.settimeout(0.5)
    code = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    try:
        s.sendto(b"hello", ("127.0.0.1", {udp.getsockname()[1]}))
    except OSError as e:
        print("udp refused", e.errno)
try:
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.connect({abstract_name!r})
    print("CONNECTED")
except OSError as e:
    print("unix refused", e.errno)
try:
    print("RESOLVED", socket.gethostbyname("example.com"))
except OSError as e:
    print("dns refused")
"""
    try:
        result = run_untrusted(code, timeout=5)
        with pytest.raises(socket.timeout):
            udp.recvfrom(100)  # nothing arrived
        with pytest.raises(socket.timeout):
            abstract.accept()
    finally:
        udp.close()
        abstract.close()
    assert result.status == "ok", result.stderr
    assert "CONNECTED" not in result.stdout and "RESOLVED" not in result.stdout
    assert "unix refused 111" in result.stdout and "dns refused" in result.stdout


def test_sleeping_past_the_timeout_is_a_timeout():
    result = run_untrusted("import time\ntime.sleep(60)", timeout=1)
    assert result.status == "timeout"
    assert 1.0 <= result.wall_s <= 2.5
    assert sandbox_processes() == []


def test_huge_stderr_is_capped():
    result = run_untrusted("import sys\nwhile True:\n    sys.stderr.write('e' * 10000)", timeout=5,
                           max_output_bytes=100_000)
    assert result.status == "output_limit"
    assert len(result.stderr) <= 100_000 and result.wall_s < 3.0


@needs_isolation
def test_a_daemon_that_leaves_the_session_is_reaped():
    """A double-forked daemon in a session of its own: not in the program's process
    group, and an orphan; still gone when the run is over (its argv names the sandbox
    dir, which is what sandbox_processes looks for, orphans included)."""
    code = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(60)
    os._exit(0)
print("parent done")
"""
    result = run_untrusted(code, timeout=5)
    assert result.status == "ok" and result.stdout == "parent done\n"
    assert sandbox_processes() == []


def test_limits_cannot_be_raised():
    code = """
import resource
for limit in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC, resource.RLIMIT_NOFILE):
    try:
        resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("RAISED")
    except (ValueError, OSError):
        print("refused")
"""
    result = run_untrusted(code, timeout=5)
    assert result.status == "ok", result.stderr
    assert result.stdout.split() == ["refused"] * 4


@needs_bwrap
@as_root
def test_root_is_dropped_and_cannot_be_regained():
    code = """
import os
print(os.getuid(), os.geteuid(), os.getgid())
for step in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: open("/etc/shadow").read()):
    try:
        step()
        print("DONE")
    except OSError as e:
        print("refused", e.errno)
"""
    results = [run_untrusted(code, timeout=5) for _ in range(2)]
    ids = []
    for result in results:
        assert result.status == "ok", result.stderr
        first, *refusals = result.stdout.splitlines()
        uid, euid, gid = map(int, first.split())
        assert uid == euid == gid != 0
        assert refusals == ["refused 1", "refused 1", "refused 13"]
        ids.append(uid)
    assert ids[0] != ids[1] or ids[0] == sandbox.NOBODY  # each sandbox its own user: its own process budget


@needs_bwrap
def test_a_new_user_namespace_gives_no_way_out():
    name = f"pwned-{uuid.uuid4().hex}"
    code = f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("unshare", libc.unshare(0x10000000 | 0x00020000))  # CLONE_NEWUSER | CLONE_NEWNS: "root" in here
print("remount", libc.mount(b"/", b"/", None, 0x1000 | 0x20 | 0x4000, None))  # MS_BIND|MS_REMOUNT|MS_REC, rw
for step in (lambda: open({str(REPO / name)!r}, "w").write("x"), lambda: open("/etc/{name}", "w").write("x")):
    try:
        step()
        print("WROTE")
    except OSError as e:
        print("refused", e.errno)
"""
    result = run_untrusted(code, timeout=5)
    assert "WROTE" not in result.stdout
    assert not (REPO / name).exists() and not Path(f"/etc/{name}").exists()


@needs_bwrap
def test_kernel_interfaces_are_read_only():
    code = """
for path in ("/proc/sysrq-trigger", "/proc/sys/kernel/hostname", "/sys/kernel/mm/transparent_hugepage/enabled"):
    try:
        with open(path, "w") as f:
            f.write("x")
        print("WROTE", path)
    except OSError as e:
        print("refused")
"""
    result = run_untrusted(code, timeout=5)
    assert "WROTE" not in result.stdout
    assert result.stdout.split() == ["refused"] * 3


@needs_bwrap
def test_filling_the_private_tmp_stops_at_its_size():
    name = f"fill-{uuid.uuid4().hex}"
    code = f"""
import os
written = 0
try:
    for i in range(20):
        with open(f"/tmp/{name}-{{i}}", "wb") as f:
            f.write(b"x" * (8 << 20))
        written += 8
except OSError as e:
    print("stopped", e.errno, written)
"""
    result = run_untrusted(code, timeout=10)
    assert result.stdout.startswith("stopped 28")  # ENOSPC at the tmpfs cap
    assert int(result.stdout.split()[2]) <= sandbox.WORKDIR_TMPFS_BYTES >> 20
    assert not list(Path("/tmp").glob(f"{name}-*"))  # nothing landed on the host's /tmp


def test_open_files_are_limited():
    code = """
files = []
try:
    while True:
        files.append(open("/dev/null"))
except OSError as e:
    print("stopped", e.errno, len(files))
"""
    result = run_untrusted(code, timeout=5)
    errno, count = result.stdout.split()[1:]
    assert errno == "24" and int(count) <= sandbox.MAX_OPEN_FILES  # EMFILE


@needs_bwrap
@as_root
def test_a_thread_bomb_is_contained():
    code = """
import threading, time
threads = []
try:
    while True:
        t = threading.Thread(target=time.sleep, args=(30,), daemon=True)
        t.start()
        threads.append(t)
except RuntimeError as e:
    print("stopped", len(threads))
"""
    result = run_untrusted(code, timeout=5)
    assert result.stdout.startswith("stopped")
    assert int(result.stdout.split()[1]) < sandbox.MAX_PROCESSES
    assert sandbox_processes() == []


def test_a_segfault_is_reported_as_killed():
    result = run_untrusted("import ctypes\nctypes.string_at(0)\nprint('ALIVE')", timeout=5)
    assert result.status == "killed" and "ALIVE" not in result.stdout


def test_huge_unread_stdin_does_not_hang():
    result = run_untrusted("print('ignored stdin')", stdin="x" * (10 << 20), timeout=5)
    assert result.status == "ok" and result.stdout == "ignored stdin\n" and result.wall_s < 3.0


def test_closing_stdio_and_hiding_still_ends_at_the_timeout():
    result = run_untrusted("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)", timeout=1)
    assert result.status == "timeout" and result.wall_s <= 2.5
    assert sandbox_processes() == []


@needs_bwrap
def test_the_checked_program_cannot_see_its_checker():
    """run_with_checker: the program's whole view is its own namespace; the checker's
    source (read from its stdin, never written) is nowhere it can read."""
    token = f"TOKEN-{uuid.uuid4().hex}"
    program = """
import os, sys
seen = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        seen.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode())
    except OSError:
        pass
sys.stdout.write(repr(seen) + "\\n")
sys.stdout.flush()
"""
    checker = f"""
import os, sys
secret = {token!r}
answer = os.fdopen(int(sys.argv[2]), "rb").readline()
print(answer.decode().strip())
"""
    report, solution = run_with_checker(program, checker, timeout=5)
    assert report.status == "ok", report.stderr
    seen = eval(report.stdout)  # what the program saw, as relayed by the checker
    assert 1 <= len(seen) <= 3 and all(cmd.rstrip().endswith("/main.py") for cmd in seen), seen  # itself only
    assert token not in "".join(seen)


def test_a_run_that_kills_the_case_runner_ends_the_batch():
    program = "import os, signal\nif input() == 'b':\n    os.kill(os.getppid(), signal.SIGKILL)\nprint('ran')"
    results = run_untrusted_cases(program, ["a", "b", "c"], timeout=5)
    assert [r.status for r in results] == ["ok", "killed"]
    assert results[0].stdout == "ran\n" and results[1].stdout == ""
    assert sandbox_processes() == []


@needs_bwrap
def test_a_fork_bomb_in_one_case_is_contained_and_cleared():
    program = """
import os
if input() == "bomb":
    while True:
        try:
            os.fork()
        except OSError:
            pass
print("fine")
"""
    results = run_untrusted_cases(program, ["ok", "bomb", "ok"], timeout=1)
    assert [r.status for r in results] == ["ok", "timeout"]
    assert sandbox_processes() == []
