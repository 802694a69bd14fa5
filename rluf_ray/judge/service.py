"""The judge service: what stages call to judge requests (``judge_requests``, ``score_answers``,
``dry_run``), with the provider switch and the dispatch loop over the Ray judge actors.

* ``plan(cfg)`` is pure: it turns config into actor options and sizes, and is unit-tested without Ray.
* The offline provider needs no network and runs in the driver; ``openai`` runs a pool of async
  :class:`~rluf_ray.judge.actors.JudgeWorker` actors sharing one named budget actor, several chunks
  queued per actor so none idles; ``batch=True`` uses the OpenAI Batch API from the driver.
* The judge cache is the driver's (``rluf_ray.judge.cache_store``): it answers the hits, the
  actors get only the misses, and their parsed replies are stored as each chunk returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rluf_ray.config import RlufConfig
from rluf_ray.errors import RlufError
from rluf_ray.judge.actors import NAMESPACE, BudgetActor, JudgeWorker, request_to_dict
from rluf_ray.judge.cache_store import DriverCache, cache_location, driver_cache
from rluf_ray.judge.client import from_cache, request_cache_key
from rluf_ray.judge.cost import CostLedger, dry_run_cost, estimate_prompt_tokens, offline_dry_run
from rluf_ray.judge.progress import JudgeProgress
from rluf_ray.judge.requests import JudgeRequest, JudgeResult, unique_requests
from rluf_ray.judge.scoring import score_requests, score_rows
from rluf_ray.store.locations import is_uri

log = logging.getLogger("rluf.judge")


def progress(cfg: RlufConfig, run: str, total: int, price_factor: float = 1.0) -> JudgeProgress:
    """The progress bar of one judge run (its spend at ``judge.prices`` times ``price_factor``)."""
    p = cfg.judge.prices
    return JudgeProgress(
        f"judge {run}", total, p.prompt_per_million * price_factor, p.completion_per_million * price_factor
    )


def cache_path(cfg: RlufConfig) -> str:
    """The judge cache the driver keeps: ``judge.cache_path``, else ``<output_dir>/judge_cache.sqlite``
    (a path, or a URI under a remote ``output_dir``: see ``rluf_ray.judge.cache_store``)."""
    return cache_location(cfg.judge.cache_path, cfg.output_dir)


def plan(cfg: RlufConfig) -> dict[str, Any]:
    """Ray arguments of the judge (pure)."""
    j = cfg.judge
    chunks_per_actor = 4
    chunk = max(1, j.max_in_flight_per_actor // 2)
    return {
        "provider": j.provider,
        "num_actors": cfg.resources.judge_actors,
        "chunk_size": chunk,
        "chunks_in_flight": cfg.resources.judge_actors * chunks_per_actor,
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
        "cache_path": cache_path(cfg),  # the driver's (actors get only the misses)
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


def _judge_batch_api(
    cfg: RlufConfig, reqs: list[JudgeRequest], run: str
) -> tuple[list[JudgeResult], dict[str, Any]]:
    """All requests through the OpenAI Batch API from the driver (half price, resumable by batch id)."""
    import asyncio

    from rluf_ray.judge.batch import BatchJudge

    j = cfg.judge
    bar = progress(cfg, run, len(reqs), j.batch_price_factor)
    with driver_cache(j.cache_path, cfg.output_dir) as held:
        bj = BatchJudge(j, held, held.cache, run_name=run, progress=bar)  # batch ids in the cache too
        results = asyncio.run(bj.run(reqs))
        held.mark_dirty()
    exhausted = any((r.error or "").startswith("max_dollars") for r in results)
    return results, {
        **bj.ledger.to_dict(),
        "provider": j.provider,
        "mode": "batch",
        "budget_exhausted": exhausted,
    }


def _judge_offline(
    cfg: RlufConfig, reqs: list[JudgeRequest], run: str
) -> tuple[list[JudgeResult], dict[str, Any]]:
    """All requests through the offline judge, in the driver."""
    from rluf_ray.judge.offline import OfflineJudge

    oj = OfflineJudge(cfg.judge.offline_noise, cfg.judge.seed)
    bar = progress(cfg, run, len(reqs))
    results = []
    for r in reqs:
        results.append(oj.judge_one(r))
        bar.update(results[-1:])
    ledger = CostLedger()
    for res in results:
        ledger.outcome(res.ok, False, res.error)
    return results, {**ledger.to_dict(), "provider": "offline", "budget_exhausted": False}


def _cache_hits(
    cfg: RlufConfig, reqs: list[JudgeRequest], held: DriverCache
) -> tuple[dict[str, JudgeResult], dict[str, str]]:
    """Requests the driver's cache answers (by request key), and every request's cache key."""
    keys = {r.key: request_cache_key(cfg.judge, r)[1] for r in reqs}
    hits = {}
    for r in reqs:
        res = from_cache(cfg.judge, r, held.cache, keys[r.key])
        if res is not None:
            hits[r.key] = res
    return hits, keys


def _judge_actors(
    cfg: RlufConfig, reqs: list[JudgeRequest], run: str
) -> tuple[list[JudgeResult], dict[str, Any]]:
    """Cache hits from the driver's cache; the misses through the real-time actors (chunks dispatched
    round robin, a bounded number in flight), their parsed replies stored as each chunk returns."""
    from rluf_ray.judge.client import read_api_key

    j = cfg.judge
    read_api_key(j)  # fail fast in one line if the driver's node lacks it; actors read their own node's
    bar = progress(cfg, run, len(reqs))
    ledger = CostLedger()
    with driver_cache(j.cache_path, cfg.output_dir) as held:
        by_key, keys = _cache_hits(cfg, reqs, held)
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

            stats = _dispatch(cfg, misses, run, ledger, store)
    results = [by_key[r.key] for r in reqs]
    exhausted = any((r.error or "").startswith("max_dollars") for r in results)
    report = {**ledger.to_dict(), "provider": j.provider, "budget": stats, "budget_exhausted": exhausted}
    return results, report


def _dispatch(
    cfg: RlufConfig,
    reqs: list[JudgeRequest],
    run: str,
    ledger: CostLedger,
    on_chunk: Callable[[list[JudgeResult]], None],
) -> dict[str, Any]:
    """Send ``reqs`` to the judge actors, hand each returned chunk to ``on_chunk``, merge the actors'
    ledgers into ``ledger``; returns the shared budget's stats."""
    import ray

    from rluf_ray.runtime.bootstrap import ensure_ray

    j = cfg.judge
    ensure_ray()
    p = plan(cfg)
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


def judge_requests(
    cfg: RlufConfig, reqs: Sequence[JudgeRequest], run: str = "judge", batch: bool = False
) -> tuple[list[JudgeResult], dict[str, Any]]:
    """Judge every request exactly once (duplicate keys are judged once) and return results in input
    order of the unique keys, plus a report (the merged cost ledger, budget stats, and
    ``budget_exhausted`` when ``judge.max_dollars`` stopped the run).

    ``batch`` uses the OpenAI Batch API (half price, resumable by batch id) from the driver instead
    of the real-time actors; the feedback stage passes ``feedback.use_batch_api``.
    """
    unique = unique_requests(reqs)
    if cfg.judge.provider == "offline":
        return _judge_offline(cfg, unique, run)
    if batch:
        return _judge_batch_api(cfg, unique, run)
    return _judge_actors(cfg, unique, run)


def score_answers(
    cfg: RlufConfig,
    rows: Iterable[Mapping[str, Any]],
    run: str = "generate",
    raise_on_budget: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Judge-score unique answers; returns SCORE_SCHEMA rows (prompt_id, answer, score, error) and a
    report for the stage's manifest. A failed call is ``score=None`` with its reason, never 0.

    When ``judge.max_dollars`` stops the run and ``raise_on_budget`` is set, raises RlufError after
    the finished calls are in the cache, so a rerun with a higher cap resumes at no cost.
    """
    reqs = unique_requests(score_requests(rows, cfg.judge.templates.score))
    results, report = judge_requests(cfg, reqs, run)
    out = score_rows(reqs, results)
    if report["budget_exhausted"] and raise_on_budget:
        raise RlufError(
            f"judge: judge.max_dollars={cfg.judge.max_dollars} reached after ${report['dollars']:.4f}: "
            f"{report['scored']} of {len(out)} scored; finished calls are cached, raise the cap and rerun"
        )
    return out, report


def scores_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    """SCORE_SCHEMA rows as a pyarrow Table."""
    import pyarrow as pa

    from rluf_ray.schema import SCORE_SCHEMA

    return pa.Table.from_pylist([dict(r) for r in rows], schema=SCORE_SCHEMA)


def dry_run(cfg: RlufConfig, reqs: Sequence[JudgeRequest], stage: str = "judge") -> dict[str, Any]:
    """What a run would spend: calls (cache hits excluded), estimated tokens and dollars. Calls nothing."""
    unique = unique_requests(reqs)
    j = cfg.judge
    if j.provider == "offline":
        return offline_dry_run(stage, len(unique))
    path = cache_path(cfg)
    exists = is_uri(path) or os.path.exists(path)  # a dry run never creates a local cache file
    tokens: list[int] = []
    cached: list[bool] = []
    with contextlib.ExitStack() as stack:
        held = stack.enter_context(driver_cache(j.cache_path, cfg.output_dir)) if exists else None
        for r in unique:
            messages, key = request_cache_key(j, r)
            hit = held is not None and held.cache.contains(key)
            cached.append(hit)
            tokens.append(0 if hit else estimate_prompt_tokens(messages))
    p = j.prices
    return dry_run_cost(
        stage,
        j.provider,
        j.model,
        tokens,
        cached,
        j.max_tokens,
        p.prompt_per_million,
        p.completion_per_million,
    )
