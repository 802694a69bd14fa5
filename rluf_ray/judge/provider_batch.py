"""The ``batch`` judge provider: the OpenAI Batch API from the driver (``rluf_ray.judge.batch``):
half the price, hours of latency, resumable by the batch ids kept in the judge cache. Its judgements
depend on the same settings as ``openai``'s and share its cache entries; so does its dry run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rluf_ray.judge.cache_store import driver_cache
from rluf_ray.judge.progress import run_progress
from rluf_ray.judge.provider_openai import OpenAIProvider
from rluf_ray.judge.registry import JudgeContext
from rluf_ray.judge.requests import JudgeRequest, JudgeResult

if TYPE_CHECKING:
    from rluf_ray.config import JudgeConfig


class BatchProvider(OpenAIProvider):
    """Every request through one Batch API round (plus re-asks) instead of the real-time actors."""

    name = "batch"
    batch_provider: str | None = "batch"

    def judge(
        self, section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext
    ) -> tuple[list[JudgeResult], dict[str, Any]]:
        """Cache hits from the driver's cache, the rest through the Batch API (batch ids in the cache)."""
        import asyncio

        from rluf_ray.judge.batch import BatchJudge

        j = section
        bar = run_progress(ctx.run, len(requests), j.prices, j.batch_price_factor)
        with driver_cache(j.cache_path, ctx.output_dir) as held:
            bj = BatchJudge(j, held, held.cache, run_name=ctx.run, progress=bar)
            results = asyncio.run(bj.run(requests))
            held.mark_dirty()
        exhausted = any((r.error or "").startswith("max_dollars") for r in results)
        return results, {
            **bj.ledger.to_dict(),
            "provider": j.provider,
            "mode": "batch",
            "budget_exhausted": exhausted,
        }
