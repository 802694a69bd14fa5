"""One request/token budget per sliding window, exact about limits, with reservations.

:class:`SlidingWindowBudget` is plain Python with an injectable clock; the Ray layer
(``rluf_ray.judge.actors.BudgetActor``) hosts one instance in a named actor so that every judge
actor of the cluster draws from the same budget. A caller ``reserve``s a slot with its estimated tokens and gets
back the delay after which it may send; after the call it ``settle``s the slot with the tokens the
server reported (a refund or a charge).

How it keeps every sliding window under the caps:

* slots are paced at least ``window_eff / rpm`` apart and start at the first request (no full
  bucket at start, unlike aiolimiter's default, which lets a whole window's budget through at once
  and so shows up to twice the cap in the first sliding window);
* a slot is also checked against the log of granted slots: no window of length ``window_eff`` may
  hold more than ``rpm`` requests or ``tpm`` reserved tokens;
* ``window_eff = window * (1 + safety)``, a little longer than the provider's window, so that a
  request that reaches the server a little later than its slot (scheduling jitter) cannot push a
  window of the server's length over the cap.

A 429 may push every later slot back (``pause``), so the whole cluster backs off together.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class _Slot:
    id: int
    t: float
    tokens: int
    dollars: float
    run: str
    in_log: bool = True


@dataclass
class _Run:
    """Dollar accounting of one stage run sharing the budget (spent, reserved, optional cap)."""

    max_dollars: float | None = None
    spent: float = 0.0
    reserved: float = 0.0


class SlidingWindowBudget:
    """Requests-per-window and tokens-per-window budget, plus optional dollar caps per run.

    A *run* (one stage execution) has its own dollar cap and spend, so stages that share the
    endpoint's request budget still keep separate ledgers.

    Args:
        rpm: Requests allowed per window.
        tpm: Tokens allowed per window.
        window_s: Length of the provider's window in seconds.
        safety: Share by which the budget's window is made longer than ``window_s``.
        max_dollars: The dollar cap of the ``default`` run; None: no cap.
        clock: The monotonic clock, in seconds.
    """

    def __init__(
        self,
        rpm: int,
        tpm: int,
        window_s: float = 60.0,
        safety: float = 0.02,
        max_dollars: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.configure(rpm, tpm, window_s, safety)
        self.runs: dict[str, _Run] = {"default": _Run(max_dollars)}
        self._log: deque[_Slot] = deque()
        self._open: dict[int, _Slot] = {}
        self._ids = itertools.count(1)
        self._next = -float("inf")
        self._tokens = 0  # tokens of the slots in the log
        self.granted = 0
        self.refused = 0

    def configure(self, rpm: int, tpm: int, window_s: float = 60.0, safety: float = 0.02) -> None:
        """Set the caps (a budget actor found by name may be reconfigured by a later stage).

        Args:
            rpm: Requests allowed per window, at least 1.
            tpm: Tokens allowed per window, at least 1.
            window_s: Length of the provider's window in seconds, > 0 (the caps are "per minute"
                only at the default 60).
            safety: Share by which the budget's window is made longer than ``window_s``, >= 0.

        Raises:
            ValueError: A cap or the window is not positive, or ``safety`` is negative.
        """
        if rpm < 1 or tpm < 1 or window_s <= 0 or safety < 0:
            raise ValueError("rpm, tpm and window_s must be positive, safety >= 0")
        self.rpm, self.tpm = rpm, tpm
        self.window = window_s * (1.0 + safety)
        self.interval = self.window / rpm

    def open_run(self, run: str, max_dollars: float | None) -> None:
        """Start (or restart) the dollar ledger of one run with its cap.

        Args:
            run: The run's name (the stage).
            max_dollars: The run's cap in dollars; None: no cap. A restart forgets earlier spend.
        """
        self.runs[run] = _Run(max_dollars)

    def run_stats(self, run: str = "default") -> dict[str, Any]:
        """One run's dollars.

        Args:
            run: The run's name (an unknown run reports zeros and no cap).

        Returns:
            ``spent`` and ``reserved`` (rounded to 6 places) and ``max_dollars``.
        """
        r = self.runs.get(run, _Run())
        return {"spent": round(r.spent, 6), "reserved": round(r.reserved, 6), "max_dollars": r.max_dollars}

    # -- internals -----------------------------------------------------------------------------
    def _prune(self, now: float) -> None:
        while self._log and self._log[0].t <= now - self.window:
            old = self._log.popleft()
            old.in_log = False
            self._tokens -= old.tokens

    def _earliest(self, start: float, tokens: int) -> float:
        """Earliest time >= start at which a slot with ``tokens`` keeps both windows under cap."""
        # The log is sorted by time: walk its head past the slots that leave the window (usually few).
        t, i, skipped, n = start, 0, 0, len(self._log)
        while True:
            lo = t - self.window
            while i < n and self._log[i].t <= lo:
                skipped += self._log[i].tokens
                i += 1
            if (n - i) + 1 <= self.rpm and (self._tokens - skipped) + tokens <= self.tpm:
                return t
            # Move just past the oldest slot still inside the window and check again.
            t = max(t, self._log[i].t + self.window + 1e-9)

    # -- API ---------------------------------------------------------------------------------
    def reserve(self, tokens: int, dollars: float = 0.0, run: str = "default") -> dict[str, Any]:
        """Book a slot for one request; returns ``{"id", "delay"}`` or ``{"refused": reason}``.

        Args:
            tokens: The request's estimated tokens (prompt plus maximum completion); a request over
                ``tpm`` is refused.
            dollars: The request's worst-case price; it is held against the run's cap until settled,
                so concurrent callers cannot overshoot the cap together.
            run: The run whose dollar ledger pays (an unknown run gets a ledger without a cap).

        Returns:
            ``{"id": slot id, "delay": seconds from now until the slot}``, or ``{"refused": reason}``
            with a ``tokens:`` or ``max_dollars:`` reason.
        """
        now = self.clock()
        self._prune(now)
        r = self.runs.setdefault(run, _Run())
        if tokens > self.tpm:
            self.refused += 1
            return {"refused": f"tokens: request needs ~{tokens} tokens, over tokens_per_minute {self.tpm}"}
        if r.max_dollars is not None and r.spent + r.reserved + dollars > r.max_dollars:
            self.refused += 1
            return {"refused": f"max_dollars: judge.max_dollars={r.max_dollars} reached"}
        t = self._earliest(max(now, self._next), tokens)
        slot = _Slot(next(self._ids), t, tokens, dollars, run)
        self._log.append(slot)
        self._tokens += tokens
        self._open[slot.id] = slot
        self._next = t + self.interval
        r.reserved += dollars
        self.granted += 1
        return {"id": slot.id, "delay": max(0.0, t - now)}

    def settle(self, slot_id: int, tokens: int | None = None, dollars: float | None = None) -> None:
        """Close a reservation with the reported usage (None keeps the estimate: the safe side).

        Args:
            slot_id: The ``id`` of the grant; an unknown or already settled id is ignored.
            tokens: Reported prompt plus completion tokens; None keeps the estimate.
            dollars: The actual price; None charges the reserved worst case.
        """
        slot = self._open.pop(slot_id, None)
        if slot is None:
            return
        if tokens is not None:
            if slot.in_log:
                self._tokens += tokens - slot.tokens
            slot.tokens = tokens
        r = self.runs.setdefault(slot.run, _Run())
        r.reserved -= slot.dollars
        r.spent += slot.dollars if dollars is None else dollars

    def pause(self, seconds: float) -> None:
        """Push every later slot back by at least ``seconds`` from now (after a 429).

        Args:
            seconds: The least delay from now before the next slot (the server's Retry-After).
        """
        self._next = max(self._next, self.clock() + seconds)

    def stats(self) -> dict[str, Any]:
        """The budget's counters.

        Returns:
            ``granted`` and ``refused`` reservations so far, and ``open`` (granted, not yet settled).
        """
        return {"granted": self.granted, "refused": self.refused, "open": len(self._open)}


class LocalLimiter:
    """Async adapter around an in-process budget (one process, no Ray).

    Args:
        budget: The budget to draw from.
        run: The run whose dollar ledger every reservation is charged to.
    """

    def __init__(self, budget: SlidingWindowBudget, run: str = "default") -> None:
        self.budget = budget
        self.run = run

    async def reserve(self, tokens: int, dollars: float = 0.0) -> dict[str, Any]:
        """Book a slot for this limiter's run (:meth:`SlidingWindowBudget.reserve`).

        Args:
            tokens: The request's estimated prompt plus maximum completion tokens.
            dollars: The request's worst-case price (0: not counted against the cap).

        Returns:
            ``{"id", "delay"}`` (delay in seconds), or ``{"refused": reason}``.
        """
        return self.budget.reserve(tokens, dollars, self.run)

    async def settle(self, slot_id: int, tokens: int | None = None, dollars: float | None = None) -> None:
        """Close a reservation with the reported usage (:meth:`SlidingWindowBudget.settle`).

        Args:
            slot_id: The ``id`` of the grant.
            tokens: Reported prompt plus completion tokens; None keeps the estimate.
            dollars: The actual price; None charges the reserved worst case.
        """
        self.budget.settle(slot_id, tokens, dollars)

    async def pause(self, seconds: float) -> None:
        """Push every later slot back (:meth:`SlidingWindowBudget.pause`).

        Args:
            seconds: The least delay from now before the next slot.
        """
        self.budget.pause(seconds)


async def wait_for_slot(
    limiter: Any, tokens: int, dollars: float = 0.0, max_late_s: float | None = None, max_stale: int = 20
) -> dict[str, Any]:
    """Reserve through ``limiter`` and sleep until the slot's time; returns the grant.

    A grant used late (a starved event loop, a slow reply from the budget actor) would send the
    request into a later window than the one it was counted in and could crowd that window. When the
    time from asking to waking exceeds the slot's delay by more than ``max_late_s``, the stale slot
    stays counted (the safe side), its tokens are released, and a fresh slot is asked for; after
    ``max_stale`` stale grants in a row the last one is used anyway, so a starved worker still ends.

    Args:
        limiter: A limiter (:class:`LocalLimiter`, ``rluf_ray.judge.actors.RayLimiter``): async
            ``reserve(tokens, dollars)`` and ``settle(slot_id, tokens, dollars)``.
        tokens: The request's estimated prompt plus maximum completion tokens.
        dollars: The request's worst-case price.
        max_late_s: Seconds a grant may be used after its slot; None: any lateness is accepted.
        max_stale: How many stale grants in a row are released (their tokens freed) before the
            next one is used however late.

    Returns:
        The grant (``{"id", "delay"}``) to send under and settle, or the limiter's
        ``{"refused": reason}``.
    """
    for attempt in range(max_stale + 1):
        t0 = time.monotonic()
        grant = await limiter.reserve(tokens, dollars)
        if "refused" in grant:
            return grant
        delay = max(0.0, float(grant.get("delay", 0.0)))
        if delay > 0:
            await asyncio.sleep(delay)
        late = time.monotonic() - t0 - delay
        if max_late_s is None or late <= max_late_s or attempt == max_stale:
            return grant
        await limiter.settle(grant["id"], 0, 0.0)
    raise AssertionError("unreachable")  # pragma: no cover
