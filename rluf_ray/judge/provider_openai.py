"""The ``openai`` judge provider: any OpenAI-compatible endpoint in real time, through the Ray judge
actors sharing one cluster-wide budget (``rluf_ray.judge.service``), the driver's cache answering
what it already holds. A stage that asks for the Batch API is judged by the ``batch`` provider."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from rluf_ray.judge.cache_store import cache_location, driver_cache
from rluf_ray.judge.client import request_cache_key
from rluf_ray.judge.cost import dry_run_cost, estimate_prompt_tokens
from rluf_ray.judge.registry import JudgeContext
from rluf_ray.judge.requests import JudgeRequest, JudgeResult
from rluf_ray.store.locations import is_uri

if TYPE_CHECKING:
    from rluf_ray.config import JudgeConfig


class OpenAIProvider:
    """Real-time calls to an OpenAI-compatible chat completions endpoint."""

    name = "openai"
    result_fields: tuple[str, ...] = (
        "model",
        "base_url",
        "temperature",
        "max_tokens",
        "structured_output",
        "max_parse_retries",  # a reply that still does not parse is recorded missing: results differ
    )
    rule_versions: Mapping[str, str] = MappingProxyType({})  # a model judges: no rule of its own
    batch_provider: str | None = "batch"

    def judge(
        self, section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext
    ) -> tuple[list[JudgeResult], dict[str, Any]]:
        """Cache hits from the driver's cache, the misses through the judge actors.

        Args:
            section: The judge config section.
            requests: Requests with unique keys.
            ctx: The run's context (``ctx.actors`` judge actors are started when any request misses
                the cache).

        Returns:
            What :func:`rluf_ray.judge.service.judge_on_actors` returns: one result per request, in
            their order, and the report (the merged ledger, ``provider``, the shared budget's stats,
            ``budget_exhausted``).
        """
        from rluf_ray.judge.service import judge_on_actors

        return judge_on_actors(section, requests, ctx)

    def dry_run(
        self, section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext
    ) -> dict[str, Any]:
        """Calls (cache hits excluded), estimated tokens and dollars at ``judge.prices``.

        Reads the driver's cache when it exists (a URI is always opened); never creates a local one.

        Args:
            section: The judge config section.
            requests: Requests with unique keys.
            ctx: The run's context (``ctx.run`` is the estimate's ``stage``; ``ctx.output_dir`` locates the cache).

        Returns:
            :func:`rluf_ray.judge.cost.dry_run_cost` of the requests: ``judge.max_tokens`` completion
            tokens per uncached request.
        """
        j = section
        path = cache_location(j.cache_path, ctx.output_dir)
        exists = is_uri(path) or os.path.exists(path)  # a dry run never creates a local cache file
        tokens: list[int] = []
        cached: list[bool] = []
        with contextlib.ExitStack() as stack:
            held = (
                stack.enter_context(driver_cache(j.cache_path, ctx.output_dir, ctx.shared_mount))
                if exists
                else None
            )
            for r in requests:
                messages, key = request_cache_key(j, r)
                hit = held is not None and held.cache.contains(key)
                cached.append(hit)
                tokens.append(0 if hit else estimate_prompt_tokens(messages))
        p, factor = j.prices, self.price_factor(j)
        return dry_run_cost(
            ctx.run,
            j.provider,
            j.model,
            tokens,
            cached,
            j.max_tokens,
            p.prompt_per_million * factor,
            p.completion_per_million * factor,
        )

    def price_factor(self, section: JudgeConfig) -> float:
        """The share of ``judge.prices`` this provider pays.

        Args:
            section: The judge config section.

        Returns:
            1.0: real-time calls pay the listed prices.
        """
        return 1.0
