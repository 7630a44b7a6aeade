"""curate.quiet.EngineOutput: what a child process, C-level writes, Python warnings and
prints put on descriptors 1 and 2 lands in the run's log, not on the terminal; the
progress stream still reaches the terminal; a failure before the log exists shows the tail."""

import subprocess
import sys

import pytest

from curate.errors import CurateError
from curate.quiet import EngineOutput

CHILD = "import os, sys; os.write(1, b'child stdout\\n'); print('child stderr', file=sys.stderr)"


def test_engine_output_goes_to_the_log_and_the_bar_to_the_terminal(tmp_path):
    """In a process of its own, as `curate generate` runs (pytest replaces sys.stdout)."""
    log = tmp_path / "generate.log"
    log.write_text("curate's own log line\n")
    script = f"""
import subprocess, sys, warnings
from curate.errors import CurateError
from curate.quiet import EngineOutput
with EngineOutput() as out:
    subprocess.run([sys.executable, "-c", {CHILD!r}], check=True)  # inherits fds 1 and 2, like vLLM's EngineCore
    print("a print from the engine")
    warnings.warn("a FutureWarning from the engine", FutureWarning)
    out.terminal.write("progress bar\\n")
    out.log_path = __import__("pathlib").Path({str(log)!r})
print("after")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert r.stdout == "after\n"
    assert r.stderr == "progress bar\n"
    text = log.read_text()
    assert text.startswith("curate's own log line\n--- engine output")
    for line in ("child stdout", "child stderr", "a print from the engine", "a FutureWarning from the engine"):
        assert line in text


def test_a_failure_before_the_log_exists_shows_the_tail(capfd):
    with pytest.raises(RuntimeError):
        with EngineOutput():
            subprocess.run([sys.executable, "-c", CHILD], check=True)
            raise RuntimeError("engine failed to load")
    err = capfd.readouterr().err
    assert err.splitlines() == ["engine output (last lines):", "child stdout", "child stderr"]


def test_verbose_redirects_nothing(capfd):
    with EngineOutput(verbose=True) as out:
        subprocess.run([sys.executable, "-c", CHILD], check=True)
    assert out.terminal is None
    captured = capfd.readouterr()
    assert captured.out == "child stdout\n" and captured.err == "child stderr\n"


def test_a_bad_input_error_stays_one_line(capfd):
    """A CurateError says what is wrong itself: no engine output after it."""
    with pytest.raises(CurateError):
        with EngineOutput():
            subprocess.run([sys.executable, "-c", CHILD], check=True)
            raise CurateError("model.gguf: the model has no chat template")
    assert capfd.readouterr().err == ""
