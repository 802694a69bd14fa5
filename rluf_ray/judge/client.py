"""The API judge: any OpenAI-compatible endpoint through the official ``openai`` AsyncOpenAI client.

One :class:`ApiJudge` lives in one process (a Ray actor, or the driver) and keeps many calls in
flight, at most ``judge.max_in_flight_per_actor``. Every HTTP attempt first books a slot in the shared
budget (``rluf_ray.judge.rate_limit``), so retries count against the limits like any other request.

* 429, 5xx, 408/409, timeouts and connection errors are retried with exponential backoff and jitter,
  at least as long as the server's Retry-After; a 429 also pauses the whole shared budget.
* Under ``judge.structured_output: json_schema`` every call carries ``response_format`` with the task's
  JSON schema and the reply is parsed as JSON; under ``none`` the free-text parsers read it.
* A reply that does not parse (or a body that is not JSON) is re-asked up to
  ``judge.max_parse_retries`` times.
* A request that finally fails is a :class:`JudgeResult` with ``value=None`` and ``error`` set to
  ``"<kind>: <detail>"``; never a score.
* The API key comes from the environment variable named by ``judge.api_key_env`` only, and is
  scrubbed from every error text this module produces.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Sequence
from typing import Any

from rluf_ray.config import JudgeConfig
from rluf_ray.errors import RlufError
from rluf_ray.judge.cache import JudgeCache, cache_key
from rluf_ray.judge.cost import CostLedger, estimate_prompt_tokens
from rluf_ray.judge.parsing import ParseFailure
from rluf_ray.judge.rate_limit import wait_for_slot
from rluf_ray.judge.requests import JudgeRequest, JudgeResult
from rluf_ray.judge.retry import backoff_delay, is_retryable_status, retry_after_seconds
from rluf_ray.judge.schemas import parse_reply, response_format
from rluf_ray.judge.templates import render_request

log = logging.getLogger("rluf.judge")


def read_api_key(cfg: JudgeConfig) -> str:
    """The key from the environment variable ``cfg.api_key_env`` (its name is safe to print).

    Args:
        cfg: The judge config section; only ``api_key_env`` is read.

    Returns:
        The API key (never logged).

    Raises:
        RlufError: The variable is unset or empty (a local endpoint without auth needs a placeholder).
    """
    key = os.environ.get(cfg.api_key_env, "")
    if not key:
        raise RlufError(
            f"judge: environment variable {cfg.api_key_env} (judge.api_key_env) is not set; "
            "for a local endpoint without auth set it to any placeholder"
        )
    return key


def sampling_params(cfg: JudgeConfig) -> dict[str, Any]:
    """The sampling parameters sent with every call (and hashed into the cache key).

    Args:
        cfg: The judge config section.

    Returns:
        ``temperature`` and ``max_tokens`` from ``cfg``.
    """
    return {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}


def request_params(cfg: JudgeConfig, task: str) -> dict[str, Any]:
    """Everything sent with a call of ``task`` besides model and messages (hashed into the cache key).

    Args:
        cfg: The judge config section.
        task: The request's task (``score``, ``pairwise`` or ``rubric``).

    Returns:
        The sampling parameters, plus ``response_format`` with the task's reply schema under
        ``judge.structured_output: json_schema``.
    """
    params = sampling_params(cfg)
    if cfg.structured_output == "json_schema":
        params["response_format"] = response_format(task)
    return params


def request_cache_key(cfg: JudgeConfig, req: JudgeRequest) -> tuple[list[dict[str, str]], str]:
    """Rendered messages and the cache key of a request (everything that determines the reply).

    Args:
        cfg: The judge config section (model, sampling parameters, structured output).
        req: The request, rendered with its template version.

    Returns:
        ``(messages, key)``: the chat messages sent and their ``rluf_ray.judge.cache.cache_key``.
    """
    messages = render_request(req)
    return messages, cache_key(cfg.model, req.version, messages, request_params(cfg, req.task))


def from_cache(cfg: JudgeConfig, req: JudgeRequest, cache: JudgeCache, key: str) -> JudgeResult | None:
    """The request's result from a cached reply, or None when absent or no longer parsing.

    Args:
        cfg: The judge config section (``structured_output`` picks the parser).
        req: The request.
        cache: The cache to read.
        key: The request's cache key (:func:`request_cache_key`).

    Returns:
        A cached result (``cached=True``, no attempts, no tokens charged), or None when the key is
        not stored or its reply no longer parses.
    """
    hit = cache.get(key)
    if hit is None:
        return None
    value = parse_reply(req.task, hit.reply, req.version, cfg.structured_output)
    if isinstance(value, ParseFailure):
        return None
    return JudgeResult(req.key, value, None, hit.reply, 0, True)


class ApiJudge:
    """Rate-limited, retrying, caching judge for one process; ``await judge(req)`` never raises.

    Args:
        cfg: The judge config section.
        limiter: The shared budget (``LocalLimiter`` or ``RayLimiter``): async ``reserve``,
            ``settle`` and ``pause``.
        cache: The judge cache to answer hits from and store parsed replies in; None: no cache.
        ledger: The cost ledger to record into; None: a new one at ``judge.prices``.
        api_key: The API key; None: read from ``judge.api_key_env``.
        seed: Seed of the retry jitter.
    """

    def __init__(
        self,
        cfg: JudgeConfig,
        limiter: Any,
        cache: JudgeCache | None = None,
        ledger: CostLedger | None = None,
        api_key: str | None = None,
        seed: int = 0,
    ) -> None:
        self.cfg = cfg
        self.limiter = limiter
        self.cache = cache
        self.ledger = ledger or CostLedger(cfg.prices.prompt_per_million, cfg.prices.completion_per_million)
        self._key = api_key if api_key is not None else read_api_key(cfg)
        self._rng = random.Random(seed)
        self._client: Any = None
        self._sem: asyncio.Semaphore | None = None
        self.params = sampling_params(cfg)
        # A slot used later than half the budget's safety margin could crowd the next window.
        self.max_late_s = cfg.rate_safety * cfg.rate_window_s / 2

    # -- helpers ------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        text = str(text)
        if self._key:
            text = text.replace(self._key, "***")
        return text[:300]

    def _ensure(self) -> None:
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                api_key=self._key, base_url=self.cfg.base_url, timeout=self.cfg.timeout_s, max_retries=0
            )
            self._sem = asyncio.Semaphore(self.cfg.max_in_flight_per_actor)

    def key_for(self, req: JudgeRequest) -> tuple[list[dict[str, str]], str]:
        """Rendered messages and the cache key of a request.

        Args:
            req: The request.

        Returns:
            ``(messages, key)`` as :func:`request_cache_key` gives them under this judge's config.
        """
        return request_cache_key(self.cfg, req)

    # -- the call -----------------------------------------------------------------------------
    async def judge(self, req: JudgeRequest) -> JudgeResult:
        """Answer one request: from the cache, or by calling the endpoint with retries.

        Args:
            req: The request.

        Returns:
            Its result; a request that finally fails (refused by the budget, retries or re-asks
            spent, a fatal HTTP status, an unexpected error) is ``value=None`` with ``error`` set to
            ``"<kind>: <detail>"``. The outcome is recorded in the ledger.
        """
        try:
            result = await self._judge(req)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unexpected client error is still a recorded miss
            result = JudgeResult(req.key, None, f"internal: {type(exc).__name__}: {self._redact(str(exc))}")
        self.ledger.outcome(result.ok, result.cached, result.error)
        return result

    async def _judge(self, req: JudgeRequest) -> JudgeResult:
        messages, key = self.key_for(req)
        if self.cache is not None:
            cached = from_cache(self.cfg, req, self.cache, key)
            if cached is not None:
                return cached
        self._ensure()
        assert self._sem is not None
        est_prompt = estimate_prompt_tokens(messages)
        est_tokens = est_prompt + self.cfg.max_tokens
        est_dollars = self.ledger.price(est_prompt, self.cfg.max_tokens)
        attempts = transient = malformed = 0
        async with self._sem:
            while True:
                grant = await wait_for_slot(self.limiter, est_tokens, est_dollars, self.max_late_s)
                if "refused" in grant:
                    return JudgeResult(req.key, None, grant["refused"], attempts=attempts)
                slot = grant["id"]
                attempts += 1
                self.ledger.calls += 1
                retry_after: float | None = None
                reason: str
                retry_kind: str
                try:
                    resp = await self._client.chat.completions.create(
                        model=self.cfg.model, messages=messages, **request_params(self.cfg, req.task)
                    )
                except Exception as exc:  # classified below
                    await self.limiter.settle(slot, None, 0.0)
                    retry_kind, reason, retry_after = self._classify(exc)
                    if reason.startswith("timeout"):
                        self.ledger.timed_out += 1
                    if retry_kind == "fatal":
                        return JudgeResult(req.key, None, reason, attempts=attempts)
                    if (
                        retry_kind == "transient"
                        and retry_after is not None
                        and reason.startswith("rate_limited")
                    ):
                        await self.limiter.pause(retry_after)
                else:
                    usage = getattr(resp, "usage", None)
                    pt = int(getattr(usage, "prompt_tokens", 0) or 0)
                    ct = int(getattr(usage, "completion_tokens", 0) or 0)
                    cost = self.ledger.charge(pt, ct)
                    await self.limiter.settle(slot, pt + ct if usage is not None else None, cost)
                    content = resp.choices[0].message.content if getattr(resp, "choices", None) else None
                    value = parse_reply(req.task, content or "", req.version, self.cfg.structured_output)
                    if not isinstance(value, ParseFailure):
                        if self.cache is not None:
                            self.cache.put(key, self.cfg.model, req.version, content or "", pt, ct)
                        return JudgeResult(req.key, value, None, content, attempts, False, pt, ct)
                    retry_kind, reason = "malformed", f"parse: {value.reason}"
                if retry_kind == "malformed":
                    malformed += 1
                    if malformed > self.cfg.max_parse_retries:
                        return JudgeResult(
                            req.key, None, f"{reason} (after {malformed} replies)", attempts=attempts
                        )
                    continue
                transient += 1
                if transient > self.cfg.max_retries:
                    return JudgeResult(
                        req.key, None, f"{reason} (after {attempts} attempts)", attempts=attempts
                    )
                delay = backoff_delay(
                    transient, self.cfg.backoff_base_s, self.cfg.backoff_max_s, self._rng, retry_after
                )
                log.debug("judge %s: %s, retry %d in %.2fs", req.key, reason, transient, delay)
                await asyncio.sleep(delay)

    def _classify(self, exc: Exception) -> tuple[str, str, float | None]:
        """(kind, reason, retry_after): kind is transient, malformed or fatal."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return "transient", "timeout: no reply within judge.timeout_s", None
        if isinstance(exc, openai.APIConnectionError):
            return "transient", f"connection: {self._redact(str(exc))}", None
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            after = retry_after_seconds(dict(exc.response.headers)) if exc.response is not None else None
            if status == 429:
                return "transient", "rate_limited: HTTP 429", after
            if is_retryable_status(status):
                return "transient", f"server_error: HTTP {status}", after
            return "fatal", f"http_{status}: {self._redact(getattr(exc, 'message', str(exc)))}", None
        if isinstance(exc, (ValueError, openai.APIResponseValidationError)):
            return "malformed", "malformed: reply body is not a chat completion", None
        return "fatal", f"client: {type(exc).__name__}: {self._redact(str(exc))}", None

    async def judge_many(self, reqs: Sequence[JudgeRequest]) -> list[JudgeResult]:
        """Answer many requests concurrently (bounded by the in-flight cap), in input order.

        Args:
            reqs: The requests.

        Returns:
            One result per request, in input order (as :meth:`judge`).
        """
        return list(await asyncio.gather(*(self.judge(r) for r in reqs)))

    async def aclose(self) -> None:
        """Close the HTTP client, if one was opened; a later call opens a new one."""
        if self._client is not None:
            await self._client.close()
            self._client = None
