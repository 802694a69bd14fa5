"""The sliding-window budget with a fake clock: no window over the caps, no burst at start."""

from __future__ import annotations

import pytest

from rluf_ray.bench.loopback_endpoint import over_cap_windows, window_counts
from rluf_ray.judge.rate_limit import SlidingWindowBudget


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def slots(budget: SlidingWindowBudget, clock: Clock, n: int, tokens: int = 1, **kw) -> list[float]:
    out = []
    for _ in range(n):
        g = budget.reserve(tokens, **kw)
        assert "delay" in g, g
        out.append(clock.t + g["delay"])
    return out


def test_starts_empty_and_paces_instead_of_bursting():
    clock = Clock()
    b = SlidingWindowBudget(rpm=60, tpm=10**9, window_s=60.0, safety=0.0, clock=clock)
    ts = slots(b, clock, 180)  # everything asked for at once
    assert ts[0] == clock.t  # the first request goes now
    gaps = [b2 - a for a, b2 in zip(ts, ts[1:], strict=False)]
    assert min(gaps) == pytest.approx(1.0)  # 60 per 60 s: one per second, never a burst
    assert max(window_counts(ts, 60.0)) == 60
    assert over_cap_windows(ts, 60.0, 60) == 0


def test_safety_margin_lengthens_the_window():
    clock = Clock()
    b = SlidingWindowBudget(rpm=10, tpm=10**9, window_s=2.0, safety=0.05, clock=clock)
    ts = slots(b, clock, 30)
    assert ts[10] - ts[0] == pytest.approx(2.1)
    # A request that arrives up to 0.1 s late cannot push a 2 s window over the cap.
    late = [t + (0.099 if i % 10 == 0 else 0.0) for i, t in enumerate(ts)]
    assert over_cap_windows(late, 2.0, 10) == 0


def test_token_budget_and_settle_refund():
    clock = Clock()
    b = SlidingWindowBudget(rpm=1000, tpm=100, window_s=10.0, safety=0.0, clock=clock)
    g1 = b.reserve(60)
    g2 = b.reserve(60)  # 120 > 100 in one window: must wait until the first leaves the window
    assert g1["delay"] == 0.0
    assert g2["delay"] == pytest.approx(10.0, abs=1e-6)
    # Refund: the first call really used 10 tokens; a third request of 30 now fits beside it.
    clock.t += 0.5
    b2 = SlidingWindowBudget(rpm=1000, tpm=100, window_s=10.0, safety=0.0, clock=clock)
    a = b2.reserve(60)
    b2.settle(a["id"], tokens=10)
    c = b2.reserve(60)
    assert c["delay"] == pytest.approx(b2.interval)
    assert "refused" in b2.reserve(101)  # larger than the whole budget: refused, not queued forever


def test_dollar_cap_counts_reservations_per_run():
    clock = Clock()
    b = SlidingWindowBudget(rpm=1000, tpm=10**9, window_s=60.0, clock=clock)
    b.open_run("gen", max_dollars=1.0)
    a = b.reserve(1, dollars=0.4, run="gen")
    b.reserve(1, dollars=0.4, run="gen")
    refused = b.reserve(1, dollars=0.4, run="gen")  # 0.4 + 0.4 reserved + 0.4 > 1.0
    assert refused["refused"].startswith("max_dollars")
    assert "delay" in b.reserve(1, dollars=0.4, run="other")  # another run's ledger is separate
    b.settle(a["id"], dollars=0.1)  # the real price was lower: room again
    assert "delay" in b.reserve(1, dollars=0.4, run="gen")
    assert b.run_stats("gen")["spent"] == pytest.approx(0.1)


def test_pause_pushes_later_slots():
    clock = Clock()
    b = SlidingWindowBudget(rpm=600, tpm=10**9, window_s=60.0, safety=0.0, clock=clock)
    b.reserve(1)
    b.pause(5.0)
    assert b.reserve(1)["delay"] == pytest.approx(5.0)


def test_random_load_never_exceeds_either_cap():
    """Randomised arrivals, token sizes and refunds: every window of slots stays within both caps."""
    import random

    rng = random.Random(5)
    clock = Clock()
    b = SlidingWindowBudget(rpm=25, tpm=2000, window_s=5.0, safety=0.0, clock=clock)
    granted: list[tuple[float, int]] = []
    open_ids = []
    for _ in range(400):
        clock.t += rng.expovariate(10.0)
        tokens = rng.randint(20, 200)
        g = b.reserve(tokens)
        granted.append((clock.t + g["delay"], tokens))
        open_ids.append((g["id"], len(granted) - 1))
        if rng.random() < 0.7 and open_ids:
            sid, idx = open_ids.pop(0)
            used = rng.randint(1, granted[idx][1])  # a refund: the server reported fewer tokens
            b.settle(sid, tokens=used)
            granted[idx] = (granted[idx][0], used)
    times = [t for t, _ in granted]
    assert times == sorted(times)
    assert over_cap_windows(times, 5.0, 25) == 0
    for i, (t0, _) in enumerate(granted):
        in_window = sum(tok for t, tok in granted[i:] if t < t0 + 5.0)
        assert in_window <= 2000


def test_stale_grant_is_replaced_and_stays_counted() -> None:
    """A grant whose holder wakes too late is not used: a fresh slot is asked for."""
    import asyncio

    from rluf_ray.judge.rate_limit import wait_for_slot

    class SlowLimiter:
        def __init__(self, slow_first: int) -> None:
            self.asked = 0
            self.settled: list[tuple[int, int | None, float | None]] = []
            self.slow_first = slow_first

        async def reserve(self, tokens: int, dollars: float = 0.0) -> dict:
            self.asked += 1
            if self.asked <= self.slow_first:
                await asyncio.sleep(0.05)  # the reply arrives late: the slot is stale on waking
            return {"id": self.asked, "delay": 0.0}

        async def settle(self, slot_id: int, tokens: int | None = None, dollars: float | None = None) -> None:
            self.settled.append((slot_id, tokens, dollars))

    lim = SlowLimiter(slow_first=2)
    grant = asyncio.run(wait_for_slot(lim, 10, max_late_s=0.01))
    assert grant["id"] == 3 and lim.asked == 3
    assert lim.settled == [(1, 0, 0.0), (2, 0, 0.0)]  # stale slots keep their count, free their tokens
    # Without a lateness bound the first grant is used; with max_stale the loop ends.
    assert asyncio.run(wait_for_slot(SlowLimiter(5), 10))["id"] == 1
    assert asyncio.run(wait_for_slot(SlowLimiter(5), 10, max_late_s=0.01, max_stale=2))["id"] == 3
