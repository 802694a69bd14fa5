"""The judge service: plan(cfg) without Ray; two async judge actors sharing one budget, checked at the server."""

from __future__ import annotations

import pytest

from rluf_ray.bench.loopback_endpoint import over_cap_windows, window_counts
from rluf_ray.config import RlufConfig
from rluf_ray.errors import RlufError
from rluf_ray.judge import api as judge_api
from rluf_ray.judge.api import JudgeContext, scores_table
from rluf_ray.judge.cost import format_dry_run
from rluf_ray.judge.scoring import score_requests
from rluf_ray.judge.service import plan
from rluf_ray.schema import SCORE_SCHEMA
from tests.support.fake_openai import FakeOpenAI, Faults

KEY_ENV = "RLUF_JUDGE_TEST_KEY"


def cfg_for(tmp_path, base_url: str, actors: int = 2, **judge) -> RlufConfig:
    j = {
        "provider": "openai",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "requests_per_minute": 10_000,
        "tokens_per_minute": 10**8,
        "rate_window_s": 3.0,
        "rate_safety": 0.05,
        "timeout_s": 1.0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.5,
        "budget_name": f"budget-{tmp_path.name}",
    }
    j.update(judge)
    return RlufConfig.model_validate(
        {"output_dir": str(tmp_path / "out"), "judge": j, "resources": {"judge_actors": actors}}
    )


def context(cfg: RlufConfig, run: str = "generate") -> JudgeContext:
    return JudgeContext(run, cfg.output_dir, cfg.resources.judge_actors)


def score_answers(cfg: RlufConfig, data, raise_on_budget: bool = True):
    return judge_api.score_answers(cfg.judge, data, context(cfg), raise_on_budget=raise_on_budget)


def dry_run(cfg: RlufConfig, reqs, stage: str = "judge"):
    return judge_api.dry_run(cfg.judge, reqs, context(cfg, stage))


def rows(n: int, per_prompt: int = 5):
    return [
        {
            "prompt_id": f"p{i // per_prompt}",
            "post": f"post {i // per_prompt}",
            "reference": "ref",
            "answer": f"a {i}",
        }
        for i in range(n)
    ]


def test_plan_is_pure(tmp_path):
    cfg = cfg_for(tmp_path, "http://127.0.0.1:1/v1", max_in_flight_per_actor=16)
    p = plan(cfg.judge, context(cfg))
    assert p["num_actors"] == 2 and p["chunk_size"] == 8
    assert p["actor_options"]["num_cpus"] == 0 and p["budget_options"]["max_concurrency"] == 1
    assert p["budget"] == {
        "name": f"budget-{tmp_path.name}",
        "namespace": "rluf",
        "rpm": 10_000,
        "tpm": 10**8,
        "window_s": 3.0,
        "safety": 0.05,
    }
    assert p["cache_path"] == str(tmp_path / "out" / "judge_cache.sqlite")


def test_offline_provider_scores_without_ray(tmp_path):
    cfg = RlufConfig.model_validate({"judge": {"provider": "offline"}, "output_dir": str(tmp_path)})
    data = [{"prompt_id": "p", "post": "x", "reference": "the cat sat", "answer": "the cat sat"}] * 2
    out, report = score_answers(cfg, data)
    assert out == [{"prompt_id": "p", "answer": "the cat sat", "score": 1.0, "error": None}]  # deduplicated
    assert report["calls"] == 0 and dry_run(cfg, score_requests(data))["calls"] == 0


@pytest.mark.ray
def test_two_actors_share_one_budget_under_faults(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ray-test")
    cap, window = 30, 3.0
    faults = Faults(p_429=0.04, p_500=0.04, p_garbage=0.02, retry_after_s=0.05)
    with FakeOpenAI(latency_s=0.05, faults=faults, seed=3) as srv:
        cfg = cfg_for(tmp_path, srv.base_url, requests_per_minute=cap, rate_window_s=window)
        data = rows(80)
        before = dry_run(cfg, score_requests(data), "generate")
        assert before["calls"] == 80 and before["cached"] == 0 and before["dollars"] > 0
        assert "80 calls" in format_dry_run(before)
        out, report = score_answers(cfg, data)
        ts = srv.times()  # every request that reached the server, faults included
        # Rerun: everything is cached, zero calls.
        n_before = len(ts)
        out2, report2 = score_answers(cfg, data)
        assert len(srv.times()) == n_before and report2["calls"] == 0 and report2["cache_hits"] == 80
    assert over_cap_windows(ts, window, cap) == 0
    assert max(window_counts(ts, window)) >= int(0.8 * cap)  # and the budget was really used
    assert [(r["prompt_id"], r["answer"]) for r in out] == [(r["prompt_id"], r["answer"]) for r in data]
    assert all(r["score"] is not None and r["error"] is None for r in out)
    assert report["scored"] == 80 and report["calls"] == n_before
    assert out2 == out
    table = scores_table(out)
    assert table.schema == SCORE_SCHEMA and table.num_rows == 80
    after = dry_run(cfg, score_requests(data), "generate")
    assert after["calls"] == 0 and after["cached"] == 80


@pytest.mark.ray
def test_max_dollars_stops_cleanly_and_keeps_finished_work(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ray-test")
    with FakeOpenAI() as srv:
        # Worst-case price per call ~ (~400 prompt + 256 completion tokens) at $1000/M: ~$0.66.
        cfg = cfg_for(
            tmp_path,
            srv.base_url,
            actors=1,
            max_dollars=3.0,
            prices={"prompt_per_million": 1000.0, "completion_per_million": 1000.0},
        )
        data = rows(30)
        with pytest.raises(RlufError, match="max_dollars"):
            score_answers(cfg, data)
        spent_calls = len(srv.times())
        out, report = score_answers(cfg, data, raise_on_budget=False)
    assert 1 <= spent_calls < 30
    assert report["budget_exhausted"] and report["cache_hits"] == spent_calls
    scored = [r for r in out if r["score"] is not None]
    missing = [r for r in out if r["score"] is None]
    assert len(scored) + len(missing) == 30 and len(scored) >= spent_calls
    assert all(r["error"].startswith("max_dollars") for r in missing)
