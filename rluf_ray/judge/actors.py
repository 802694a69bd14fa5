"""The Ray actors of the judge, as plain classes (``ray.remote`` is applied where they are created, in
``rluf_ray.judge.service``).

* :class:`BudgetActor` (named ``judge.budget_name`` in namespace ``rluf``) is the one point of truth
  for requests/min, tokens/min and the per-stage dollar cap; every judge actor books a slot there
  before every HTTP attempt, through :class:`RayLimiter`.
* :class:`JudgeWorker` is an async actor that reads the API key from its own node's environment
  (``judge.api_key_env``); the key never travels in actor arguments, job metadata or a runtime env.
  Each call judges a chunk of requests concurrently, at most
  ``judge.max_in_flight_per_actor`` HTTP calls in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from rluf_ray.config import JudgeConfig
from rluf_ray.judge.requests import JudgeRequest

NAMESPACE = "rluf"


class BudgetActor:
    """Hosts the one :class:`SlidingWindowBudget` of the cluster (a synchronous actor: a mutex)."""

    def __init__(self, rpm: int, tpm: int, window_s: float, safety: float) -> None:
        from rluf_ray.judge.rate_limit import SlidingWindowBudget

        self.budget = SlidingWindowBudget(rpm, tpm, window_s, safety)

    def configure(self, rpm: int, tpm: int, window_s: float, safety: float) -> None:
        self.budget.configure(rpm, tpm, window_s, safety)

    def open_run(self, run: str, max_dollars: float | None) -> None:
        self.budget.open_run(run, max_dollars)

    def reserve(self, tokens: int, dollars: float, run: str) -> dict[str, Any]:
        return self.budget.reserve(tokens, dollars, run)

    def settle(self, slot_id: int, tokens: int | None, dollars: float | None) -> None:
        self.budget.settle(slot_id, tokens, dollars)

    def pause(self, seconds: float) -> None:
        self.budget.pause(seconds)

    def stats(self, run: str = "default") -> dict[str, Any]:
        return {**self.budget.stats(), **self.budget.run_stats(run)}


class RayLimiter:
    """The limiter interface of the API judge, backed by the named budget actor."""

    def __init__(self, handle: Any, run: str) -> None:
        self.handle = handle
        self.run = run

    async def reserve(self, tokens: int, dollars: float = 0.0) -> dict[str, Any]:
        return await self.handle.reserve.remote(tokens, dollars, self.run)

    async def settle(self, slot_id: int, tokens: int | None = None, dollars: float | None = None) -> None:
        self.handle.settle.remote(slot_id, tokens, dollars)  # fire and forget: calls stay ordered

    async def pause(self, seconds: float) -> None:
        self.handle.pause.remote(seconds)


def request_to_dict(r: JudgeRequest) -> dict[str, Any]:
    """A request as plain data for an actor call."""
    return {"task": r.task, "key": r.key, "fields": dict(r.fields), "template": r.template}


def request_from_dict(d: Mapping[str, Any]) -> JudgeRequest:
    """The inverse of :func:`request_to_dict`."""
    return JudgeRequest(d["task"], d["key"], dict(d["fields"]), d.get("template"))


class JudgeWorker:
    """Async judge actor: many requests in flight, results as plain dicts."""

    def __init__(
        self,
        judge_cfg: dict[str, Any],
        budget_name: str,
        run: str,
        seed: int,
    ) -> None:
        import ray

        from rluf_ray.judge.client import ApiJudge

        cfg = JudgeConfig.model_validate(judge_cfg)
        handle = ray.get_actor(budget_name, namespace=NAMESPACE)
        # No api_key argument: ApiJudge reads os.environ[cfg.api_key_env] here, in the actor, from its
        # node's environment, so the key is never in actor arguments, job metadata or a runtime env.
        # No cache here: the driver answers cache hits and stores what this actor returns.
        self.judge = ApiJudge(cfg, RayLimiter(handle, run), seed=seed)

    async def judge_batch(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = await self.judge.judge_many([request_from_dict(d) for d in items])
        return [asdict(r) for r in results]

    def ledger(self) -> dict[str, Any]:
        return self.judge.ledger.to_dict()

    async def close(self) -> None:
        await self.judge.aclose()
