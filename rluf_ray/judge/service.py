"""The judge's real-time pool on Ray (what the ``openai`` provider runs): async
:class:`~rluf_ray.judge.actors.JudgeWorker` actors sharing one named budget actor, several chunks
queued per actor so none idles.

* ``plan(section, ctx)`` is pure: it turns config into actor options and sizes, and is unit-tested
  without Ray.
* The judge cache is the driver's (``rluf_ray.judge.cache_store``): it answers the hits, the
  actors get only the misses, and their parsed replies are stored as each chunk returns.

Stages do not call this module: they call ``rluf_ray.judge.api``, which picks the provider.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rluf_ray.judge.actors import NAMESPACE, BudgetActor, JudgeWorker, request_to_dict
from rluf_ray.judge.cache_store import DriverCache, cache_location, driver_cache
from rluf_ray.judge.client import from_cache, request_cache_key
from rluf_ray.judge.cost import CostLedger
from rluf_ray.judge.progress import run_progress
from rluf_ray.judge.registry import JudgeContext
from rluf_ray.judge.requests import JudgeRequest, JudgeResult

if TYPE_CHECKING:
    from rluf_ray.config import JudgeConfig

log = logging.getLogger("rluf.judge")


def plan(section: JudgeConfig, ctx: JudgeContext) -> dict[str, Any]:
    """Ray arguments of the judge pool (pure).

    Args:
        section: The judge config section.
        ctx: The run's context (its ``actors`` and ``output_dir``).

    Returns:
        Actor count and options, chunk sizes, the budget actor's name and limits, the cache location.
    """
    j = section
    chunks_per_actor = 4
    chunk = max(1, j.max_in_flight_per_actor // 2)
    return {
        "provider": j.provider,
        "num_actors": ctx.actors,
        "chunk_size": chunk,
        "chunks_in_flight": ctx.actors * chunks_per_actor,
        "actor_options": {"num_cpus": 0, "max_concurrency": chunks_per_actor + 2},
        "budget": {
            "name": j.budget_name,
            "namespace": NAMESPACE,
            "rpm": j.requests_per_minute,
            "tpm": j.tokens_per_minute,
            "window_s": j.rate_window_s,
            "safety": j.rate_safety,
        },
        "budget_options": {"num_cpus": 0, "max_concurrency": 1},
        "cache_path": cache_location(j.cache_path, ctx.output_dir),  # the driver's; actors get the misses
    }


def _budget_actor(p: Mapping[str, Any]) -> Any:
    import ray

    b = p["budget"]
    handle: Any = (
        ray.remote(BudgetActor)
        .options(name=b["name"], namespace=b["namespace"], get_if_exists=True, **p["budget_options"])
        .remote(b["rpm"], b["tpm"], b["window_s"], b["safety"])
    )
    ray.get(handle.configure.remote(b["rpm"], b["tpm"], b["window_s"], b["safety"]))
    return handle


def _cache_hits(
    section: JudgeConfig, reqs: Sequence[JudgeRequest], held: DriverCache
) -> tuple[dict[str, JudgeResult], dict[str, str]]:
    """Requests the driver's cache answers (by request key), and every request's cache key."""
    keys = {r.key: request_cache_key(section, r)[1] for r in reqs}
    hits = {}
    for r in reqs:
        res = from_cache(section, r, held.cache, keys[r.key])
        if res is not None:
            hits[r.key] = res
    return hits, keys


def judge_on_actors(
    section: JudgeConfig, reqs: Sequence[JudgeRequest], ctx: JudgeContext
) -> tuple[list[JudgeResult], dict[str, Any]]:
    """Cache hits from the driver's cache; the misses through the real-time actors (chunks dispatched
    round robin, a bounded number in flight), their parsed replies stored as each chunk returns.

    Args:
        section: The judge config section.
        reqs: Requests with unique keys.
        ctx: The run's context.

    Returns:
        The results in request order, and the report: the merged cost ledger, ``provider``, the
        shared budget's stats and ``budget_exhausted`` (``judge.max_dollars`` stopped the run).
    """
    from rluf_ray.judge.client import read_api_key

    j, run = section, ctx.run
    read_api_key(j)  # fail fast in one line if the driver's node lacks it; actors read their own node's
    bar = run_progress(run, len(reqs), j.prices)
    ledger = CostLedger()
    with driver_cache(j.cache_path, ctx.output_dir, ctx.shared_mount) as held:
        by_key, keys = _cache_hits(j, reqs, held)
        for _ in by_key:
            ledger.outcome(True, True)
        bar.update(list(by_key.values()))
        misses = [r for r in reqs if r.key not in by_key]
        log.info("judge %s: %d cached, %d to call", run, len(by_key), len(misses))
        stats: dict[str, Any] = {}
        if misses:
            version = {r.key: r.version for r in misses}

            def store(results: list[JudgeResult]) -> None:
                for res in results:
                    if res.ok and not res.cached and res.raw is not None:
                        held.put(keys[res.key], j.model, version[res.key], res.raw,
                                 res.prompt_tokens, res.completion_tokens)  # fmt: skip
                by_key.update((res.key, res) for res in results)
                bar.update(results)

            stats = _dispatch(j, misses, ctx, ledger, store)
    results = [by_key[r.key] for r in reqs]
    exhausted = any((r.error or "").startswith("max_dollars") for r in results)
    report = {**ledger.to_dict(), "provider": j.provider, "budget": stats, "budget_exhausted": exhausted}
    return results, report


def _dispatch(
    section: JudgeConfig,
    reqs: list[JudgeRequest],
    ctx: JudgeContext,
    ledger: CostLedger,
    on_chunk: Callable[[list[JudgeResult]], None],
) -> dict[str, Any]:
    """Send ``reqs`` to the judge actors, hand each returned chunk to ``on_chunk``, merge the actors'
    ledgers into ``ledger``; returns the shared budget's stats."""
    import ray

    from rluf_ray.runtime.bootstrap import ensure_ray

    j, run = section, ctx.run
    ensure_ray()
    p = plan(j, ctx)
    budget = _budget_actor(p)
    ray.get(budget.open_run.remote(run, j.max_dollars))
    workers: list[Any] = [
        ray.remote(JudgeWorker)
        .options(**p["actor_options"])
        .remote(j.model_dump(mode="json"), p["budget"]["name"], run, j.seed + i)
        for i in range(p["num_actors"])
    ]
    chunks = [reqs[i : i + p["chunk_size"]] for i in range(0, len(reqs), p["chunk_size"])]
    pending: dict[Any, int] = {}
    next_chunk = 0
    try:
        while next_chunk < len(chunks) or pending:
            while next_chunk < len(chunks) and len(pending) < p["chunks_in_flight"]:
                w = workers[next_chunk % len(workers)]
                ref = w.judge_batch.remote([request_to_dict(r) for r in chunks[next_chunk]])
                pending[ref] = next_chunk
                next_chunk += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                pending.pop(ref)
                on_chunk([JudgeResult(**d) for d in ray.get(ref)])
        for led in ray.get([w.ledger.remote() for w in workers]):
            ledger.merge(led)
        stats: dict[str, Any] = ray.get(budget.stats.remote(run))
        ray.get([w.close.remote() for w in workers])
    finally:
        for w in workers:
            ray.kill(w)
    return stats
