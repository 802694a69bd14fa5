"""Token estimates, the cost ledger of judge calls and the dry-run estimate (pure; prices come from
``judge.prices``).

The token estimate needs no download (tiktoken fetches its encodings at run time, which fails
offline): about 3 characters per token for the prompt plus a fixed overhead per message, plus the
full ``max_tokens`` for the completion. A real tokenizer can be passed instead where one is local.
The rate limiter reserves this estimate before a call and corrects it from the reported usage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CHARS_PER_TOKEN = 3.0
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3


def estimate_prompt_tokens(
    messages: Iterable[Mapping[str, str]], count: Callable[[str], int] | None = None
) -> int:
    """Prompt tokens of chat messages: a tokenizer's count, else ceil(chars / 3), plus overheads.

    Args:
        messages: Chat messages; only their ``content`` is counted (missing: empty).
        count: A tokenizer's token count of one text; None: ``ceil(len(text) / CHARS_PER_TOKEN)``.

    Returns:
        The estimate: ``TOKENS_PER_MESSAGE`` plus the content's tokens per message, plus
        ``TOKENS_PER_REPLY`` once.
    """
    total = TOKENS_PER_REPLY
    for m in messages:
        text = m.get("content", "")
        total += TOKENS_PER_MESSAGE + (count(text) if count else math.ceil(len(text) / CHARS_PER_TOKEN))
    return total


def dollars(
    prompt_tokens: int, completion_tokens: int, prompt_per_million: float, completion_per_million: float
) -> float:
    """Price of a call from the per-million-token prices.

    Args:
        prompt_tokens: Prompt tokens of the call.
        completion_tokens: Completion tokens of the call.
        prompt_per_million: Dollars per million prompt tokens.
        completion_per_million: Dollars per million completion tokens.

    Returns:
        The price in dollars (not rounded).
    """
    return (prompt_tokens * prompt_per_million + completion_tokens * completion_per_million) / 1e6


@dataclass
class CostLedger:
    """Calls, cache hits, tokens and dollars of one stage; mergeable across actors."""

    prompt_per_million: float = 0.0
    completion_per_million: float = 0.0
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dollars: float = 0.0
    scored: int = 0
    missing: int = 0
    missing_reasons: dict[str, int] = field(default_factory=dict)
    timed_out: int = 0  # attempts given up client-side (the server may never have seen them)

    def price(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Price of a call at this ledger's prices.

        Args:
            prompt_tokens: Prompt tokens of the call.
            completion_tokens: Completion tokens of the call.

        Returns:
            The price in dollars; nothing is recorded.
        """
        return dollars(prompt_tokens, completion_tokens, self.prompt_per_million, self.completion_per_million)

    def charge(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Record one call's reported usage (``calls`` counts HTTP attempts separately).

        Args:
            prompt_tokens: Prompt tokens the server reported.
            completion_tokens: Completion tokens the server reported.

        Returns:
            The call's price in dollars, now added to ``dollars``.
        """
        cost = self.price(prompt_tokens, completion_tokens)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.dollars += cost
        return cost

    def outcome(self, ok: bool, cached: bool = False, reason: str | None = None) -> None:
        """Record one request's final outcome (scored, cached, or missing with a reason).

        Args:
            ok: The request got a value (counted in ``scored``, else in ``missing``).
            cached: The value came from the cache (counted in ``cache_hits`` as well).
            reason: Why a missing request failed, ``"<kind>: <detail>"``; its kind (the text before
                the first colon; None: ``unknown``) is counted in ``missing_reasons``.
        """
        if cached:
            self.cache_hits += 1
        if ok:
            self.scored += 1
        else:
            self.missing += 1
            kind = (reason or "unknown").split(":", 1)[0]
            self.missing_reasons[kind] = self.missing_reasons.get(kind, 0) + 1

    def merge(self, other: CostLedger | Mapping[str, Any]) -> None:
        """Add another ledger (or its dict form) into this one; prices are not merged.

        Args:
            other: A ledger, or its :meth:`to_dict` form (an actor's ledger); absent counters are 0.
        """
        o = other if isinstance(other, Mapping) else other.to_dict()
        for name in (
            "calls",
            "cache_hits",
            "prompt_tokens",
            "completion_tokens",
            "dollars",
            "scored",
            "missing",
            "timed_out",
        ):
            setattr(self, name, getattr(self, name) + o.get(name, 0))
        for k, v in o.get("missing_reasons", {}).items():
            self.missing_reasons[k] = self.missing_reasons.get(k, 0) + v

    def to_dict(self) -> dict[str, Any]:
        """The counters as plain data, for reports and for :meth:`merge`.

        Returns:
            ``calls``, ``cache_hits``, ``prompt_tokens``, ``completion_tokens``, ``dollars`` (rounded
            to 6 places), ``scored``, ``missing``, ``missing_reasons`` (sorted by kind) and
            ``timed_out``; the prices are left out.
        """
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "dollars": round(self.dollars, 6),
            "scored": self.scored,
            "missing": self.missing,
            "missing_reasons": dict(sorted(self.missing_reasons.items())),
            "timed_out": self.timed_out,
        }


def offline_dry_run(stage: str, requests: int) -> dict[str, Any]:
    """The dry-run summary of the offline judge: it makes no calls and costs nothing.

    Args:
        stage: The run's name (the estimate's ``stage``).
        requests: How many requests the run would judge.

    Returns:
        The fields of :func:`dry_run_cost` (without ``model``), every count and cost zero.
    """
    return {
        "stage": stage,
        "provider": "offline",
        "requests": requests,
        "calls": 0,
        "cached": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "dollars": 0.0,
    }


def dry_run_cost(
    stage: str,
    provider: str,
    model: str,
    prompt_tokens: Sequence[int],
    cached: Sequence[bool],
    max_tokens: int,
    prompt_per_million: float,
    completion_per_million: float,
) -> dict[str, Any]:
    """What a run would spend: one call per request that is not cached, priced per million tokens.

    Args:
        stage: The run's name (the estimate's ``stage``).
        provider: The judge provider (``judge.provider``).
        model: The judge model name (``judge.model``).
        prompt_tokens: Estimated prompt tokens per request (``prompt_tokens[i]`` is ignored where
            ``cached[i]``); as long as ``cached``.
        cached: Per request, whether the cache already holds its reply.
        max_tokens: Completion tokens charged per call (``judge.max_tokens``, the worst case).
        prompt_per_million: Dollars per million prompt tokens.
        completion_per_million: Dollars per million completion tokens.

    Returns:
        ``stage``, ``provider``, ``model``, ``requests``, ``calls``, ``cached``, ``prompt_tokens``,
        ``completion_tokens`` (the worst case) and ``dollars`` (estimated prompt plus worst-case
        completion, rounded to 4 places).
    """
    calls = pt = 0
    for tokens, hit in zip(prompt_tokens, cached, strict=True):
        if not hit:
            calls += 1
            pt += tokens
    ct = calls * max_tokens
    return {
        "stage": stage,
        "provider": provider,
        "model": model,
        "requests": len(cached),
        "calls": calls,
        "cached": len(cached) - calls,
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "dollars": round(dollars(pt, ct, prompt_per_million, completion_per_million), 4),
    }


def format_dry_run(d: Mapping[str, Any]) -> str:
    """One line for the terminal.

    Args:
        d: A dry-run estimate (:func:`dry_run_cost` or :func:`offline_dry_run`).

    Returns:
        The estimate as one human-readable line.
    """
    return (
        f"judge dry run ({d['stage']}, {d['provider']}): {d['calls']} calls for {d['requests']} requests "
        f"({d['cached']} cached), ~{d['prompt_tokens']:,} prompt tokens, <= {d['completion_tokens']:,} "
        f"completion tokens, <= ${d['dollars']:.4f}"
    )
