"""Retry policy of judge calls (pure): which failures to retry, backoff with jitter, Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping

RETRYABLE_STATUS = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    """429, 408, 409 and every 5xx are worth retrying; other 4xx (bad key, bad request) are not."""
    return status in RETRYABLE_STATUS or status >= 500


def retry_after_seconds(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    lower = {str(k).lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def backoff_delay(
    attempt: int, base_s: float, max_s: float, rng: random.Random, retry_after: float | None = None
) -> float:
    """Exponential backoff with jitter for retry number ``attempt`` (1-based), never below Retry-After.

    The delay is drawn uniformly from [d/2, d] with d = min(max_s, base_s * 2**(attempt-1)), so
    concurrent callers spread out instead of retrying in lockstep.
    """
    d = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    delay = rng.uniform(d / 2, d)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
