"""The ``offline`` judge provider: the reference-based offline judge (``rluf_ray.judge.offline``) in
the driver; no network, no cache, no cost. It has no Batch API mode: a stage that asks for one is
judged here as usual."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from rluf_ray.judge.cost import CostLedger, offline_dry_run
from rluf_ray.judge.offline_rubric import RULE_VERSION as RUBRIC_RULE
from rluf_ray.judge.progress import run_progress
from rluf_ray.judge.registry import JudgeContext
from rluf_ray.judge.requests import JudgeRequest, JudgeResult

if TYPE_CHECKING:
    from rluf_ray.config import JudgeConfig


class OfflineProvider:
    """Deterministic judgements from the texts and the seeded noise."""

    name = "offline"
    result_fields: tuple[str, ...] = ("offline_noise", "seed")
    rule_versions: Mapping[str, str] = MappingProxyType({"rubric": RUBRIC_RULE})
    batch_provider: str | None = None

    def judge(
        self, section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext
    ) -> tuple[list[JudgeResult], dict[str, Any]]:
        """Answer every request in the driver, one by one.

        Args:
            section: The judge config section.
            requests: Requests with unique keys.
            ctx: The run's context (only ``ctx.run`` is used: it labels the progress lines).

        Returns:
            One result per request, in their order, and the report: the cost ledger's figures (no
            calls, no tokens, no dollars), ``provider`` and ``budget_exhausted`` (always False).
        """
        from rluf_ray.judge.offline import OfflineJudge

        oj = OfflineJudge(section.offline_noise, section.seed)
        bar = run_progress(ctx.run, len(requests), section.prices)
        results = []
        for r in requests:
            results.append(oj.judge_one(r))
            bar.update(results[-1:])
        ledger = CostLedger()
        for res in results:
            ledger.outcome(res.ok, False, res.error)
        return results, {**ledger.to_dict(), "provider": self.name, "budget_exhausted": False}

    def dry_run(
        self, section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext
    ) -> dict[str, Any]:
        """No calls, no cost.

        Args:
            section: The judge config section.
            requests: Requests with unique keys.
            ctx: The run's context (``ctx.run`` is the estimate's ``stage``).

        Returns:
            :func:`rluf_ray.judge.cost.offline_dry_run` of the requests: every count and cost zero.
        """
        return offline_dry_run(ctx.run, len(requests))
