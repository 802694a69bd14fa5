"""Cost ledger, token estimate, backoff and Retry-After (pure, hand-computed numbers)."""

from __future__ import annotations

import random

import pytest

from rluf_ray.judge.cost import CostLedger, dollars, estimate_prompt_tokens
from rluf_ray.judge.retry import backoff_delay, is_retryable_status, retry_after_seconds


def test_dollars_and_ledger():
    # 1000 prompt tokens at $2.5/M + 200 completion at $10/M = 0.0025 + 0.002
    assert dollars(1000, 200, 2.5, 10.0) == pytest.approx(0.0045)
    led = CostLedger(2.5, 10.0)
    led.calls += 2
    assert led.charge(1000, 200) == pytest.approx(0.0045)
    led.charge(3000, 0)
    led.outcome(True)
    led.outcome(True, cached=True)
    led.outcome(False, reason="timeout: no reply")
    d = led.to_dict()
    assert d["prompt_tokens"] == 4000 and d["completion_tokens"] == 200
    assert d["dollars"] == pytest.approx(0.0045 + 0.0075)
    assert d["scored"] == 2 and d["cache_hits"] == 1 and d["missing"] == 1
    assert d["missing_reasons"] == {"timeout": 1}
    other = CostLedger()
    other.merge(d)
    other.merge(d)
    assert other.calls == 4 and other.missing_reasons == {"timeout": 2}


def test_estimate_prompt_tokens():
    msgs = [{"role": "system", "content": "abcdef"}, {"role": "user", "content": "abcdefg"}]
    # 3 (reply) + (4 + ceil(6/3)) + (4 + ceil(7/3)) = 3 + 6 + 7
    assert estimate_prompt_tokens(msgs) == 16
    assert estimate_prompt_tokens(msgs, count=lambda s: len(s.split())) == 3 + 5 + 5


def test_backoff_grows_caps_and_honours_retry_after():
    rng = random.Random(0)
    for attempt, full in [(1, 0.5), (2, 1.0), (3, 2.0), (10, 8.0)]:
        d = backoff_delay(attempt, 0.5, 8.0, rng)
        assert full / 2 <= d <= full
    assert backoff_delay(1, 0.5, 8.0, rng, retry_after=3.0) == 3.0
    delays = {round(backoff_delay(3, 0.5, 8.0, rng), 6) for _ in range(20)}
    assert len(delays) > 1  # jitter


def test_retry_after_forms():
    assert retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_retryable_status():
    assert all(is_retryable_status(s) for s in (429, 500, 502, 503, 408))
    assert not any(is_retryable_status(s) for s in (400, 401, 403, 404, 422))
