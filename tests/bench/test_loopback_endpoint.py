"""The loopback endpoint `rluf bench judge` runs against: deterministic replies, its own cap, records."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from rluf_ray.bench.loopback_endpoint import LoopbackEndpoint, loopback_score
from rluf_ray.judge.schemas import response_format

MESSAGES = [{"role": "user", "content": "Rate this summary. Score: 0.0-1.0"}]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_replies_are_deterministic_and_the_cap_is_the_servers() -> None:
    with LoopbackEndpoint(rpm_cap=2, window_s=60.0) as srv:
        text = _post(srv.base_url, {"model": "m", "messages": MESSAGES})
        assert text["choices"][0]["message"]["content"] == f"Score: {loopback_score(MESSAGES)}"
        assert text["usage"]["total_tokens"] > 0
        structured = _post(srv.base_url, {"messages": MESSAGES, "response_format": response_format("score")})
        assert json.loads(structured["choices"][0]["message"]["content"]) == {
            "score": loopback_score(MESSAGES)
        }
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(srv.base_url, {"messages": MESSAGES})
        assert refused.value.code == 429 and float(refused.value.headers["Retry-After"]) > 0
        assert srv.counts() == {"ok": 2, "capped": 1}
        assert len(srv.times(["ok"])) == 2
