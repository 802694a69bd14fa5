"""The OpenAI Batch API as a judge mode for the bulk stages (feedback, evaluate): half the price,
hours of latency.

One round: write the JSONL of every request not in the cache (``custom_id`` = the request's cache
key, so identical questions are asked once), upload it (``files.create(purpose="batch")``), create
the batch, poll it, download the output and error files, parse each reply and store the good ones in
the cache. Replies that do not parse and per-line errors go into the next round, at most
``1 + judge.max_parse_retries`` rounds; what is still unanswered then is recorded missing with its
reason.

Resume: the batch id of the round in progress is saved under a name made of the run and a hash of
the round's request set, in a :class:`BatchState`: the judge cache (the driver's is kept under
``output_dir``, so a rerun on any node finds it). After a restart
the same set hashes to the same name and the batch is polled again instead of being created twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from rluf_ray.config import JudgeConfig
from rluf_ray.judge.cache import JudgeCache, cache_key
from rluf_ray.judge.client import read_api_key, request_params
from rluf_ray.judge.cost import CostLedger, estimate_prompt_tokens
from rluf_ray.judge.parsing import ParseFailure
from rluf_ray.judge.progress import JudgeProgress
from rluf_ray.judge.requests import JudgeRequest, JudgeResult
from rluf_ray.judge.schemas import parse_reply
from rluf_ray.judge.templates import render_request

log = logging.getLogger("rluf.judge.batch")

TERMINAL = ("completed", "failed", "expired", "cancelled")
ENDPOINT = "/v1/chat/completions"


def batch_lines(
    model: str, items: Sequence[tuple[str, list[dict[str, str]]]], params: Mapping[str, dict[str, Any]]
) -> bytes:
    """The Batch API input JSONL of chat completion requests, one line per item.

    Args:
        model: The judge model name at the endpoint (``judge.model``).
        items: ``(custom_id, messages)`` pairs; the custom id is the request's cache key.
        params: The request parameters (sampling, ``response_format``) by custom id;
            ``params[custom_id]`` is sent with each item.

    Returns:
        The UTF-8 JSONL to upload with ``purpose="batch"``, one ``POST`` to the chat completions
        endpoint per item, in item order.
    """
    out = io.StringIO()
    for cid, messages in items:
        body = {"model": model, "messages": messages, **params[cid]}
        out.write(json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body}) + "\n")
    return out.getvalue().encode()


def read_output_line(line: dict[str, Any]) -> tuple[str | None, int, int, str | None]:
    """Read one line of a Batch API output or error file.

    Args:
        line: The decoded JSON line (``custom_id``, ``response`` or ``error``).

    Returns:
        ``(content, prompt_tokens, completion_tokens, error)``: the reply text and its usage, or
        ``(None, 0, 0, reason)`` for a per-item error, a non-200 status or a body that is not a chat
        completion (``reason`` is ``"<kind>: <detail>"``).
    """
    if line.get("error"):
        err = line["error"]
        return None, 0, 0, f"batch_item: {err.get('message', err) if isinstance(err, dict) else err}"
    resp = line.get("response") or {}
    status = resp.get("status_code")
    body = resp.get("body") or {}
    if status != 200:
        return None, 0, 0, f"server_error: HTTP {status}"
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None, 0, 0, "malformed: reply body is not a chat completion"
    usage = body.get("usage") or {}
    return content, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), None


class BatchState(Protocol):
    """Where the id of a batch in progress is kept between runs, by name: a ``JudgeCache``, or the
    driver's ``DriverCache``, which also writes it back to ``output_dir`` at once."""

    def load_batch(self, name: str) -> dict[str, Any] | None:
        """The saved state of a round in progress.

        Args:
            name: The round's name (the run and a hash of its request set).

        Returns:
            The state saved under ``name`` (``batch_id``, ``input_file_id``, ``created``,
            ``requests``), or None when there is none.
        """
        ...

    def save_batch(self, name: str, state: Mapping[str, Any]) -> None:
        """Save a round's state as soon as its batch is created, so a restart polls it again.

        Args:
            name: The round's name.
            state: JSON-serialisable state; ``batch_id`` is what a resume needs.
        """
        ...

    def remove_batch(self, name: str) -> None:
        """Forget a round's state once its output is in hand.

        Args:
            name: The round's name.
        """
        ...


class BatchJudge:
    """Batch API judge for one driver process; ``run(reqs)`` never raises for per-item failures.

    Args:
        cfg: The judge config section; prices are ``judge.prices`` times ``batch_price_factor``.
        state: Where the ids of rounds in progress are kept (:class:`BatchState`).
        cache: The judge cache to answer hits from and store parsed replies in; None: no cache.
        api_key: The API key; None: read from ``judge.api_key_env``.
        run_name: The run's name, the prefix of its rounds' state names.
        progress: The progress bar to advance; None: none.
    """

    def __init__(
        self,
        cfg: JudgeConfig,
        state: BatchState,
        cache: JudgeCache | None = None,
        api_key: str | None = None,
        run_name: str = "judge",
        progress: JudgeProgress | None = None,
    ) -> None:
        self.cfg = cfg
        self.progress = progress
        self._answered = 0
        self.state = state
        self.cache = cache
        self.run_name = run_name
        self._key = api_key if api_key is not None else read_api_key(cfg)
        self.params: dict[str, dict[str, Any]] = {}  # cache key -> request params
        f = cfg.batch_price_factor
        self.ledger = CostLedger(cfg.prices.prompt_per_million * f, cfg.prices.completion_per_million * f)

    def _state_name(self, cids: Sequence[str]) -> str:
        h = hashlib.sha256("\n".join(sorted(cids)).encode()).hexdigest()[:20]
        return f"{self.run_name}-{h}"

    async def _one_round(self, client: Any, items: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
        """Submit (or resume) one batch of ``items`` and return its output lines by custom_id."""
        state_name = self._state_name(list(items))
        state = self.state.load_batch(state_name)
        if state is not None:
            log.info("resuming batch %s", state["batch_id"])
        if state is None:
            data = batch_lines(self.cfg.model, list(items.items()), self.params)
            up = await client.files.create(file=("judge_batch.jsonl", data), purpose="batch")
            batch = await client.batches.create(
                input_file_id=up.id, endpoint=ENDPOINT, completion_window="24h"
            )
            state = {
                "batch_id": batch.id,
                "input_file_id": up.id,
                "created": time.time(),
                "requests": len(items),
            }
            self.state.save_batch(state_name, state)
        deadline = time.monotonic() + self.cfg.batch_timeout_s
        while True:
            batch = await client.batches.retrieve(state["batch_id"])
            counts = getattr(batch, "request_counts", None)
            if self.progress is not None and counts is not None:
                self.progress.set(self._answered + int(counts.completed or 0) + int(counts.failed or 0))
            if batch.status in TERMINAL:
                break
            if time.monotonic() > deadline:
                return {"_error": f"batch_timeout: batch {batch.id} still {batch.status}; rerun to resume"}
            await asyncio.sleep(self.cfg.batch_poll_s)
        lines: dict[str, Any] = {}
        for fid in (batch.error_file_id, batch.output_file_id):
            if not fid:
                continue
            content = await client.files.content(fid)
            for raw in content.text.splitlines():
                if raw.strip():
                    obj = json.loads(raw)
                    lines[obj["custom_id"]] = obj
        self.state.remove_batch(state_name)  # the round's answers are in hand (and, once parsed, cached)
        if batch.status != "completed" and not lines:
            return {"_error": f"batch_{batch.status}: batch {batch.id}"}
        return lines

    async def run(self, reqs: Sequence[JudgeRequest]) -> list[JudgeResult]:
        """Judge every request through the Batch API (cache first); results in input order.

        Requests with the same cache key are asked once. Under ``judge.max_dollars`` only the
        requests that fit at the worst-case price are submitted; the rest are missing with a
        ``max_dollars`` reason.

        Args:
            reqs: The requests to judge.

        Returns:
            One result per request, in input order; a request still unanswered after the last round
            is ``value=None`` with its reason (never raises for per-item failures).
        """
        from openai import AsyncOpenAI

        rendered = {r.key: render_request(r) for r in reqs}
        params_of = {r.key: request_params(self.cfg, r.task) for r in reqs}
        ckey = {r.key: cache_key(self.cfg.model, r.version, rendered[r.key], params_of[r.key]) for r in reqs}
        self.params = {ckey[r.key]: params_of[r.key] for r in reqs}
        task_of = {ckey[r.key]: r.task for r in reqs}
        version_of = {ckey[r.key]: r.version for r in reqs}
        answers: dict[str, tuple[Any, str, int, int, bool]] = {}  # cache key -> value, raw, pt, ct, cached
        reasons: dict[str, str] = {}
        pending: dict[str, list[dict[str, str]]] = {}
        for r in reqs:
            k = ckey[r.key]
            if k in answers or k in pending:
                continue
            hit = self.cache.get(k) if self.cache is not None else None
            if hit is not None:
                value = parse_reply(r.task, hit.reply, r.version, self.cfg.structured_output)
                if not isinstance(value, ParseFailure):
                    answers[k] = (value, hit.reply, 0, 0, True)
                    continue
            pending[k] = rendered[r.key]
        # The dollar cap: submit only what fits at the worst-case price.
        if self.cfg.max_dollars is not None and pending:
            budget, keep = self.cfg.max_dollars, {}
            for k, msgs in pending.items():
                price = self.ledger.price(estimate_prompt_tokens(msgs), self.cfg.max_tokens)
                if price > budget:
                    reasons[k] = f"max_dollars: judge.max_dollars={self.cfg.max_dollars} reached"
                    continue
                budget -= price
                keep[k] = msgs
            pending = keep
        client = AsyncOpenAI(api_key=self._key, base_url=self.cfg.base_url, timeout=self.cfg.timeout_s)
        try:
            for _ in range(1 + self.cfg.max_parse_retries):
                if not pending:
                    break
                self._answered = len(answers)  # the progress bar counts this round on top of these
                lines = await self._one_round(client, pending)
                if "_error" in lines:
                    for k in pending:
                        reasons[k] = lines["_error"]
                    break
                self.ledger.calls += len(pending)
                retry: dict[str, list[dict[str, str]]] = {}
                for k, msgs in pending.items():
                    line = lines.get(k)
                    if line is None:
                        reasons[k] = "batch_item: no output line"
                        retry[k] = msgs
                        continue
                    content, pt, ct, err = read_output_line(line)
                    self.ledger.charge(pt, ct)
                    if err is None:
                        value = parse_reply(
                            task_of[k], content or "", version_of[k], self.cfg.structured_output
                        )
                        if not isinstance(value, ParseFailure):
                            answers[k] = (value, content or "", pt, ct, False)
                            if self.cache is not None:
                                self.cache.put(k, self.cfg.model, version_of[k], content or "", pt, ct)
                            continue
                        err = f"parse: {value.reason}"
                    reasons[k] = err
                    retry[k] = msgs
                pending = retry
        finally:
            await client.close()
        out = []
        for r in reqs:
            k = ckey[r.key]
            if k in answers:
                value, raw, pt, ct, cached = answers[k]
                res = JudgeResult(r.key, value, None, raw, 0 if cached else 1, cached, pt, ct)
            else:
                res = JudgeResult(r.key, None, reasons.get(k, "batch_item: unanswered"))
            self.ledger.outcome(res.ok, res.cached, res.error)
            out.append(res)
        if self.progress is not None:
            self.progress.set(len(out), self.ledger.dollars)
        return out
