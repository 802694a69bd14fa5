"""The loopback OpenAI-compatible endpoint ``rluf bench judge`` times the judge against (127.0.0.1 only).

``POST /v1/chat/completions`` answers in the chat-completions shape with ``usage``, after a fixed
latency, and enforces its own requests-per-window cap with 429s (``Retry-After`` says when a slot
frees). It records the arrival time and outcome of every request, so the cap is checked where it
matters: at the server (:func:`window_counts`, :func:`over_cap_windows`).

The reply is a deterministic function of the messages (:func:`loopback_reply`). A request with a
judge task's ``response_format`` (``json_schema``) gets that reply as the schema's JSON object
(:func:`structured`), as vLLM and OpenAI would send it. The tests' fault-injecting server (seeded
429s, 500s, hangs, garbage and unparsable replies, an API key, the Batch API) extends this one:
``tests/support/fake_openai.py``.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rluf_ray.judge.parsing import ParseFailure, parse


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def loopback_reply(messages: Sequence[Mapping[str, Any]]) -> str:
    """The endpoint's deterministic answer: score, preference or rubric, chosen from the prompt text.

    Args:
        messages: The request's chat messages (the last one's content decides).

    Returns:
        The reply text, in the form the judge's text parsers read.
    """
    user = str(messages[-1].get("content", "")) if messages else ""
    h = _h(user)
    if "Preferred: 1" in user:
        return f"Preferred: {1 + h % 2}"
    if '"accuracy"' in user:
        axes = ("accuracy", "relevance", "completeness", "expression")
        return json.dumps({a: (h >> (8 * i)) % 11 for i, a in enumerate(axes)})
    return f"Score: {loopback_score(messages)}"


def loopback_score(messages: Sequence[Mapping[str, Any]]) -> float:
    """The score the default reply carries for these messages.

    Args:
        messages: The request's chat messages.

    Returns:
        A score in [0, 1] with three decimals.
    """
    user = str(messages[-1].get("content", "")) if messages else ""
    return round((_h(user) % 1001) / 1000, 3)


def structured(content: str, response_format: Any) -> str:
    """What an endpoint honouring ``response_format`` would send for a text reply.

    Under a ``json_schema`` of a judge task (``<task>_reply``) it is the value the text parser reads, as
    that schema's JSON object; a reply no parser reads is sent unchanged (a broken reply stays broken).

    Args:
        content: The reply text (see :func:`loopback_reply`).
        response_format: The request's ``response_format`` (any value; only a ``json_schema`` dict
            named ``score_reply``, ``pairwise_reply`` or ``rubric_reply`` changes the reply).

    Returns:
        The message content to send: ``{"score": ...}``, ``{"preferred": ...}`` or the rubric's object
        as JSON, or ``content`` unchanged.
    """
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


def chat_completion(cid: str, body: Mapping[str, Any], content: str) -> dict[str, Any]:
    """A chat-completions object answering the request ``body`` with ``content``.

    Args:
        cid: The completion's id.
        body: The request body (``messages``, ``model``, ``response_format``).
        content: The reply text (sent as :func:`structured` makes it for the request's format).

    Returns:
        The response object, with ``usage`` estimated at 4 characters a token.
    """
    messages = body.get("messages", [])
    content = structured(content, body.get("response_format"))
    prompt_tokens = 3 + sum(4 + len(str(m.get("content", ""))) // 4 for m in messages)
    completion_tokens = max(1, len(content) // 4)
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@dataclass(frozen=True)
class Arrival:
    """One request as the server recorded it.

    Attributes:
        t: ``time.monotonic()`` at arrival.
        outcome: ``ok``, ``capped`` or ``bad_request`` (and the outcomes a subclass adds).
    """

    t: float  # time.monotonic() at arrival
    outcome: str  # ok | capped | bad_request (and the outcomes a subclass adds)


class LoopbackEndpoint:
    """Run with ``with LoopbackEndpoint(...) as srv: srv.base_url``; the server lives in its own thread.

    Subclasses (the tests' fault-injecting server) add routes (:meth:`_routes`), refuse requests before
    the cap (:meth:`_refuse`) and answer differently (:meth:`_answer`).

    Args:
        latency_s: Seconds each accepted request waits before its reply.
        rpm_cap: Most requests accepted per sliding window of ``window_s`` (despite the name, per
            window, not per minute); ``None`` for no cap.
        window_s: Length of the cap's sliding window, in seconds.
    """

    def __init__(self, latency_s: float = 0.0, rpm_cap: int | None = None, window_s: float = 60.0) -> None:
        self.latency_s = latency_s
        self.rpm_cap = rpm_cap
        self.window_s = window_s
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- records -------------------------------------------------------------------------------
    def times(self, outcomes: Sequence[str] | None = None) -> list[float]:
        """Arrival times (sorted), of all requests or of the given outcomes.

        Args:
            outcomes: Outcomes to keep (e.g. ``["ok"]``); ``None`` keeps every request, 429s included.

        Returns:
            ``time.monotonic()`` arrival times in ascending order.
        """
        with self._lock:
            return sorted(a.t for a in self.arrivals if outcomes is None or a.outcome in outcomes)

    def counts(self) -> dict[str, int]:
        """Requests per outcome.

        Returns:
            Outcome -> number of requests (only outcomes that occurred).
        """
        with self._lock:
            out: dict[str, int] = {}
            for a in self.arrivals:
                out[a.outcome] = out.get(a.outcome, 0) + 1
            return out

    def _record(self, outcome: str, t: float) -> None:
        with self._lock:
            self.arrivals.append(Arrival(t, outcome))

    # -- HTTP ----------------------------------------------------------------------------------
    def _capped(self, now: float) -> float | None:
        """Seconds until a slot frees when the server's own cap is reached, else None."""
        if self.rpm_cap is None:
            return None
        with self._lock:
            recent = [a.t for a in self.arrivals if a.outcome != "capped" and a.t > now - self.window_s]
        if len(recent) < self.rpm_cap:
            return None
        return max(0.01, min(recent) + self.window_s - now)

    def _refuse(self, request: web.Request, now: float) -> web.StreamResponse | None:
        """A 429 (recorded as ``capped``) when the cap is reached, else None."""
        wait = self._capped(now)
        if wait is None:
            return None
        self._record("capped", now)
        return web.json_response(
            {"error": {"message": "rate limit reached", "type": "rate_limit"}},
            status=429,
            headers={"Retry-After": f"{wait:.3f}"},
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        refused = self._refuse(request, now)
        if refused is not None:
            return refused
        try:
            body = await request.json()
            messages = body["messages"]
        except Exception:
            self._record("bad_request", now)
            return web.json_response({"error": {"message": "bad request"}}, status=400)
        return await self._answer(body, messages, now)

    async def _answer(
        self, body: dict[str, Any], messages: Sequence[Mapping[str, Any]], now: float
    ) -> web.StreamResponse:
        """Answer an accepted request (recorded as ``ok``) with the deterministic reply."""
        self._record("ok", now)
        return await self._reply(body, loopback_reply(messages))

    async def _wait_latency(self) -> None:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)

    async def _reply(self, body: dict[str, Any], content: str) -> web.StreamResponse:
        """``content`` as a chat completion, after the endpoint's latency."""
        await self._wait_latency()
        return web.json_response(chat_completion(f"chatcmpl-{len(self.arrivals)}", body, content))

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The OpenAI base URL of the running server."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LoopbackEndpoint:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread.

        Returns:
            This endpoint, serving at ``base_url``.

        Raises:
            RuntimeError: The server did not start within 10 s.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            app = web.Application()
            self._routes(app)
            self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
            await self._runner.setup()
            await web.SockSite(self._runner, sock, backlog=1024).start()

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(boot())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="loopback-endpoint", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the loopback endpoint did not start")
        return self

    def stop(self) -> None:
        """Stop serving: close the server, cancel what still runs, end the thread."""
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

    def __enter__(self) -> LoopbackEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def window_counts(times: Sequence[float], window_s: float) -> list[int]:
    """For each arrival, how many arrivals fall in ``[t, t + window_s)``.

    That is every sliding window that starts at a request (the windows with the most requests always
    start at one).

    Args:
        times: Arrival times in seconds (any order).
        window_s: Window length in seconds.

    Returns:
        One count per arrival, in ascending order of arrival time.
    """
    ts = sorted(times)
    return [bisect.bisect_left(ts, t + window_s) - i for i, t in enumerate(ts)]


def over_cap_windows(times: Sequence[float], window_s: float, cap: int) -> int:
    """Number of sliding windows holding more than ``cap`` arrivals.

    Args:
        times: Arrival times in seconds (any order).
        window_s: Window length in seconds.
        cap: Most arrivals allowed per window.

    Returns:
        How many of the windows starting at an arrival hold more than ``cap`` arrivals.
    """
    return sum(1 for c in window_counts(times, window_s) if c > cap)
