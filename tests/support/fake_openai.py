"""A fault-injecting OpenAI-compatible server for the tests (binds 127.0.0.1 only).

It is the package's loopback endpoint (``rluf_ray.bench.loopback_endpoint``: the chat-completions
shape with ``usage``, a fixed latency, its own requests-per-window cap, the arrival time and outcome
of every request) plus what only the tests need: seeded faults (429 with Retry-After, 500, a hang
longer than any client timeout, a garbage non-JSON body, a well-formed reply whose content no parser
accepts), a demanded API key, the one model name it serves (any other is a 404, as vLLM answers), a
reply function of the test's choosing, and the Batch API (files and
batches, with a delay before a batch completes).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rluf_ray.bench.loopback_endpoint import LoopbackEndpoint, chat_completion, loopback_reply

MALFORMED = "I would rather not say."  # a reply no parser reads


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


class FakeOpenAI(LoopbackEndpoint):
    """Run with ``with FakeOpenAI(...) as srv: srv.base_url``; the server lives in its own thread.

    Outcomes recorded beyond the endpoint's (ok, capped, bad_request): 429, 500, hang, garbage,
    malformed, unauthorized, unknown_model (``served_model`` set and the request names another model).
    """

    def __init__(
        self,
        latency_s: float = 0.0,
        faults: Faults | None = None,
        seed: int = 0,
        rpm_cap: int | None = None,
        window_s: float = 60.0,
        api_key: str | None = None,
        reply: Callable[[Sequence[Mapping[str, Any]]], str] = loopback_reply,
        batch_delay_s: float = 0.0,
        served_model: str | None = None,
    ) -> None:
        super().__init__(latency_s=latency_s, rpm_cap=rpm_cap, window_s=window_s)
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.api_key = api_key
        self.reply = reply
        self.batch_delay_s = batch_delay_s
        self.served_model = served_model
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_creates = 0

    # -- chat completions with faults -----------------------------------------------------------
    def _refuse(self, request: web.Request, now: float) -> web.StreamResponse | None:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self._record("unauthorized", now)
            # A careless server that echoes the credential back: the client must not repeat it.
            got = request.headers.get("Authorization", "")
            return web.json_response(
                {"error": {"message": f"invalid key in header {got!r}", "type": "invalid_request_error"}},
                status=401,
            )
        return super()._refuse(request, now)

    def _draw(self) -> str:
        f = self.faults
        r = self.rng.random()
        edges = [f.p_429, f.p_500, f.p_hang, f.p_garbage, f.p_malformed]
        kinds = ["429", "500", "hang", "garbage", "malformed"]
        acc = 0.0
        for p, k in zip(edges, kinds, strict=True):
            acc += p
            if r < acc:
                return k
        return "ok"

    async def _answer(
        self, body: dict[str, Any], messages: Sequence[Mapping[str, Any]], now: float
    ) -> web.StreamResponse:
        if self.served_model is not None and body.get("model") != self.served_model:
            self._record("unknown_model", now)
            message = f"The model `{body.get('model')}` does not exist."
            return web.json_response(
                {"error": {"message": message, "type": "NotFoundError", "code": 404}}, status=404
            )
        outcome = self._draw()
        self._record(outcome, now)
        f = self.faults
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
        if outcome == "garbage":
            await self._wait_latency()
            return web.Response(text="<html>upstream gateway melted</html>", content_type="application/json")
        return await self._reply(body, MALFORMED if outcome == "malformed" else self.reply(messages))

    # -- files and batches (the Batch API) ------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        super()._routes(app)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{fid}/content", self._file_content)
        app.router.add_post("/v1/batches", self._create_batch)
        app.router.add_get("/v1/batches/{bid}", self._get_batch)

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
        content = MALFORMED if malformed else self.reply(body.get("messages", []))
        out = {
            "id": f"batch_req_{line['custom_id']}",
            "custom_id": line["custom_id"],
            "response": {
                "status_code": 200,
                "request_id": "r",
                "body": chat_completion(f"chatcmpl-b-{line['custom_id']}", body, content),
            },
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
