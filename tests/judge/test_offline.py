"""The offline judge: ROUGE-L against the reference (score, pairwise), the rubric's own measures
(tested on crafted answers in ``test_offline_rubric.py``), deterministic, seeded noise."""

from __future__ import annotations

import asyncio
import json

import pytest

from rluf_ray.judge.offline import OfflineJudge
from rluf_ray.judge.parsing import parse
from rluf_ray.judge.requests import pairwise_request, rubric_request, score_request


def test_score_v1_is_rouge_l_f1():
    j = OfflineJudge()
    # reference "the cat sat on the mat" (6 tokens), candidate "the cat sat" (3 tokens): LCS 3,
    # precision 3/3, recall 3/6, F1 = 2*1*0.5/1.5 = 2/3.
    r = j.judge_one(score_request("k", "post", "the cat sat on the mat", "the cat sat", "score_v1"))
    assert r.ok and r.value == pytest.approx(2 / 3)
    assert j.judge_one(score_request("k", "p", "the cat", "the cat", "score_v1")).value == pytest.approx(1.0)
    assert j.judge_one(score_request("k", "p", "the cat", "dogs run", "score_v1")).value == 0.0


REF = "Nora Quinn opened the bakery in Ashford on Monday; 40 people came."


@pytest.mark.parametrize(
    ("answer", "errors"),
    [
        (REF, 0),
        ("nora quinn opened the bakery in ashford on monday 40 people came", 0),  # case, punctuation
        ("Nora Quinn opened the bakery in Ashford on Monday; 45 people came.", 1),  # one wrong fact
        ("Nora Keller opened the bakery in Ashford on Friday; 40 people came.", 2),  # two wrong facts
        ("Nora Quinn opened the bakery in Ashford; 40 people came.", 2),  # "on monday" dropped
        ("Nora Quinn opened the new bakery in Ashford on Monday; 40 people came.", 1),  # a word invented
        ("the the the", 11),  # LCS 1 ("the"): 11 reference words missing, 2 extra
        ("", 12),
    ],
)
def test_score_v2_counts_word_level_mistakes(answer, errors):
    j = OfflineJudge()
    assert j.errors(answer, REF) == errors
    expected = max(0.0, 1.0 - 0.2 * errors)
    assert j.judge_one(score_request("k", "post", REF, answer, "score_v2")).value == pytest.approx(expected)
    # score_v2 is the default version
    assert j.judge_one(score_request("k", "post", REF, answer)).value == pytest.approx(expected)


def test_score_v2_makes_two_wrong_facts_unacceptable_where_rouge_does_not():
    j = OfflineJudge()
    two_wrong = "Nora Keller opened the bakery in Ashford on Friday; 40 people came."
    rouge = j.judge_one(score_request("k", "post", REF, two_wrong, "score_v1")).value
    strict = j.judge_one(score_request("k", "post", REF, two_wrong, "score_v2")).value
    # LCS 10 of 12 tokens each way: F1 = 10/12; two errors: 1 - 0.4
    assert rouge == pytest.approx(10 / 12) and rouge >= 0.7
    assert strict == pytest.approx(0.6) and strict < 0.7


def test_pairwise_prefers_closer_output_in_either_order():
    j = OfflineJudge()
    ref = "the cat sat on the mat"
    a = pairwise_request("k1", "Summarize", "post", "the cat sat on a mat", "a dog ran", reference=ref)
    b = pairwise_request("k2", "Summarize", "post", "a dog ran", "the cat sat on a mat", reference=ref)
    assert j.judge_one(a).value == 1
    assert j.judge_one(b).value == 2
    assert not j.judge_one(pairwise_request("k", "i", "p", "x", "y")).ok  # no reference: explicit miss


def test_rubric_axes_in_range():
    req = rubric_request("k", "post", "the cat sat on the mat", "the cat sat", "rubric_v1")
    r = OfflineJudge().judge_one(req)
    # no numbers or names: every fact (cat, sat, mat) is a key fact; 2 stated, none wrong -> 10;
    # both content tokens in the reference -> relevance 10; 2 of 3 facts -> 6.67 -> 7; 3 of 6 words is
    # inside the length band and neither text ends a sentence -> expression 10
    assert r.value == {"accuracy": 10.0, "relevance": 10.0, "completeness": 7.0, "expression": 10.0}


def test_rubric_v2_answers_on_the_half_point_grid():
    req = rubric_request("k", "post", "the cat sat on the mat", "the cat sat", "rubric_v2")
    r = OfflineJudge().judge_one(req)
    # completeness 2/3 -> 6.67 -> nearest half point 6.5 (v1 rounds it to 7)
    assert r.value == {"accuracy": 10.0, "relevance": 10.0, "completeness": 6.5, "expression": 10.0}
    assert parse("rubric", json.dumps(r.value), "rubric_v2") == r.value  # its own parser accepts it
    # The default version is the original's scale.
    assert (
        OfflineJudge().judge_one(rubric_request("k", "post", "the cat sat on the mat", "the cat sat")).value
        == r.value
    )


def test_rubric_ignores_noise():
    req = rubric_request("k", "a post about a cat", "the cat sat on the mat", "a cat sat there")
    assert OfflineJudge(0.5, seed=3).judge_one(req).value == OfflineJudge().judge_one(req).value


def test_noise_is_seeded_and_flips_about_the_requested_share():
    ref = "the cat sat on the mat"
    reqs = [
        pairwise_request(f"k{i}", "Summarize", "post", "the cat sat on a mat", "a dog ran", reference=ref)
        for i in range(2000)
    ]
    clean = OfflineJudge(0.0)
    noisy = OfflineJudge(0.2, seed=7)
    flips = sum(noisy.judge_one(r).value != clean.judge_one(r).value for r in reqs)
    assert 330 <= flips <= 470  # 400 expected; 5 sigma is about 90
    again = asyncio.run(OfflineJudge(0.2, seed=7).judge_many(reqs[::-1]))[::-1]
    assert [r.value for r in again] == [noisy.judge_one(r).value for r in reqs]  # order-independent
    other = [OfflineJudge(0.2, seed=8).judge_one(r).value for r in reqs]
    assert other != [noisy.judge_one(r).value for r in reqs]


def test_noise_leaves_scores_alone():
    req = score_request("k", "post", "the cat sat on the mat", "the cat sat")
    assert OfflineJudge(0.5, seed=1).judge_one(req).value == OfflineJudge().judge_one(req).value


def test_noise_bounds():
    with pytest.raises(ValueError):
        OfflineJudge(0.7)
