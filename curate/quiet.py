"""A quiet terminal: what an engine prints goes to the run's log, not the terminal.

vLLM, torch and transformers print through Python (logging, warnings, tqdm), from C++,
and from the engine's own processes, which inherit file descriptors 1 and 2. So
`EngineOutput` points descriptors 1 and 2 at a temporary file while the engine loads
and runs, gives the progress bar a stream on the real terminal (`terminal`), and at the
end appends what it caught to the run's log (`log_path`, set once the run has one). A
run that fails before it has a log (other than with a CurateError, which says what is
wrong in one line) prints the last lines it caught instead.
`verbose=True` changes nothing: everything shows on the terminal.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from curate.errors import CurateError

TAIL_LINES = 30


class EngineOutput:
    def __init__(self, verbose: bool = False):
        self.verbose = verbose
        self.terminal: TextIO | None = None  # None: the terminal is stdout/stderr as usual
        self.log_path: Path | None = None

    def __enter__(self) -> EngineOutput:
        if self.verbose:
            return self
        sys.stdout.flush()
        sys.stderr.flush()
        self.capture = tempfile.TemporaryFile()
        self.saved = (os.dup(1), os.dup(2))
        self.terminal = os.fdopen(os.dup(self.saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
        for fd in (1, 2):
            os.dup2(self.capture.fileno(), fd)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.verbose:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)
        self.terminal.close()
        self.terminal = None
        self.capture.seek(0)
        caught = self.capture.read()
        self.capture.close()
        if not caught:
            return
        if self.log_path is not None and self.log_path.exists():
            with open(self.log_path, "ab") as log:
                log.write(b"--- engine output (stdout and stderr of the engine and its processes) ---\n" + caught)
        elif exc_type is not None and not issubclass(exc_type, (KeyboardInterrupt, CurateError)):
            tail = caught.decode("utf-8", "replace").splitlines()[-TAIL_LINES:]
            print("engine output (last lines):", *tail, sep="\n", file=sys.stderr)
