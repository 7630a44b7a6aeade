"""curate.train: SFT distillation and GRPO on TRL, with rewards that are thin wrappers
around the verifiers in curate.filters, and evaluation (`curate train`, `curate eval`).
See docs/ARCHITECTURE.md, "Rewards"."""

from __future__ import annotations

import os
import re
from pathlib import Path

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def last_checkpoint(out: str | os.PathLike) -> str | None:
    """The newest whole Trainer checkpoint in OUT: the highest checkpoint-N that has its
    trainer_state.json (the file the Trainer writes last, so one cut short by a kill
    is passed over), or None."""
    found = [(int(m.group(1)), p) for p in Path(out).glob("checkpoint-*")
             if (m := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()]
    return str(max(found)[1]) if found else None
