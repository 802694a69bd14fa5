"""The Ray layer of the judge: one named budget actor, a pool of async judge actors, and the entry points
the stages call (``judge_requests``, ``score_answers``, ``dry_run``).

* ``plan(cfg)`` is pure: it turns config into actor options and sizes, and is unit-tested without Ray.
* The budget actor (:class:`BudgetActor`, named ``judge.budget_name`` in namespace ``rluf``) is the one
  point of truth for requests/min, tokens/min and the per-stage dollar cap; every judge actor books
  a slot there before every HTTP attempt.
* :class:`JudgeWorker` is an async actor: each call judges a chunk of requests concurrently, at most
  ``judge.max_in_flight_per_actor`` HTTP calls in flight; several chunks are queued per actor so it
  never idles.
* The offline provider needs no network and runs in the driver.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from rluf_ray.config import JudgeConfig, RlufConfig
from rluf_ray.core.judge_cost import CostLedger, dollars, estimate_prompt_tokens
from rluf_ray.core.judge_prompts import JudgeRequest, JudgeResult, score_request
from rluf_ray.errors import RlufError
from rluf_ray.io.judge_templates import render_request

log = logging.getLogger("rluf.judge")

NAMESPACE = "rluf"


class Secret:
    """A string that never prints (the API key on its way to the judge actors)."""

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def cache_path(cfg: RlufConfig) -> str:
    """The SQLite cache file: ``judge.cache_path``, else ``<output_dir>/judge_cache.sqlite``.

    For a remote ``output_dir`` (a URI) the cache falls back to ``~/.cache/rluf`` on each node.
    """
    if cfg.judge.cache_path:
        return cfg.judge.cache_path
    if "://" in cfg.output_dir:
        return os.path.join(os.path.expanduser("~/.cache/rluf"), "judge_cache.sqlite")
    return os.path.join(os.path.abspath(cfg.output_dir), "judge_cache.sqlite")


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
        "cache_path": cache_path(cfg),
    }


# -- actors (plain classes; ray.remote is applied where they are created) -----------------------
class BudgetActor:
    """Hosts the one :class:`SlidingWindowBudget` of the cluster (a synchronous actor: a mutex)."""

    def __init__(self, rpm: int, tpm: int, window_s: float, safety: float) -> None:
        from rluf_ray.io.rate_limit import SlidingWindowBudget

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


def _request_to_dict(r: JudgeRequest) -> dict[str, Any]:
    return {"task": r.task, "key": r.key, "fields": dict(r.fields), "template": r.template}


def _request_from_dict(d: Mapping[str, Any]) -> JudgeRequest:
    return JudgeRequest(d["task"], d["key"], dict(d["fields"]), d.get("template"))


class JudgeWorker:
    """Async judge actor: many requests in flight, results as plain dicts."""

    def __init__(
        self,
        judge_cfg: dict[str, Any],
        budget_name: str,
        run: str,
        cache_file: str,
        api_key: Secret,
        seed: int,
    ) -> None:
        import ray

        from rluf_ray.io.judge_cache import JudgeCache
        from rluf_ray.io.judge_client import ApiJudge

        cfg = JudgeConfig.model_validate(judge_cfg)
        handle = ray.get_actor(budget_name, namespace=NAMESPACE)
        self.judge = ApiJudge(
            cfg, RayLimiter(handle, run), JudgeCache(cache_file), api_key=api_key.get(), seed=seed
        )

    async def judge_batch(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = await self.judge.judge_many([_request_from_dict(d) for d in items])
        return [asdict(r) for r in results]

    def ledger(self) -> dict[str, Any]:
        return self.judge.ledger.to_dict()

    async def close(self) -> None:
        await self.judge.aclose()


# -- entry points --------------------------------------------------------------------------------
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


def _dedupe(reqs: Iterable[JudgeRequest]) -> list[JudgeRequest]:
    seen: set[str] = set()
    out = []
    for r in reqs:
        if r.key in seen:
            continue
        seen.add(r.key)
        out.append(r)
    return out


def batch_state_dir(cfg: RlufConfig) -> str:
    """Where Batch API runs keep the id of the batch in progress (beside the cache)."""
    return os.path.join(os.path.dirname(os.path.abspath(cache_path(cfg))), "judge_batches")


def judge_requests(
    cfg: RlufConfig, reqs: Sequence[JudgeRequest], run: str = "judge", batch: bool = False
) -> tuple[list[JudgeResult], dict[str, Any]]:
    """Judge every request exactly once (duplicate keys are judged once) and return results in input
    order of the unique keys, plus a report (the merged cost ledger, budget stats, and
    ``budget_exhausted`` when ``judge.max_dollars`` stopped the run).

    ``batch`` uses the OpenAI Batch API (half price, resumable by batch id) from the driver instead
    of the real-time actors; the feedback stage passes ``feedback.use_batch_api``.
    """
    reqs = _dedupe(reqs)
    j = cfg.judge
    if batch and j.provider != "offline":
        import asyncio

        from rluf_ray.io.judge_batch import BatchJudge
        from rluf_ray.io.judge_cache import JudgeCache

        bj = BatchJudge(j, batch_state_dir(cfg), JudgeCache(cache_path(cfg)), run_name=run)
        results = asyncio.run(bj.run(reqs))
        exhausted = any((r.error or "").startswith("max_dollars") for r in results)
        return results, {
            **bj.ledger.to_dict(),
            "provider": j.provider,
            "mode": "batch",
            "budget_exhausted": exhausted,
        }
    if j.provider == "offline":
        from rluf_ray.core.offline_judge import OfflineJudge

        oj = OfflineJudge(j.offline_noise, j.seed)
        results = [oj.judge_one(r) for r in reqs]
        ledger = CostLedger()
        for r in results:
            ledger.outcome(r.ok, False, r.error)
        return results, {**ledger.to_dict(), "provider": "offline", "budget_exhausted": False}

    import ray

    from rluf_ray.io.judge_client import read_api_key
    from rluf_ray.io.ray_runtime import ensure_ray

    key = Secret(read_api_key(j))
    ensure_ray()
    p = plan(cfg)
    budget = _budget_actor(p)
    ray.get(budget.open_run.remote(run, j.max_dollars))
    workers: list[Any] = [
        ray.remote(JudgeWorker)
        .options(**p["actor_options"])
        .remote(j.model_dump(mode="json"), p["budget"]["name"], run, p["cache_path"], key, j.seed + i)
        for i in range(p["num_actors"])
    ]
    chunks = [reqs[i : i + p["chunk_size"]] for i in range(0, len(reqs), p["chunk_size"])]
    by_key: dict[str, JudgeResult] = {}
    pending: dict[Any, int] = {}
    next_chunk = 0
    try:
        while next_chunk < len(chunks) or pending:
            while next_chunk < len(chunks) and len(pending) < p["chunks_in_flight"]:
                w = workers[next_chunk % len(workers)]
                ref = w.judge_batch.remote([_request_to_dict(r) for r in chunks[next_chunk]])
                pending[ref] = next_chunk
                next_chunk += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                pending.pop(ref)
                for d in ray.get(ref):
                    by_key[d["key"]] = JudgeResult(**d)
        ledger = CostLedger()
        for led in ray.get([w.ledger.remote() for w in workers]):
            ledger.merge(led)
        stats = ray.get(budget.stats.remote(run))
        ray.get([w.close.remote() for w in workers])
    finally:
        for w in workers:
            ray.kill(w)
    results = [by_key[r.key] for r in reqs]
    exhausted = any((r.error or "").startswith("max_dollars") for r in results)
    report = {**ledger.to_dict(), "provider": j.provider, "budget": stats, "budget_exhausted": exhausted}
    return results, report


def answer_key(prompt_id: str, answer: str) -> str:
    """The request key of one (prompt, answer) pair."""
    return f"{prompt_id}\x1f{answer}"


def score_requests(rows: Iterable[Mapping[str, Any]]) -> list[JudgeRequest]:
    """Score requests from ``(prompt_id, post, reference, answer)`` rows (``text``, when present, is
    the raw answer shown to the judge; ``answer`` is the normalised key)."""
    out = []
    for row in rows:
        shown = row.get("text") or row["answer"]
        out.append(
            score_request(answer_key(row["prompt_id"], row["answer"]), row["post"], row["reference"], shown)
        )
    return out


def calibration_score_rows(
    generation_rows: Iterable[Mapping[str, Any]], posts: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Expand GENERATION_SCHEMA rows of the calibration split into one score item per unique answer.

    ``posts`` maps prompt_id to the source post (the generation rows carry the prompt, not the post).
    Rows of the test split are skipped: as in the original, only calibration answers are scored.
    """
    items = []
    for g in generation_rows:
        if g.get("split", "calibration") != "calibration":
            continue
        texts = g.get("texts") or g["answers"]
        for answer, text in zip(g["answers"], texts, strict=True):
            items.append(
                {
                    "prompt_id": g["prompt_id"],
                    "post": posts[g["prompt_id"]],
                    "reference": g["reference"],
                    "answer": answer,
                    "text": text,
                }
            )
    return items


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
    rows = list(rows)
    reqs = score_requests(rows)
    results, report = judge_requests(cfg, reqs, run)
    out = []
    for req, res in zip(_dedupe(reqs), results, strict=True):
        pid, ans = req.key.split("\x1f", 1)
        score = float(res.value) if res.ok else None
        out.append({"prompt_id": pid, "answer": ans, "score": score, "error": res.error})
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
    from rluf_ray.io.judge_cache import JudgeCache, cache_key
    from rluf_ray.io.judge_client import sampling_params

    reqs = _dedupe(reqs)
    j = cfg.judge
    if j.provider == "offline":
        return {
            "stage": stage,
            "provider": "offline",
            "requests": len(reqs),
            "calls": 0,
            "cached": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "dollars": 0.0,
        }
    path = cache_path(cfg)
    cache = JudgeCache(path) if os.path.exists(path) else None
    params = sampling_params(j)
    calls = cached = pt = 0
    for r in reqs:
        messages = render_request(r)
        if cache is not None and cache.contains(cache_key(j.model, r.version, messages, params)):
            cached += 1
            continue
        calls += 1
        pt += estimate_prompt_tokens(messages)
    if cache is not None:
        cache.close()
    ct = calls * j.max_tokens
    cost = dollars(pt, ct, j.prices.prompt_per_million, j.prices.completion_per_million)
    return {
        "stage": stage,
        "provider": j.provider,
        "model": j.model,
        "requests": len(reqs),
        "calls": calls,
        "cached": cached,
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "dollars": round(cost, 4),
    }


def format_dry_run(d: Mapping[str, Any]) -> str:
    """One line for the terminal."""
    return (
        f"judge dry run ({d['stage']}, {d['provider']}): {d['calls']} calls for {d['requests']} requests "
        f"({d['cached']} cached), ~{d['prompt_tokens']:,} prompt tokens, <= {d['completion_tokens']:,} "
        f"completion tokens, <= ${d['dollars']:.4f}"
    )
