"""The offline judge: ROUGE-L against the reference, deterministic, seeded noise."""

from __future__ import annotations

import asyncio
import json

import pytest

from rluf_ray.core.judge_parsing import parse
from rluf_ray.core.judge_prompts import pairwise_request, rubric_request, score_request
from rluf_ray.core.offline_judge import OfflineJudge


def test_score_is_rouge_l_f1():
    j = OfflineJudge()
    # reference "the cat sat on the mat" (6 tokens), candidate "the cat sat" (3 tokens): LCS 3,
    # precision 3/3, recall 3/6, F1 = 2*1*0.5/1.5 = 2/3.
    r = j.judge_one(score_request("k", "post", "the cat sat on the mat", "the cat sat"))
    assert r.ok and r.value == pytest.approx(2 / 3)
    assert j.judge_one(score_request("k", "p", "the cat", "the cat")).value == pytest.approx(1.0)
    assert j.judge_one(score_request("k", "p", "the cat", "dogs run")).value == 0.0


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
    # precision 1 -> 10, F1 2/3 -> 7, recall 1/2 -> 5, length 3/6 -> 5
    assert r.value == {"accuracy": 10.0, "relevance": 7.0, "completeness": 5.0, "expression": 5.0}


def test_rubric_v2_answers_on_the_half_point_grid():
    req = rubric_request("k", "post", "the cat sat on the mat", "the cat sat", "rubric_v2")
    r = OfflineJudge().judge_one(req)
    # F1 2/3 -> 6.67 -> nearest half point 6.5 (v1 rounds it to 7)
    assert r.value == {"accuracy": 10.0, "relevance": 6.5, "completeness": 5.0, "expression": 5.0}
    assert parse("rubric", json.dumps(r.value), "rubric_v2") == r.value  # its own parser accepts it
    # The default version is the original's scale.
    assert (
        OfflineJudge().judge_one(rubric_request("k", "post", "the cat sat on the mat", "the cat sat")).value
        == r.value
    )


@pytest.mark.parametrize("version", ["score_v1", "score_v2"])
def test_score_is_the_same_reference_overlap_under_both_versions(version):
    r = OfflineJudge().judge_one(score_request("k", "post", "the cat sat on the mat", "the cat sat", version))
    assert r.value == pytest.approx(2 / 3)


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
