"""Batch API mode against the loopback server's files and batches endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from rluf_ray.bench.loopback_endpoint import loopback_score
from rluf_ray.config import JudgeConfig
from rluf_ray.judge.batch import BatchJudge, batch_lines, read_output_line
from rluf_ray.judge.cache import JudgeCache
from rluf_ray.judge.progress import JudgeProgress
from rluf_ray.judge.requests import score_request
from rluf_ray.judge.templates import render_request
from tests.support.fake_openai import FakeOpenAI, Faults


def reqs(n: int):
    return [score_request(f"k{i}", f"post {i}", "ref", f"answer {i}") for i in range(n)]


def cfg(srv: FakeOpenAI, **kw) -> JudgeConfig:
    return JudgeConfig(base_url=srv.base_url, batch_poll_s=0.05, timeout_s=5, **kw)


def test_batch_lines_and_output_parsing():
    data = batch_lines(
        "m", [("c1", [{"role": "user", "content": "hi"}])], {"c1": {"temperature": 0.0, "max_tokens": 5}}
    )
    line = json.loads(data.decode())
    assert line == {
        "custom_id": "c1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.0,
            "max_tokens": 5,
        },
    }
    ok = {
        "response": {
            "status_code": 200,
            "body": {
                "choices": [{"message": {"content": "x"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            },
        }
    }
    assert read_output_line(ok) == ("x", 3, 1, None)
    assert read_output_line({"response": {"status_code": 500, "body": {}}})[3].startswith("server_error")
    assert read_output_line({"error": {"message": "bad"}})[3] == "batch_item: bad"


def batch_states(path: Path) -> int:
    """Batch rounds in progress saved in a judge cache file."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM judge_batches").fetchone()[0])


def test_batch_round_trip_retries_faulty_lines_and_caches(tmp_path):
    rs = reqs(40)
    with FakeOpenAI(faults=Faults(p_500=0.1, p_malformed=0.1), seed=1) as srv:
        c = cfg(srv, max_parse_retries=3, prices={"prompt_per_million": 2.0, "completion_per_million": 8.0})
        lines: list[str] = []
        bar = JudgeProgress("judge feedback", len(rs), emit=lines.append)
        cache = JudgeCache(tmp_path / "c.sqlite")  # batch ids and replies in one file, as on the driver
        bj = BatchJudge(c, cache, cache, api_key="k", progress=bar)
        results = asyncio.run(bj.run(rs))
        assert srv.batch_creates >= 2  # faulty lines went into a second round
        assert not srv.arrivals  # no real-time calls
        again_cache = JudgeCache(tmp_path / "c.sqlite")
        again = BatchJudge(c, again_cache, again_cache, api_key="k")
        creates = srv.batch_creates
        second = asyncio.run(again.run(rs))
        assert srv.batch_creates == creates  # rerun: all cached, no batch
    assert [r.key for r in results] == [r.key for r in rs]
    assert all(
        r.ok and r.value == loopback_score(render_request(q)) for r, q in zip(results, rs, strict=True)
    )
    assert all(r.cached for r in second)
    led = bj.ledger
    # Half price: the ledger's prices are the configured ones times batch_price_factor (0.5).
    assert led.dollars == pytest.approx((led.prompt_tokens * 1.0 + led.completion_tokens * 4.0) / 1e6)
    assert batch_states(tmp_path / "c.sqlite") == 0  # finished rounds leave no state behind
    assert lines[-1].startswith("judge feedback [####################] 40/40 100% |")
    assert f"| ${led.dollars:.4f} | ETA 0s" in lines[-1]  # the spend at batch prices


def test_batch_resumes_by_id_after_restart(tmp_path):
    rs = reqs(5)
    with FakeOpenAI(batch_delay_s=1.0) as srv:
        c = cfg(srv, batch_timeout_s=0.2)  # the first "process" gives up before the batch is done
        state = tmp_path / "state.sqlite"  # batch ids only: no reply cache
        first = asyncio.run(BatchJudge(c, JudgeCache(state), None, api_key="k").run(rs))
        assert all(r.error.startswith("batch_timeout") for r in first)
        assert srv.batch_creates == 1 and batch_states(state) == 1
        c2 = cfg(srv)
        second = asyncio.run(BatchJudge(c2, JudgeCache(state), None, api_key="k").run(rs))
        assert srv.batch_creates == 1  # resumed the same batch id, did not create another
    assert all(r.ok for r in second)


def test_judge_requests_batch_mode(tmp_path, monkeypatch):
    from rluf_ray.config import RlufConfig
    from rluf_ray.judge.api import JudgeContext, judge

    monkeypatch.setenv("RLUF_BATCH_TEST_KEY", "sk-b")
    rs = reqs(6) + reqs(2)  # duplicate keys are judged once
    with FakeOpenAI() as srv:
        full = RlufConfig.model_validate(
            {
                "output_dir": str(tmp_path),
                "judge": {
                    "base_url": srv.base_url,
                    "api_key_env": "RLUF_BATCH_TEST_KEY",
                    "batch_poll_s": 0.05,
                },
            }
        )
        ctx = JudgeContext("feedback", full.output_dir)
        results, report = judge(full.judge, rs, ctx, use_batch_api=True)
        assert srv.batch_creates == 1 and not srv.arrivals
    assert [r.key for r in results] == [r.key for r in reqs(6)]
    assert report["mode"] == "batch" and report["scored"] == 6 and not report["budget_exhausted"]
