"""Dry-run cost arithmetic (pure), with hand-computed numbers."""

from __future__ import annotations

import pytest

from rluf_ray.judge.cost import dry_run_cost, format_dry_run, offline_dry_run


def test_dry_run_cost_counts_only_uncached_calls():
    # Uncached: 100 + 40 = 140 prompt tokens, 2 calls x 256 = 512 completion tokens.
    # $ = (140 * 1000 + 512 * 2000) / 1e6 = (140_000 + 1_024_000) / 1e6 = 1.164
    d = dry_run_cost(
        "feedback", "openai", "gpt-4o", [100, 250, 40], [False, True, False], 256, 1000.0, 2000.0
    )
    assert d == {
        "stage": "feedback",
        "provider": "openai",
        "model": "gpt-4o",
        "requests": 3,
        "calls": 2,
        "cached": 1,
        "prompt_tokens": 140,
        "completion_tokens": 512,
        "dollars": 1.164,
    }
    assert format_dry_run(d) == (
        "judge dry run (feedback, openai): 2 calls for 3 requests (1 cached), ~140 prompt tokens, "
        "<= 512 completion tokens, <= $1.1640"
    )


def test_dry_run_cost_rounds_dollars_to_four_places():
    # (1234 * 2.5 + 1 * 10 * 10) / 1e6 = (3085 + 100) / 1e6 = 0.003185 -> 0.0032
    d = dry_run_cost("generate", "openai", "m", [1234], [False], 10, 2.5, 10.0)
    assert d["dollars"] == 0.0032 and d["completion_tokens"] == 10


def test_all_cached_costs_nothing_and_lengths_must_match():
    d = dry_run_cost("evaluate", "openai", "m", [500, 600], [True, True], 256, 5.0, 15.0)
    assert (d["calls"], d["cached"], d["prompt_tokens"], d["completion_tokens"], d["dollars"]) == (
        0,
        2,
        0,
        0,
        0.0,
    )
    with pytest.raises(ValueError):
        dry_run_cost("evaluate", "openai", "m", [1, 2], [False], 256, 5.0, 15.0)


def test_offline_dry_run_is_free():
    d = offline_dry_run("generate", 7)
    assert d["requests"] == 7 and d["calls"] == 0 and d["dollars"] == 0.0 and d["provider"] == "offline"
    assert "0 calls for 7 requests" in format_dry_run(d)
