"""Score requests from generation rows and SCORE_SCHEMA rows from results (pure)."""

from __future__ import annotations

from rluf_ray.judge.requests import JudgeResult
from rluf_ray.judge.scoring import calibration_score_rows, score_requests, score_rows


def test_calibration_score_rows_skip_the_test_split():
    gen = [
        {
            "prompt_id": "a",
            "split": "calibration",
            "reference": "r",
            "answers": ["x y", "z"],
            "texts": ["X y.", "Z!"],
        },
        {"prompt_id": "b", "split": "test", "reference": "r", "answers": ["q"], "texts": ["Q"]},
    ]
    items = calibration_score_rows(gen, {"a": "post a", "b": "post b"})
    assert [(i["prompt_id"], i["answer"], i["text"], i["post"]) for i in items] == [
        ("a", "x y", "X y.", "post a"),
        ("a", "z", "Z!", "post a"),
    ]
    reqs = score_requests(items)
    assert reqs[0].fields["answer"] == "X y." and reqs[0].key == "a\x1fx y"  # judge sees the raw text


def test_score_rows_keep_failures_as_missing_never_zero():
    reqs = score_requests(
        [
            {"prompt_id": "p", "post": "x", "reference": "r", "answer": "one"},
            {"prompt_id": "q", "post": "y", "reference": "r", "answer": "two"},
        ]
    )
    results = [JudgeResult(reqs[0].key, 0.75), JudgeResult(reqs[1].key, None, "parse: no number")]
    assert score_rows(reqs, results) == [
        {"prompt_id": "p", "answer": "one", "score": 0.75, "error": None},
        {"prompt_id": "q", "answer": "two", "score": None, "error": "parse: no number"},
    ]
