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


class _AtTheEnd(Exception):
    """Raised before a step past the run's last one (see `train_from`)."""


def train_from(trainer, checkpoint: str | None):
    """`trainer.train(resume_from_checkpoint=checkpoint)` -> its TrainOutput. A checkpoint
    of the run's last step (a run killed between its last checkpoint and the final save)
    is loaded and not trained further: transformers takes one step more when it resumes
    there (it checks for the end only after a step). A callback stops the loop before that
    step, once the weights, optimizer and state are loaded on every rank, whatever the
    distribution (plain, FSDP, DeepSpeed)."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import TrainOutput

    class NoStepPastTheEnd(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.max_steps > 0 and state.global_step >= state.max_steps:
                raise _AtTheEnd

    guard = NoStepPastTheEnd()
    trainer.add_callback(guard)
    try:
        return trainer.train(resume_from_checkpoint=checkpoint)
    except _AtTheEnd:
        state = trainer.state
        trainer.control = trainer.callback_handler.on_train_end(trainer.args, state, trainer.control)
        losses = [h["loss"] for h in state.log_history if "loss" in h]  # the mean of what was logged
        return TrainOutput(state.global_step, sum(losses) / len(losses) if losses else 0.0, {})
    finally:
        trainer.remove_callback(guard)
