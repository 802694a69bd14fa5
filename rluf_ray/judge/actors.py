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
    """Hosts the one :class:`SlidingWindowBudget` of the cluster (a synchronous actor: a mutex).

    Args:
        rpm: Requests allowed per window (``judge.requests_per_minute``).
        tpm: Tokens allowed per window (``judge.tokens_per_minute``).
        window_s: Length of the provider's window in seconds (``judge.rate_window_s``).
        safety: Share by which the budget's window is made longer (``judge.rate_safety``).
    """

    def __init__(self, rpm: int, tpm: int, window_s: float, safety: float) -> None:
        from rluf_ray.judge.rate_limit import SlidingWindowBudget

        self.budget = SlidingWindowBudget(rpm, tpm, window_s, safety)

    def configure(self, rpm: int, tpm: int, window_s: float, safety: float) -> None:
        """Set the caps again (the actor is found by name, so a later stage may bring other limits).

        Args:
            rpm: Requests allowed per window (``judge.requests_per_minute``), at least 1.
            tpm: Tokens allowed per window (``judge.tokens_per_minute``), at least 1.
            window_s: Length of the provider's window in seconds (``judge.rate_window_s``), > 0.
            safety: Share by which the budget's window is made longer than the provider's
                (``judge.rate_safety``), >= 0.
        """
        self.budget.configure(rpm, tpm, window_s, safety)

    def open_run(self, run: str, max_dollars: float | None) -> None:
        """Start (or restart) the dollar ledger of one run.

        Args:
            run: The run's name (the stage), which its limiters pass with every reservation.
            max_dollars: The run's spending cap in dollars (``judge.max_dollars``); None: no cap.
        """
        self.budget.open_run(run, max_dollars)

    def reserve(self, tokens: int, dollars: float, run: str) -> dict[str, Any]:
        """Book a slot for one HTTP attempt (:meth:`SlidingWindowBudget.reserve`).

        Args:
            tokens: The attempt's estimated prompt plus maximum completion tokens.
            dollars: The attempt's worst-case price, held against the run's cap until settled.
            run: The run whose dollar ledger pays.

        Returns:
            ``{"id": slot id, "delay": seconds to wait before sending}``, or ``{"refused": reason}``.
        """
        return self.budget.reserve(tokens, dollars, run)

    def settle(self, slot_id: int, tokens: int | None, dollars: float | None) -> None:
        """Close a reservation with the usage the server reported.

        Args:
            slot_id: The ``id`` of the grant.
            tokens: Reported prompt plus completion tokens; None keeps the estimate (the safe side).
            dollars: The attempt's actual price; None charges the reserved worst case.
        """
        self.budget.settle(slot_id, tokens, dollars)

    def pause(self, seconds: float) -> None:
        """Push every later slot of the cluster back (after a 429).

        Args:
            seconds: The least delay from now before the next slot, e.g. the server's Retry-After.
        """
        self.budget.pause(seconds)

    def stats(self, run: str = "default") -> dict[str, Any]:
        """The budget's counters and one run's dollars.

        Args:
            run: The run whose dollar ledger to report.

        Returns:
            ``granted``, ``refused`` and ``open`` slots of the whole budget, and the run's ``spent``,
            ``reserved`` and ``max_dollars``.
        """
        return {**self.budget.stats(), **self.budget.run_stats(run)}


class RayLimiter:
    """The limiter interface of the API judge, backed by the named budget actor.

    Args:
        handle: The :class:`BudgetActor`'s Ray actor handle.
        run: The run (stage) whose dollar ledger every reservation is charged to.
    """

    def __init__(self, handle: Any, run: str) -> None:
        self.handle = handle
        self.run = run

    async def reserve(self, tokens: int, dollars: float = 0.0) -> dict[str, Any]:
        """Book a slot in the budget actor for this limiter's run.

        Args:
            tokens: The attempt's estimated prompt plus maximum completion tokens.
            dollars: The attempt's worst-case price (0: not counted against the cap).

        Returns:
            ``{"id", "delay"}`` (delay in seconds), or ``{"refused": reason}``.
        """
        return await self.handle.reserve.remote(tokens, dollars, self.run)

    async def settle(self, slot_id: int, tokens: int | None = None, dollars: float | None = None) -> None:
        """Close a reservation with the reported usage, without waiting for the actor.

        Args:
            slot_id: The ``id`` of the grant.
            tokens: Reported prompt plus completion tokens; None keeps the estimate.
            dollars: The attempt's actual price; None charges the reserved worst case.
        """
        self.handle.settle.remote(slot_id, tokens, dollars)  # fire and forget: calls stay ordered

    async def pause(self, seconds: float) -> None:
        """Push every later slot of the cluster back, without waiting for the actor.

        Args:
            seconds: The least delay from now before the next slot (the server's Retry-After).
        """
        self.handle.pause.remote(seconds)


def request_to_dict(r: JudgeRequest) -> dict[str, Any]:
    """A request as plain data for an actor call.

    Args:
        r: The request.

    Returns:
        Its ``task``, ``key``, ``fields`` and ``template``.
    """
    return {"task": r.task, "key": r.key, "fields": dict(r.fields), "template": r.template}


def request_from_dict(d: Mapping[str, Any]) -> JudgeRequest:
    """The inverse of :func:`request_to_dict`.

    Args:
        d: A request's plain data (``template`` may be absent: the task's default version).

    Returns:
        The request.
    """
    return JudgeRequest(d["task"], d["key"], dict(d["fields"]), d.get("template"))


class JudgeWorker:
    """Async judge actor: many requests in flight, results as plain dicts.

    Args:
        judge_cfg: The judge config section as JSON data (``JudgeConfig.model_dump(mode="json")``).
        budget_name: The name of the budget actor in namespace :data:`NAMESPACE`.
        run: The run (stage) whose dollar ledger pays.
        seed: Seed of the retry jitter (the driver gives each actor its own).
    """

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
        """Judge one chunk of requests concurrently (at most ``judge.max_in_flight_per_actor`` in flight).

        Args:
            items: The requests as :func:`request_to_dict` data.

        Returns:
            One :class:`JudgeResult` per item as a plain dict, in input order; never raises for a
            failed request (its ``value`` is None and ``error`` says why).
        """
        results = await self.judge.judge_many([request_from_dict(d) for d in items])
        return [asdict(r) for r in results]

    def ledger(self) -> dict[str, Any]:
        """What this actor spent so far.

        Returns:
            Its cost ledger as :meth:`CostLedger.to_dict` data, for the driver to merge.
        """
        return self.judge.ledger.to_dict()

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.judge.aclose()
