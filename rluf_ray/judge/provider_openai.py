"""The ``openai`` judge provider: any OpenAI-compatible endpoint in real time, through the Ray judge
actors sharing one cluster-wide budget (``rluf_ray.judge.service``), the driver's cache answering
what it already holds. A stage that asks for the Batch API is judged by the ``batch`` provider."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
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
    batch_provider: str | None = "batch"

    def judge(
        self, section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext
    ) -> tuple[list[JudgeResult], dict[str, Any]]:
        """Cache hits from the driver's cache, the misses through the judge actors."""
        from rluf_ray.judge.service import judge_on_actors

        return judge_on_actors(section, requests, ctx)

    def dry_run(
        self, section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext
    ) -> dict[str, Any]:
        """Calls (cache hits excluded), estimated tokens and dollars at ``judge.prices``."""
        j = section
        path = cache_location(j.cache_path, ctx.output_dir)
        exists = is_uri(path) or os.path.exists(path)  # a dry run never creates a local cache file
        tokens: list[int] = []
        cached: list[bool] = []
        with contextlib.ExitStack() as stack:
            held = stack.enter_context(driver_cache(j.cache_path, ctx.output_dir)) if exists else None
            for r in requests:
                messages, key = request_cache_key(j, r)
                hit = held is not None and held.cache.contains(key)
                cached.append(hit)
                tokens.append(0 if hit else estimate_prompt_tokens(messages))
        p = j.prices
        return dry_run_cost(
            ctx.run,
            j.provider,
            j.model,
            tokens,
            cached,
            j.max_tokens,
            p.prompt_per_million,
            p.completion_per_million,
        )
