"""A loopback OpenAI-compatible server for tests and the judge benchmark (binds 127.0.0.1 only).

``POST /v1/chat/completions`` answers in the chat-completions shape with ``usage``. It can add a fixed
latency, inject seeded faults (429 with Retry-After, 500, a hang longer than any client timeout, a
garbage non-JSON body, a well-formed reply whose content no parser accepts), enforce its own
requests-per-window cap with 429s, and demand an API key. It records the arrival time and outcome
of every request, so limits are checked where they matter: at the server.

The default reply is a deterministic function of the messages (:func:`fake_reply`), so a test can
say exactly which value every item must get. A request with a judge task's ``response_format``
(``json_schema``) gets that reply as the schema's JSON object (:func:`structured`), as vLLM and OpenAI
would send it.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rluf_ray.judge.parsing import ParseFailure, parse


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def fake_reply(messages: Sequence[dict[str, Any]]) -> str:
    """The server's deterministic answer: score, preference or rubric, chosen from the prompt text."""
    user = str(messages[-1].get("content", "")) if messages else ""
    h = _h(user)
    if "Preferred: 1" in user:
        return f"Preferred: {1 + h % 2}"
    if '"accuracy"' in user:
        axes = ("accuracy", "relevance", "completeness", "expression")
        return json.dumps({a: (h >> (8 * i)) % 11 for i, a in enumerate(axes)})
    return f"Score: {fake_score(messages)}"


def structured(content: str, response_format: Any) -> str:
    """What an endpoint honouring ``response_format`` would send for a text reply: under a
    ``json_schema`` of a judge task (``<task>_reply``) the value the text parser reads, as that schema's
    JSON object; a reply no parser reads is sent unchanged (a broken reply stays broken)."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return content
    task = str(response_format.get("json_schema", {}).get("name", "")).removesuffix("_reply")
    if task not in ("score", "pairwise", "rubric"):
        return content
    value = parse(task, content)
    if isinstance(value, ParseFailure):
        return content
    if task == "rubric":
        return json.dumps(value)
    return json.dumps({"score": value} if task == "score" else {"preferred": value})


def fake_score(messages: Sequence[dict[str, Any]]) -> float:
    """The score the default reply carries for these messages."""
    user = str(messages[-1].get("content", "")) if messages else ""
    return round((_h(user) % 1001) / 1000, 3)


@dataclass
class Faults:
    """Probabilities of injected faults per request (drawn from a seeded generator)."""

    p_429: float = 0.0
    p_500: float = 0.0
    p_hang: float = 0.0
    p_garbage: float = 0.0
    p_malformed: float = 0.0
    retry_after_s: float = 0.2
    hang_s: float = 30.0


@dataclass(frozen=True)
class Arrival:
    t: float  # time.monotonic() at arrival
    outcome: str  # ok | 429 | 500 | hang | garbage | malformed | capped | unauthorized | bad_request


class FakeOpenAI:
    """Run with ``with FakeOpenAI(...) as srv: srv.base_url``; the server lives in its own thread."""

    def __init__(
        self,
        latency_s: float = 0.0,
        faults: Faults | None = None,
        seed: int = 0,
        rpm_cap: int | None = None,
        window_s: float = 60.0,
        api_key: str | None = None,
        reply: Callable[[Sequence[dict[str, Any]]], str] = fake_reply,
        batch_delay_s: float = 0.0,
    ) -> None:
        self.latency_s = latency_s
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.rpm_cap = rpm_cap
        self.window_s = window_s
        self.api_key = api_key
        self.reply = reply
        self.arrivals: list[Arrival] = []
        self.batch_delay_s = batch_delay_s
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_creates = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- records -------------------------------------------------------------------------------
    def times(self, outcomes: Sequence[str] | None = None) -> list[float]:
        """Arrival times (sorted), of all requests or of the given outcomes."""
        with self._lock:
            return sorted(a.t for a in self.arrivals if outcomes is None or a.outcome in outcomes)

    def counts(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for a in self.arrivals:
                out[a.outcome] = out.get(a.outcome, 0) + 1
            return out

    def reset(self) -> None:
        with self._lock:
            self.arrivals.clear()

    # -- HTTP ----------------------------------------------------------------------------------
    def _record(self, outcome: str, t: float) -> None:
        with self._lock:
            self.arrivals.append(Arrival(t, outcome))

    def _capped(self, now: float) -> float | None:
        """Seconds until a slot frees when the server's own cap is reached, else None."""
        if self.rpm_cap is None:
            return None
        with self._lock:
            recent = [a.t for a in self.arrivals if a.outcome != "capped" and a.t > now - self.window_s]
        if len(recent) < self.rpm_cap:
            return None
        return max(0.01, min(recent) + self.window_s - now)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self._record("unauthorized", now)
            # A careless server that echoes the credential back: the client must not repeat it.
            got = request.headers.get("Authorization", "")
            return web.json_response(
                {"error": {"message": f"invalid key in header {got!r}", "type": "invalid_request_error"}},
                status=401,
            )
        wait = self._capped(now)
        if wait is not None:
            self._record("capped", now)
            return web.json_response(
                {"error": {"message": "rate limit reached", "type": "rate_limit"}},
                status=429,
                headers={"Retry-After": f"{wait:.3f}"},
            )
        try:
            body = await request.json()
            messages = body["messages"]
        except Exception:
            self._record("bad_request", now)
            return web.json_response({"error": {"message": "bad request"}}, status=400)
        f = self.faults
        r = self.rng.random()
        edges = [f.p_429, f.p_500, f.p_hang, f.p_garbage, f.p_malformed]
        kinds = ["429", "500", "hang", "garbage", "malformed"]
        acc = 0.0
        outcome = "ok"
        for p, k in zip(edges, kinds, strict=True):
            acc += p
            if r < acc:
                outcome = k
                break
        self._record(outcome, now)
        if outcome == "429":
            return web.json_response(
                {"error": {"message": "slow down", "type": "rate_limit"}},
                status=429,
                headers={"Retry-After": f"{f.retry_after_s:.3f}"},
            )
        if outcome == "500":
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        if outcome == "hang":
            await asyncio.sleep(f.hang_s)
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if outcome == "garbage":
            return web.Response(text="<html>upstream gateway melted</html>", content_type="application/json")
        content = "I would rather not say." if outcome == "malformed" else self.reply(messages)
        content = structured(content, body.get("response_format"))
        prompt_tokens = 3 + sum(4 + len(str(m.get("content", ""))) // 4 for m in messages)
        completion_tokens = max(1, len(content) // 4)
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.arrivals)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    # -- files and batches (the Batch API) ------------------------------------------------------
    def _file_obj(self, fid: str, name: str, purpose: str) -> dict[str, Any]:
        return {
            "id": fid,
            "object": "file",
            "bytes": len(self.files[fid]),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        f = form.get("file")
        purpose = str(form.get("purpose", "batch"))
        data = f.file.read() if isinstance(f, web.FileField) else str(f or "").encode()
        fid = f"file-{len(self.files) + 1}"
        self.files[fid] = data
        name = getattr(f, "filename", "upload.jsonl")
        return web.json_response(self._file_obj(fid, name, purpose))

    async def _file_content(self, request: web.Request) -> web.StreamResponse:
        fid = request.match_info["fid"]
        if fid not in self.files:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=self.files[fid], content_type="application/octet-stream")

    def _batch_line(self, line: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """One output line of a batch (and whether it is an error line)."""
        body = line.get("body", {})
        r = self.rng.random()
        f = self.faults
        if r < f.p_500:
            return {
                "id": f"batch_req_{line['custom_id']}",
                "custom_id": line["custom_id"],
                "response": {"status_code": 500, "body": {"error": {"message": "internal error"}}},
                "error": None,
            }, True
        malformed = r < f.p_500 + f.p_malformed
        messages = body.get("messages", [])
        content = "I would rather not say." if malformed else self.reply(messages)
        content = structured(content, body.get("response_format"))
        pt = 3 + sum(4 + len(str(m.get("content", ""))) // 4 for m in messages)
        ct = max(1, len(content) // 4)
        completion = {
            "id": f"chatcmpl-b-{line['custom_id']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        }
        out = {
            "id": f"batch_req_{line['custom_id']}",
            "custom_id": line["custom_id"],
            "response": {"status_code": 200, "request_id": "r", "body": completion},
            "error": None,
        }
        return out, False

    def _advance(self, b: dict[str, Any]) -> None:
        if b["status"] in ("completed", "failed", "cancelled", "expired"):
            return
        if time.monotonic() - b["_t0"] < self.batch_delay_s:
            b["status"] = "in_progress"
            return
        lines = [json.loads(x) for x in self.files[b["input_file_id"]].decode().splitlines() if x.strip()]
        outs: list[str] = []
        errs: list[str] = []
        for line in lines:
            res, is_err = self._batch_line(line)
            (errs if is_err else outs).append(json.dumps(res))
        oid = f"file-{len(self.files) + 1}"
        self.files[oid] = ("\n".join(outs) + "\n").encode()
        b["output_file_id"] = oid
        if errs:
            eid = f"file-{len(self.files) + 1}"
            self.files[eid] = ("\n".join(errs) + "\n").encode()
            b["error_file_id"] = eid
        b["status"] = "completed"
        b["completed_at"] = int(time.time())
        b["request_counts"] = {"total": len(lines), "completed": len(outs), "failed": len(errs)}

    def _batch_obj(self, b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    async def _create_batch(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("input_file_id") not in self.files:
            return web.json_response({"error": {"message": "no such input file"}}, status=400)
        self.batch_creates += 1
        bid = f"batch_{self.batch_creates}"
        self.batches[bid] = {
            "id": bid,
            "object": "batch",
            "endpoint": body.get("endpoint", "/v1/chat/completions"),
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "created_at": int(time.time()),
            "output_file_id": None,
            "error_file_id": None,
            "_t0": time.monotonic(),
        }
        return web.json_response(self._batch_obj(self.batches[bid]))

    async def _get_batch(self, request: web.Request) -> web.StreamResponse:
        b = self.batches.get(request.match_info["bid"])
        if b is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        self._advance(b)
        return web.json_response(self._batch_obj(b))

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_post("/v1/files", self._upload)
            app.router.add_get("/v1/files/{fid}/content", self._file_content)
            app.router.add_post("/v1/batches", self._create_batch)
            app.router.add_get("/v1/batches/{bid}", self._get_batch)
            self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
            await self._runner.setup()
            await web.SockSite(self._runner, sock, backlog=1024).start()

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(boot())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop
        if self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            try:
                fut.result(timeout=10)
            except Exception:
                pass

        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(timeout=10)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        loop.close()
        self._loop = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def window_counts(times: Sequence[float], window_s: float) -> list[int]:
    """For each arrival, how many arrivals fall in ``[t, t + window_s)``: every sliding window that
    starts at a request (the windows with the most requests always start at one)."""
    ts = sorted(times)
    return [bisect.bisect_left(ts, t + window_s) - i for i, t in enumerate(ts)]


def over_cap_windows(times: Sequence[float], window_s: float, cap: int) -> int:
    """Number of sliding windows holding more than ``cap`` arrivals."""
    return sum(1 for c in window_counts(times, window_s) if c > cap)
