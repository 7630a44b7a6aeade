"""One progress bar for every stage (rich, on stderr): done / total in the stage's
unit, a rate (units/s, or tokens/s when the stage counts tokens), elapsed and ETA.
Silent when disabled. `file`: the terminal stream to draw on when stdout/stderr are
redirected to a log (curate.quiet)."""

from __future__ import annotations

import time


class Progress:
    def __init__(self, label: str, total: int, unit: str, completed: int = 0, enabled: bool = True,
                 tokens: bool = False, file=None):
        self.enabled, self.count_tokens = enabled, tokens
        self.tokens, self.t0 = 0, time.time()
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task):
                if tokens:
                    return Text(f"{task.fields['tps']} tok/s")
                return Text(f"{task.speed:,.0f} {unit}/s" if task.speed else f"… {unit}/s")

        self.bar = Bar(TextColumn(f"{label:12s}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit), Rate(),
                       TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                       **({} if file is None else {"console": Console(file=file), "redirect_stdout": False,
                                                   "redirect_stderr": False}))
        self.task = self.bar.add_task(label, total=total, completed=completed, tps="-")

    def __enter__(self) -> Progress:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()

    def advance(self, n: int, tokens: int = 0) -> None:
        self.tokens += tokens
        if self.enabled:
            tps = self.tokens / max(time.time() - self.t0, 1e-9)
            self.bar.update(self.task, advance=n, tps=f"{tps:,.0f}")
