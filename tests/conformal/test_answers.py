"""Answer frequency tables and variety statistics, with hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from rluf_ray.conformal.answers import VarietyStats, prompt_answers


def test_prompt_answers_counts_normalised_answers_most_frequent_first() -> None:
    texts = ["The cat sat.", "a dog ran", "the CAT sat", "Dog ran!", "cat  sat", "bird"]
    lps = [-1.0, -2.0, -3.0, float("nan"), -5.0, -0.5]
    t = prompt_answers(texts, lps)
    assert t.answers == ["cat sat", "dog ran", "bird"]
    assert t.counts == [3, 2, 1]
    assert t.texts == ["The cat sat.", "a dog ran", "bird"]  # first raw text of each answer
    assert t.mean_logprobs[0] == pytest.approx(-3.0)  # (-1 - 3 - 5) / 3
    assert t.mean_logprobs[1] == pytest.approx(-2.0)  # NaN ignored
    assert t.mean_logprobs[2] == pytest.approx(-0.5)
    assert t.num_samples == 6
    assert t.first_sampled == 0  # "The cat sat." was sampled first and is also the most frequent


def test_prompt_answers_names_the_first_sampled_answer_when_another_is_more_frequent() -> None:
    t = prompt_answers(["bird", "a dog ran", "Dog ran!", "cat sat", "dog ran", "bird"])
    assert t.answers == ["dog ran", "bird", "cat sat"] and t.counts == [3, 2, 1]
    assert t.first_sampled == 1  # sample 0 is "bird", second most frequent
    assert prompt_answers(["x", "y", "y"]).first_sampled == 1
    assert prompt_answers(["y", "x", "x", "y", "z"]).first_sampled == 0  # tie: first sampled ranks first


def test_prompt_answers_ties_keep_first_sampled_order_and_unknown_logprobs() -> None:
    t = prompt_answers(["b", "x", "x", "b", "c"])
    assert t.answers == ["b", "x", "c"] and t.counts == [2, 2, 1]
    assert all(math.isnan(x) for x in t.mean_logprobs)
    with pytest.raises(ValueError):
        prompt_answers(["a"], [-1.0, -2.0])


def test_variety_stats_summary_and_merge() -> None:
    a, b = VarietyStats(), VarietyStats()
    a.add(["x y", "z"], [50, 10], "X, y.")  # top matches after normalisation
    a.add(["p", "q", "r"], [30, 20, 10], "r", truncated=True)  # reference present, not top
    b.add(["m"] * 1 + [f"o{i}" for i in range(39)], [21] + [1] * 39, "nope")  # 40 distinct, no match
    a.merge(b)
    s = a.summary()
    assert s["prompts"] == 3 and s["samples"] == 180
    assert s["distinct_median"] == 3 and s["distinct_min"] == 2 and s["distinct_max"] == 40
    assert s["distinct_share_3_30"] == round(1 / 3, 4)
    assert s["top_matches_reference"] == round(1 / 3, 4)
    assert s["reference_among_answers"] == round(2 / 3, 4)
    assert s["truncated"] == 1
    assert VarietyStats().summary() == {"prompts": 0}
