"""Progress lines people can read (pure formatting: the callers own the clock and the output).

* ``judge_line``: ``judge feedback [######--------------] 120/400 30% | 98.0 calls/min | $0.0123 | ETA 2m51s``
* ``step_line``: ``dpo step 12/40 30% | loss 0.6931 | elapsed 35s | ETA 1m22s``
* ``due``: whether a new line is worth printing (every ``interval_s`` seconds, and at the end).
"""

from __future__ import annotations

BAR_WIDTH = 20


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``; ``?`` when unknown."""
    if seconds is None or seconds < 0 or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def eta_s(done: int, total: int, elapsed_s: float) -> float | None:
    """Seconds left at the rate so far (None before anything is done); 0 once done."""
    if done >= total:
        return 0.0
    if done <= 0 or elapsed_s <= 0:
        return None
    return elapsed_s * (total - done) / done


def per_minute(done: int, elapsed_s: float) -> float:
    """Items per minute so far (0 before any time has passed)."""
    return 60.0 * done / elapsed_s if elapsed_s > 0 else 0.0


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#####---------------]``: the done share of ``width`` cells."""
    share = min(1.0, done / total) if total > 0 else 1.0
    filled = int(share * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def percent(done: int, total: int) -> str:
    """``30%`` (100% for an empty total)."""
    return f"{int(100 * done / total) if total > 0 else 100}%"


def judge_line(label: str, done: int, total: int, elapsed_s: float, dollars: float) -> str:
    """One judge progress line: bar, done/total, calls per minute, spend so far and ETA."""
    return (
        f"{label} {bar(done, total)} {done}/{total} {percent(done, total)} | "
        f"{per_minute(done, elapsed_s):.1f} calls/min | ${dollars:.4f} | "
        f"ETA {duration(eta_s(done, total, elapsed_s))}"
    )


def step_line(
    label: str, step: int, total: int, elapsed_s: float, loss: float | None = None, start_step: int = 0
) -> str:
    """One training progress line: step/total, loss, elapsed and ETA (at the rate since ``start_step``,
    where a resumed run began)."""
    loss_part = f" | loss {loss:.4f}" if loss is not None else ""
    eta = eta_s(step - start_step, total - start_step, elapsed_s)
    return (
        f"{label} step {step}/{total} {percent(step, total)}{loss_part} | "
        f"elapsed {duration(elapsed_s)} | ETA {duration(eta)}"
    )


def due(now_s: float, last_s: float | None, interval_s: float, done: int, total: int) -> bool:
    """Whether to print: the first update, every ``interval_s`` seconds, and the final one."""
    return last_s is None or done >= total or now_s - last_s >= interval_s
