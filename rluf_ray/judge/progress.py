"""The judge's progress bar in the driver's log: done/total, calls per minute, spend and ETA.

A line every ``interval_s`` seconds and a last one at the end (formatting in ``rluf_ray.common.progress``).
Logged rather than drawn with carriage returns, so it reads the same in a terminal, in ``ray job logs``
and in a CI log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from rluf_ray.common.progress import due, judge_line
from rluf_ray.judge.cost import dollars
from rluf_ray.judge.requests import JudgeResult

if TYPE_CHECKING:
    from rluf_ray.config import PriceConfig

log = logging.getLogger("rluf.judge")


class JudgeProgress:
    """Counts finished requests and their spend; emits a progress line when one is due.

    Args:
        label: The line's label (``judge <run>``).
        total: How many requests the run judges (0: no lines).
        prompt_per_million: Dollars per million prompt tokens.
        completion_per_million: Dollars per million completion tokens.
        interval_s: Seconds between lines.
        clock: The monotonic clock, in seconds.
        emit: Where a line goes (the ``rluf.judge`` logger by default).
    """

    def __init__(
        self,
        label: str,
        total: int,
        prompt_per_million: float = 0.0,
        completion_per_million: float = 0.0,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] = log.info,
    ) -> None:
        self.label, self.total = label, total
        self.prices = (prompt_per_million, completion_per_million)
        self.interval_s, self.clock, self.emit = interval_s, clock, emit
        self.start = clock()
        self.last: float | None = None
        self.done = 0
        self.dollars = 0.0

    def update(self, results: Iterable[JudgeResult]) -> None:
        """Add finished results (cache hits cost nothing) and print a line if one is due.

        Args:
            results: Results finished since the last update; each counts as done, and a non-cached
                one adds the price of its reported tokens.
        """
        for r in results:
            self.done += 1
            if not r.cached:
                self.dollars += dollars(r.prompt_tokens, r.completion_tokens, *self.prices)
        self._maybe_emit()

    def set(self, done: int, spent: float | None = None) -> None:
        """Set the count (and spend) directly, e.g. from a Batch API status poll.

        Args:
            done: Requests finished so far (replaces the count).
            spent: Dollars spent so far; None keeps the current spend.
        """
        self.done = done
        if spent is not None:
            self.dollars = spent
        self._maybe_emit()

    def _maybe_emit(self) -> None:
        now = self.clock()
        if self.total and due(now, self.last, self.interval_s, self.done, self.total):
            self.last = now
            self.emit(judge_line(self.label, self.done, self.total, now - self.start, self.dollars))


def run_progress(run: str, total: int, prices: PriceConfig, price_factor: float = 1.0) -> JudgeProgress:
    """The progress bar of one judge run.

    Args:
        run: The run's name (the line reads ``judge <run> [...]``).
        total: How many requests the run judges.
        prices: ``judge.prices``.
        price_factor: What share of those prices the run pays (the Batch API's discount).

    Returns:
        A :class:`JudgeProgress` pricing spend at ``prices`` times ``price_factor``.
    """
    return JudgeProgress(
        f"judge {run}",
        total,
        prices.prompt_per_million * price_factor,
        prices.completion_per_million * price_factor,
    )
