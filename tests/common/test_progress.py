"""Progress lines: hand-computed rates, ETAs and bars."""

from __future__ import annotations

import pytest

from rluf_ray.common.progress import bar, due, duration, eta_s, judge_line, per_minute, percent, step_line


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (-1, "?"), (float("inf"), "?"), (0, "0s"), (59.4, "59s"), (185, "3m05s"), (7620, "2h07m")],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_eta_rate_bar_percent() -> None:
    assert eta_s(0, 10, 5.0) is None  # nothing done yet: no rate
    assert eta_s(10, 10, 5.0) == 0.0
    assert eta_s(25, 100, 50.0) == pytest.approx(150.0)  # 2 s per item, 75 left
    assert per_minute(30, 20.0) == pytest.approx(90.0)
    assert per_minute(3, 0.0) == 0.0
    assert bar(5, 20, width=8) == "[##------]"
    assert bar(30, 20, width=4) == "[####]"
    assert percent(1, 3) == "33%" and percent(0, 0) == "100%"


def test_judge_line() -> None:
    line = judge_line("judge feedback", 120, 400, 80.0, 0.01234)
    assert line == (
        "judge feedback [######--------------] 120/400 30% | 90.0 calls/min | $0.0123 | ETA 3m07s"
    )


def test_step_line_counts_eta_from_the_resumed_step() -> None:
    assert (
        step_line("dpo", 12, 40, 24.0, 0.69314) == "dpo step 12/40 30% | loss 0.6931 | elapsed 24s | ETA 56s"
    )
    # Resumed at step 10: 2 steps in 24 s (12 s a step), 28 left -> 336 s.
    assert step_line("sft", 12, 40, 24.0, start_step=10).endswith("elapsed 24s | ETA 5m36s")


def test_due() -> None:
    assert due(0.0, None, 10.0, 1, 5)  # first update
    assert not due(5.0, 0.0, 10.0, 2, 5)
    assert due(10.0, 0.0, 10.0, 3, 5)
    assert due(1.0, 0.5, 10.0, 5, 5)  # the final one always
