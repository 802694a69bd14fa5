"""Retry policy of judge calls (pure): which failures to retry, backoff with jitter, Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping

RETRYABLE_STATUS = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    """429, 408, 409 and every 5xx are worth retrying; other 4xx (bad key, bad request) are not.

    Args:
        status: An HTTP status code of a failed call.

    Returns:
        True when the call should be retried.
    """
    return status in RETRYABLE_STATUS or status >= 500


def retry_after_seconds(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, ``retry-after`` (seconds or HTTP date).

    Args:
        headers: The response headers (names matched case-insensitively); None: no headers.
        now: The current Unix time for an HTTP-date value; None: ``time.time()``.

    Returns:
        The wait in seconds, >= 0 (``retry-after-ms`` wins over ``retry-after``), or None when
        neither header is present or readable.
    """
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

    Args:
        attempt: The retry's number, 1 for the first (values below 1 count as 1).
        base_s: The first retry's longest delay in seconds (``judge.backoff_base_s``).
        max_s: The cap on ``d`` in seconds (``judge.backoff_max_s``).
        rng: The random source of the jitter (seeded per judge, so delays are reproducible).
        retry_after: The server's Retry-After in seconds; None: none was given.

    Returns:
        The delay in seconds: at least ``retry_after`` (which may exceed ``max_s``).
    """
    d = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    delay = rng.uniform(d / 2, d)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
