"""The ``batch`` judge provider: the OpenAI Batch API from the driver (``rluf_ray.judge.batch``):
half the price, hours of latency, resumable by the batch ids kept in the judge cache. Its judgements
depend on the same settings as ``openai``'s and share its cache entries; its dry run is openai's at the
batch price."""

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

    def price_factor(self, section: JudgeConfig) -> float:
        """The share of ``judge.prices`` the Batch API pays (its dry run is priced with it too).

        Args:
            section: The judge config section.

        Returns:
            ``judge.batch_price_factor`` (OpenAI: 0.5).
        """
        return section.batch_price_factor

    def judge(
        self, section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext
    ) -> tuple[list[JudgeResult], dict[str, Any]]:
        """Cache hits from the driver's cache, the rest through the Batch API (batch ids in the cache).

        Prices are ``judge.prices`` times ``judge.batch_price_factor``.

        Args:
            section: The judge config section.
            requests: Requests with unique keys.
            ctx: The run's context (``ctx.run`` names the rounds kept for resume).

        Returns:
            One result per request, in their order (a failure is ``value=None`` with its reason), and
            the report: the cost ledger's figures, ``provider``, ``mode: "batch"`` and
            ``budget_exhausted`` (``judge.max_dollars`` left requests unjudged).
        """
        import asyncio

        from rluf_ray.judge.batch import BatchJudge

        j = section
        bar = run_progress(ctx.run, len(requests), j.prices, j.batch_price_factor)
        with driver_cache(j.cache_path, ctx.output_dir, ctx.shared_mount) as held:
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
