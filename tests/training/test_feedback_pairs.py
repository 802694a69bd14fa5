"""Pair selection with per-pair order debiasing, and mapping a preference back to chosen/rejected."""

from __future__ import annotations

import pytest

from rluf_ray.training.feedback_pairs import chosen_rejected, pair_tasks


def test_all_pairs_and_cap() -> None:
    answers = [f"a{i}" for i in range(5)]
    tasks = pair_tasks("p", answers, debias_order=False)
    assert [(t.first, t.second) for t in tasks] == [(i, j) for i in range(5) for j in range(i + 1, 5)]
    capped = pair_tasks("p", answers, max_pairs=3, seed=1)
    assert len(capped) == 3
    assert capped == pair_tasks("p", answers, max_pairs=3, seed=1)  # deterministic
    assert pair_tasks("p", ["only"]) == []


def test_order_is_debiased_per_pair() -> None:
    answers = [f"answer number {i}" for i in range(40)]
    tasks = pair_tasks("prompt-1", answers, seed=7)
    flips = sum(t.flipped for t in tasks)
    assert len(tasks) == 780
    assert 0.4 < flips / len(tasks) < 0.6  # both orders within one prompt
    # Independent of order of processing: the same pair gets the same order on its own.
    t = tasks[123]
    lo, hi = sorted((t.first, t.second))
    again = pair_tasks("prompt-1", [answers[lo], answers[hi]], seed=7)[0]
    assert again.flipped == t.flipped


def test_chosen_rejected_maps_back() -> None:
    t = pair_tasks("p", ["x", "y"], debias_order=False)[0]
    assert chosen_rejected(t, 1) == (0, 1) and chosen_rejected(t, 2) == (1, 0)
    with pytest.raises(ValueError):
        chosen_rejected(t, 0)
