"""Similarity, pure parts: tokens, each (answer, top answer) pair once, per-answer layout."""

from __future__ import annotations

import numpy as np

from rluf_ray.conformal import similarity as sim


def test_tokenize():
    assert sim.tokenize("Cat sat, on the MAT!") == ["cat", "sat", "on", "the", "mat"]
    assert sim.tokenize("  ...  ") == []


def test_top_answer_pairs_index_each_pair_once_in_first_seen_order():
    answers = [["top", "b", "c"], ["single"], ["top", "c", "b"], ["other", "b"], []]
    index = sim.top_answer_pairs(answers)
    assert index == {("b", "top"): 0, ("c", "top"): 1, ("b", "other"): 2}


def test_per_answer_similarities_lays_pair_values_out_per_prompt():
    answers = [["top", "b", "c"], ["single"], ["top", "c"], ["other", "b"], []]
    index = sim.top_answer_pairs(answers)
    out = sim.per_answer_similarities(answers, index, np.array([0.5, 0.25, -0.125]))
    assert out == [[0.0, 0.5, 0.25], [0.0], [0.0, 0.25], [0.0, -0.125], []]
    assert all(type(v) is float for row in out for v in row)
