"""Step progress of SFT and DPO in the Train workers' logs (``StepProgressLog``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from rluf_ray.common import console
from rluf_ray.common.progress import step_line


def quiet_trainer(trainer: Any) -> Any:
    """Drop the HF Trainer's ``PrinterCallback`` (its ``{'loss': ...}`` dict line at every logging step)
    unless the console shows everything (``RLUF_LOG=debug``): ``StepProgressLog`` already prints one
    line per step, and the values stay in ``trainer.state.log_history`` (the curves).

    Args:
        trainer: The HF Trainer (it got ``disable_tqdm``, so it prints through ``PrinterCallback``).

    Returns:
        The same trainer.
    """
    if not console.is_verbose():
        trainer.remove_callback(PrinterCallback)
    return trainer


class StepProgressLog(TrainerCallback):
    """Print ``<label> step 12/40 30% | loss 0.6931 | elapsed 35s | ETA 1m22s`` at every logging step.

    Rank 0 only (one line per step for the whole run, not one per worker). The HF Trainer's own tqdm
    bar is off in this project (``disable_tqdm``): redrawn with carriage returns, it is unreadable in
    a Ray worker's log. ETA counts from the first step of this attempt (a resumed run starts
    mid-way).
    """

    def __init__(self, label: str, emit: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.label = label
        self.emit = emit or (lambda line: print(line, flush=True))
        self.clock = clock
        self.t0: float | None = None
        self.step0 = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start the clock, and note the step this attempt starts at (non-zero when resumed).

        Args:
            args: The Trainer's training arguments (unused).
            state: The Trainer's state (its global step).
            control: The Trainer's control flags (unused).
            **kwargs: Further callback arguments (unused).
        """
        self.t0, self.step0 = self.clock(), int(state.global_step)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Emit one progress line for a training log (rank 0, logs with a loss only).

        Args:
            args: The Trainer's training arguments (unused).
            state: The Trainer's state (global and maximum step, whether this is rank 0).
            control: The Trainer's control flags (unused).
            logs: The logged values; None or without ``loss`` (an eval log) emits nothing.
            **kwargs: Further callback arguments (unused).
        """
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        t0 = self.t0 if self.t0 is not None else self.clock()
        step, total = int(state.global_step), int(state.max_steps)
        loss = float(logs["loss"])
        self.emit(step_line(self.label, step, total, self.clock() - t0, loss, start_step=self.step0))
