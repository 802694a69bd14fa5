"""Progress lines people can read (pure formatting: the callers own the clock and the output).

* ``judge_line``: ``judge feedback [######--------------] 120/400 30% | 98.0 calls/min | $0.0123 | ETA 2m51s``
* ``step_line``: ``dpo step 12/40 30% | loss 0.6931 | elapsed 35s | ETA 1m22s``
* ``due``: whether a new line is worth printing (every ``interval_s`` seconds, and at the end).
"""

from __future__ import annotations

BAR_WIDTH = 20


def duration(seconds: float | None) -> str:
    """Format a duration as ``42s``, ``3m05s`` or ``2h07m``.

    Args:
        seconds: The duration in seconds; None, negative, NaN or infinite means unknown.

    Returns:
        The short form, rounded to whole seconds (minutes from an hour on); ``?`` when unknown.
    """
    if seconds is None or seconds < 0 or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def eta_s(done: int, total: int, elapsed_s: float) -> float | None:
    """Estimate the seconds left at the rate so far.

    Args:
        done: Items finished so far.
        total: Items in all.
        elapsed_s: Seconds spent on the ``done`` items.

    Returns:
        The seconds left; None before anything is done (or no time has passed); 0 once done.
    """
    if done >= total:
        return 0.0
    if done <= 0 or elapsed_s <= 0:
        return None
    return elapsed_s * (total - done) / done


def per_minute(done: int, elapsed_s: float) -> float:
    """Compute the rate so far in items per minute.

    Args:
        done: Items finished so far.
        elapsed_s: Seconds spent on them.

    Returns:
        Items per minute; 0 before any time has passed.
    """
    return 60.0 * done / elapsed_s if elapsed_s > 0 else 0.0


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """Draw a text progress bar such as ``[#####---------------]``.

    Args:
        done: Items finished so far.
        total: Items in all; an empty total draws a full bar.
        width: Cells between the brackets.

    Returns:
        The bar: the done share of ``width`` cells as ``#`` (rounded down, at most full), the rest ``-``.
    """
    share = min(1.0, done / total) if total > 0 else 1.0
    filled = int(share * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def percent(done: int, total: int) -> str:
    """Format the done share as a whole percentage such as ``30%``.

    Args:
        done: Items finished so far.
        total: Items in all.

    Returns:
        The percentage, rounded down; ``100%`` for an empty total.
    """
    return f"{int(100 * done / total) if total > 0 else 100}%"


def judge_line(label: str, done: int, total: int, elapsed_s: float, dollars: float) -> str:
    """Format one judge progress line: bar, done/total, calls per minute, spend so far and ETA.

    Args:
        label: What is being judged, printed first (e.g. ``judge feedback``).
        done: Judge calls finished so far.
        total: Judge calls in all.
        elapsed_s: Seconds since the judging began.
        dollars: Spend so far in US dollars.

    Returns:
        The line, without a trailing newline.
    """
    return (
        f"{label} {bar(done, total)} {done}/{total} {percent(done, total)} | "
        f"{per_minute(done, elapsed_s):.1f} calls/min | ${dollars:.4f} | "
        f"ETA {duration(eta_s(done, total, elapsed_s))}"
    )


def step_line(
    label: str, step: int, total: int, elapsed_s: float, loss: float | None = None, start_step: int = 0
) -> str:
    """Format one training progress line: step/total, loss, elapsed and ETA.

    Args:
        label: The stage, printed first (e.g. ``dpo``).
        step: Optimizer steps finished so far (counting those before a resume).
        total: Optimizer steps in all.
        elapsed_s: Seconds since this run (or resume) began.
        loss: The latest training loss; None leaves it out of the line.
        start_step: The step a resumed run began at; the ETA uses the rate since then.

    Returns:
        The line, without a trailing newline.
    """
    loss_part = f" | loss {loss:.4f}" if loss is not None else ""
    eta = eta_s(step - start_step, total - start_step, elapsed_s)
    return (
        f"{label} step {step}/{total} {percent(step, total)}{loss_part} | "
        f"elapsed {duration(elapsed_s)} | ETA {duration(eta)}"
    )


def due(now_s: float, last_s: float | None, interval_s: float, done: int, total: int) -> bool:
    """Decide whether a progress line is due: the first update, every ``interval_s`` seconds, and the last.

    Args:
        now_s: The current time in seconds (any clock, the same one as ``last_s``).
        last_s: When the last line was printed; None if none was yet.
        interval_s: The least seconds between two lines.
        done: Items finished so far.
        total: Items in all (``done >= total`` is the final update).

    Returns:
        True when a line should be printed now.
    """
    return last_s is None or done >= total or now_s - last_s >= interval_s
