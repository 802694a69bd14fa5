"""The API judge over real HTTP to the loopback fake server (no patched client)."""

from __future__ import annotations

import asyncio
import json

import pytest

from rluf_ray.bench.loopback_endpoint import loopback_score
from rluf_ray.config import JudgeConfig
from rluf_ray.errors import RlufError
from rluf_ray.judge.cache import JudgeCache
from rluf_ray.judge.client import ApiJudge, read_api_key
from rluf_ray.judge.keys import answer_key
from rluf_ray.judge.rate_limit import LocalLimiter, SlidingWindowBudget
from rluf_ray.judge.requests import score_request
from rluf_ray.judge.templates import render_request
from tests.support.fake_openai import FakeOpenAI, Faults


def make(srv: FakeOpenAI, cache: JudgeCache | None = None, key: str = "sk-test", **kw) -> ApiJudge:
    opts = dict(
        base_url=srv.base_url,
        requests_per_minute=100_000,
        tokens_per_minute=10**9,
        rate_window_s=1.0,
        timeout_s=0.4,
        backoff_base_s=0.02,
        backoff_max_s=0.2,
        max_in_flight_per_actor=32,
    )
    opts.update(kw)
    cfg = JudgeConfig(**opts)
    budget = SlidingWindowBudget(cfg.requests_per_minute, cfg.tokens_per_minute, cfg.rate_window_s, 0.0)
    return ApiJudge(cfg, LocalLimiter(budget), cache, api_key=key)


def run(judge: ApiJudge, reqs):
    async def go():
        try:
            return await judge.judge_many(reqs)
        finally:
            await judge.aclose()

    return asyncio.run(go())


def requests(n: int):
    return [
        score_request(answer_key(f"p{i}", "a"), f"post number {i}", "a reference", f"answer {i}")
        for i in range(n)
    ]


FAULTS_20 = Faults(
    p_429=0.05, p_500=0.05, p_hang=0.03, p_garbage=0.04, p_malformed=0.03, retry_after_s=0.05, hang_s=5
)


@pytest.mark.parametrize("retries", [6, 0])
def test_twenty_percent_faults_nothing_lost_or_duplicated(retries):
    reqs = requests(150)
    with FakeOpenAI(faults=FAULTS_20, seed=retries) as srv:
        judge = make(srv, max_retries=retries, max_parse_retries=min(retries, 2))
        results = run(judge, reqs)
        counts = srv.counts()
    assert sum(v for k, v in counts.items() if k != "ok") >= 15  # faults really happened
    assert [r.key for r in results] == [q.key for q in reqs]  # every item once, in order
    for r, q in zip(results, reqs, strict=True):
        if r.ok:
            # the right score for this item, never a default
            assert r.value == loopback_score(render_request(q))
        else:
            assert r.value is None and r.error and ":" in r.error
    led = judge.ledger.to_dict()
    assert led["scored"] + led["missing"] == 150
    # Every attempt is counted once; the server sees all of them except attempts that timed out on a
    # loaded machine before its handler ran (no duplicates, no uncounted calls).
    seen = sum(counts.values())
    assert seen <= led["calls"] <= seen + led["timed_out"]
    assert led["timed_out"] >= counts.get("hang", 0)  # a hang always ends in a client timeout
    if retries:
        assert led["scored"] == 150
    else:
        assert 10 <= led["missing"] <= 60  # no retries: the faults show up as recorded misses
        kinds = set(led["missing_reasons"])
        assert kinds <= {"rate_limited", "server_error", "timeout", "malformed", "parse"}


def test_retry_after_is_honoured_then_recorded_missing():
    with FakeOpenAI(faults=Faults(p_429=1.0, retry_after_s=0.3)) as srv:
        results = run(make(srv, max_retries=2, backoff_base_s=0.01), requests(1))
        ts = srv.times()
    assert len(ts) == 3
    assert all(b - a >= 0.29 for a, b in zip(ts, ts[1:], strict=False))
    assert results[0].value is None and results[0].error.startswith("rate_limited")


def test_malformed_reply_is_reasked_a_bounded_number_of_times():
    with FakeOpenAI(faults=Faults(p_malformed=1.0)) as srv:
        results = run(make(srv, max_parse_retries=2), requests(1))
        assert srv.counts() == {"malformed": 3}
    assert results[0].error.startswith("parse:") and results[0].attempts == 3


def test_bad_key_is_fatal_and_never_echoed():
    secret = "sk-very-secret-123"
    with FakeOpenAI(api_key="the-right-key") as srv:
        results = run(make(srv, key=secret), requests(1))
        assert srv.counts() == {"unauthorized": 1}  # not retried
    err = results[0].error
    assert err.startswith("http_401") and secret not in err and "***" in err


def test_cache_makes_rerun_free(tmp_path):
    reqs = requests(20)
    with FakeOpenAI() as srv:
        first = run(make(srv, JudgeCache(tmp_path / "c.sqlite")), reqs)
        n = len(srv.times())
        second_judge = make(srv, JudgeCache(tmp_path / "c.sqlite"))
        second = run(second_judge, reqs)
        assert len(srv.times()) == n == 20  # zero calls on the rerun
    assert [r.value for r in first] == [r.value for r in second]
    assert all(r.cached for r in second) and second_judge.ledger.calls == 0


def test_key_comes_from_the_named_env_var_only(monkeypatch):
    cfg = JudgeConfig(api_key_env="RLUF_TEST_KEY_X")
    monkeypatch.delenv("RLUF_TEST_KEY_X", raising=False)
    with pytest.raises(RlufError, match="RLUF_TEST_KEY_X"):
        read_api_key(cfg)
    monkeypatch.setenv("RLUF_TEST_KEY_X", "sk-abc")
    assert read_api_key(cfg) == "sk-abc"
    assert "sk-abc" not in cfg.model_dump_json()


def test_structured_output_asks_for_json_and_keys_the_cache(tmp_path):
    reqs = requests(4)
    cache = JudgeCache(tmp_path / "c.sqlite")
    with FakeOpenAI() as srv:
        structured = run(make(srv, cache), reqs)
        text = run(make(srv, cache, structured_output="none"), reqs)
        again = run(make(srv, cache), reqs)
        counts = srv.counts()
    for a, b, q in zip(structured, text, reqs, strict=True):
        assert a.value == b.value == loopback_score(render_request(q))
        assert a.raw == json.dumps({"score": a.value})  # the server saw the schema
        assert b.raw.startswith("Score:")
    assert not any(r.cached for r in structured + text) and all(r.cached for r in again)
    assert counts == {"ok": 8}  # the mode is part of the cache key: none of the JSON replies served `none`


def test_unparseable_structured_reply_is_missing_with_its_reason():
    with FakeOpenAI(reply=lambda m: "I will not grade this.") as srv:
        (res,) = run(make(srv, max_parse_retries=1), requests(1))
        counts = srv.counts()
    assert res.value is None and res.error.startswith("parse: reply is not JSON")
    assert "after 2 replies" in res.error
    assert counts == {"ok": 2}
