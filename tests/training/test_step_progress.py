"""StepProgressLog: one line per logging step on rank 0, with the loss and an ETA."""

from __future__ import annotations

from types import SimpleNamespace

from rluf_ray.training.progress import StepProgressLog


def test_lines_on_rank_zero_only() -> None:
    now = [100.0]
    lines: list[str] = []
    cb = StepProgressLog("dpo", emit=lines.append, clock=lambda: now[0])
    state = SimpleNamespace(global_step=0, max_steps=40, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    now[0], state.global_step = 124.0, 12
    cb.on_log(None, state, None, logs={"loss": 0.69314})
    cb.on_log(None, state, None, logs={"train_runtime": 3.0})  # the end-of-training summary: no loss
    other = SimpleNamespace(global_step=12, max_steps=40, is_world_process_zero=False)
    cb.on_log(None, other, None, logs={"loss": 0.5})
    assert lines == ["dpo step 12/40 30% | loss 0.6931 | elapsed 24s | ETA 56s"]


def test_resumed_run_counts_from_its_first_step() -> None:
    now = [0.0]
    lines: list[str] = []
    cb = StepProgressLog("sft", emit=lines.append, clock=lambda: now[0])
    state = SimpleNamespace(global_step=10, max_steps=40, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    now[0], state.global_step = 24.0, 12
    cb.on_log(None, state, None, logs={"loss": 1.0})
    assert lines == ["sft step 12/40 30% | loss 1.0000 | elapsed 24s | ETA 5m36s"]


def test_quiet_trainer_drops_the_dict_line_unless_debug(monkeypatch) -> None:
    from transformers.trainer_callback import PrinterCallback

    from rluf_ray.training.progress import quiet_trainer

    class Trainer:
        def __init__(self) -> None:
            self.callbacks: list[object] = [PrinterCallback]

        def remove_callback(self, cb: object) -> None:
            self.callbacks.remove(cb)

    monkeypatch.setenv("RLUF_LOG", "info")
    assert quiet_trainer(Trainer()).callbacks == []
    monkeypatch.setenv("RLUF_LOG", "debug")  # --verbose: the Trainer's own log line is back
    assert quiet_trainer(Trainer()).callbacks == [PrinterCallback]
