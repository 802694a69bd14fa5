"""FastText similarity model: trained on the run's text in a subprocess, deterministic, safe on empty answers."""

from __future__ import annotations

import numpy as np

from rluf_ray.conformal import similarity_model as sm

CORPUS = [
    "the cat sat on the mat and purred",
    "a cat was sitting on a mat purring",
    "my landlord raised the rent again this year",
    "the rent went up and the landlord will not fix the heating",
    "i think my girlfriend is upset that i forgot her birthday",
    "forgot my girlfriend birthday and she is angry",
] * 30


def test_deterministic_and_separates_related_from_unrelated():
    pairs = [
        ("cat sat on mat", "cat was sitting on mat"),
        ("cat sat on mat", "landlord raised rent"),
        ("", "cat sat on mat"),
        ("...", ""),
    ]
    settings = sm.SimilaritySettings(vector_size=32, epochs=5, seed=3)
    a = sm.similarities(CORPUS, pairs, settings)
    b = sm.similarities(CORPUS, pairs, settings)
    np.testing.assert_array_equal(a, b)  # two fresh processes, same numbers
    assert a.dtype == np.float64 and a.shape == (4,)
    assert a[0] > a[1]
    assert a[2] == 0.0 and a[3] == 0.0  # empty token lists do not crash


def test_top_answer_similarities_computes_each_pair_once():
    answers = [["cat sat on mat", "cat on mat", "landlord"], ["single"], ["cat sat on mat", "cat on mat"]]
    out = sm.top_answer_similarities(answers, CORPUS, sm.SimilaritySettings(vector_size=16, epochs=2))
    assert out[1] == [0.0]
    assert out[0][0] == 0.0 and out[0][1] == out[2][1]
    assert len(out[0]) == 3


def test_no_pairs_needs_no_subprocess():
    assert sm.similarities(CORPUS, [], sm.SimilaritySettings()).shape == (0,)
