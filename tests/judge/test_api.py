"""The judge interface: one score, one pairwise and one rubric request through the offline provider,
each result checked by hand; duplicates are judged once; the dry run costs nothing."""

from __future__ import annotations

import pytest

from rluf_ray.config import JudgeConfig
from rluf_ray.judge import api as judge_api
from rluf_ray.judge.requests import pairwise_request, rubric_request, score_request

REF = "the cat sat on the mat"  # 6 tokens


def _requests():
    return [
        # candidate "the cat sat": LCS 3 of 3 candidate / 6 reference tokens: precision 1, recall 1/2,
        # ROUGE-L F1 = 2 * 1 * 0.5 / 1.5 = 2/3 (score_v1 is that F1)
        score_request("s", "a post", REF, "the cat sat", "score_v1"),
        # output_2 is the reference itself (F1 1) and output_1 shares no word with it (F1 0): 2 wins
        pairwise_request("p", "Summarize.", "a post", "a dog ran", REF, REF),
        # rubric_v2, steps of 0.5 (rluf_ray.judge.offline_rubric): accuracy: 2 of the facts cat, sat, mat
        # stated, none wrong -> 10; relevance: both words in the reference -> 10; completeness 2/3 ->
        # round(13.33) / 2 = 6.5; expression: fluent, 3 of 6 words is inside the length band -> 10
        rubric_request("r", "a post", REF, "the cat sat", "rubric_v2"),
    ]


def test_judge_routes_each_task_kind_through_the_offline_provider(tmp_path) -> None:
    section = JudgeConfig(provider="offline")
    ctx = judge_api.JudgeContext("test", str(tmp_path))
    reqs = _requests()
    out = judge_api.judge(section, [*reqs, reqs[0]], ctx)  # a repeated key is judged once
    assert [r.key for r in out.results] == ["s", "p", "r"]
    score, pref, rubric = (r.value for r in out.results)
    assert score == pytest.approx(2 / 3)
    assert pref == 2
    assert rubric == {"accuracy": 10.0, "relevance": 10.0, "completeness": 6.5, "expression": 10.0}
    assert all(r.ok and not r.cached for r in out.results)
    assert out.report["provider"] == "offline" and out.report["calls"] == 0
    assert out.report["scored"] == 3 and out.report["missing"] == 0 and not out.report["budget_exhausted"]
    # the Batch API flag changes nothing for a provider without a batch mode
    again = judge_api.judge(section, reqs, ctx, use_batch_api=True)
    assert [r.value for r in again.results] == [score, pref, rubric] and "mode" not in again.report
    assert not list(tmp_path.iterdir())  # the offline provider keeps no cache


def test_dry_run_of_the_offline_provider_is_free(tmp_path) -> None:
    ctx = judge_api.JudgeContext("feedback", str(tmp_path))
    d = judge_api.dry_run(JudgeConfig(provider="offline"), [*_requests(), _requests()[1]], ctx)
    assert d == {
        "stage": "feedback",
        "provider": "offline",
        "requests": 3,
        "calls": 0,
        "cached": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "dollars": 0.0,
    }


def test_score_answers_gives_score_rows(tmp_path) -> None:
    section = JudgeConfig(provider="offline", templates={"score": "score_v1"})
    rows = [{"prompt_id": "q", "post": "a post", "reference": REF, "answer": "the cat sat"}] * 2
    out, report = judge_api.score_answers(section, rows, judge_api.JudgeContext("generate", str(tmp_path)))
    assert out == [{"prompt_id": "q", "answer": "the cat sat", "score": pytest.approx(2 / 3), "error": None}]
    assert report["scored"] == 1


def test_the_batch_dry_run_is_priced_at_the_batch_factor(tmp_path) -> None:
    ctx = judge_api.JudgeContext("feedback", str(tmp_path))
    section = JudgeConfig(
        provider="openai",
        max_tokens=100,
        batch_price_factor=0.5,
        prices={"prompt_per_million": 1000.0, "completion_per_million": 2000.0},
    )
    live = judge_api.dry_run(section, _requests(), ctx)
    batch = judge_api.dry_run(section, _requests(), ctx, use_batch_api=True)
    # 3 uncached calls: completion <= 300 tokens at $2000/M = $0.6 plus the prompt tokens at $1000/M
    assert live["calls"] == batch["calls"] == 3 and live["completion_tokens"] == 300
    expected = (live["prompt_tokens"] * 1000.0 + 300 * 2000.0) / 1e6
    assert live["dollars"] == pytest.approx(round(expected, 4))
    assert batch["dollars"] == pytest.approx(round(expected * 0.5, 4))
    assert not list(tmp_path.iterdir())  # a dry run creates no cache file
