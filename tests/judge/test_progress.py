"""The judge's progress bar: counts, spend (cache hits free) and when a line is printed."""

from __future__ import annotations

from rluf_ray.judge.progress import JudgeProgress
from rluf_ray.judge.requests import JudgeResult


def test_progress_lines_count_spend_and_throttle() -> None:
    now = [0.0]
    lines: list[str] = []
    bar = JudgeProgress("judge feedback", 4, 1_000_000.0, 2_000_000.0, interval_s=10.0,
                        clock=lambda: now[0], emit=lines.append)  # fmt: skip
    now[0] = 30.0
    bar.update([JudgeResult("a", 1, prompt_tokens=2, completion_tokens=1)])  # $2 + $2
    now[0] = 35.0
    bar.update([JudgeResult("b", 1, cached=True, prompt_tokens=9, completion_tokens=9)])  # free; not due
    now[0] = 60.0
    bar.update([JudgeResult("c", None, error="parse: x", prompt_tokens=1)])  # $1; due
    assert len(lines) == 2
    assert lines[0] == "judge feedback [#####---------------] 1/4 25% | 2.0 calls/min | $4.0000 | ETA 1m30s"
    assert lines[1].startswith("judge feedback [###############-----] 3/4 75% | 3.0 calls/min | $5.0000")
    now[0] = 61.0
    bar.update([JudgeResult("d", 1)])  # the last one is always printed
    assert lines[-1].endswith("4/4 100% | 3.9 calls/min | $5.0000 | ETA 0s")


def test_offline_judge_run_logs_progress(caplog) -> None:
    from rluf_ray.config import load
    from rluf_ray.judge import api as judge_api
    from rluf_ray.judge.requests import score_request

    cfg = load(None, ["judge.provider=offline"])
    reqs = [
        score_request(f"p{i}", "a post", "a ref", f"answer {i}", cfg.judge.templates.score) for i in range(3)
    ]
    with caplog.at_level("INFO", logger="rluf.judge"):
        results, _ = judge_api.judge(cfg.judge, reqs, judge_api.JudgeContext("feedback", cfg.output_dir))
    assert len(results) == 3
    assert any("judge feedback [" in m and "3/3 100%" in m for m in caplog.messages)
