"""Parsers return a value or an explicit ParseFailure, never a default score."""

from __future__ import annotations

import pytest

from rluf_ray.judge.parsing import ParseFailure, parse, parse_preference, parse_rubric, parse_score


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Score: 0.8", 0.8),
        ("score = 1", 1.0),
        ("Reasoning first.\nScore: **0.25**", 0.25),
        ("0", 0.0),
        (" .5 ", 0.5),
        ("Score: 0.4\nScore: 0.4", 0.4),
    ],
)
def test_parse_score_values(reply, expected):
    assert parse_score(reply) == expected


@pytest.mark.parametrize(
    "reply",
    ["", "   ", "I cannot grade this.", "Score: 1.5", "Score: -0.1", "Score: 0.2\nScore: 0.9", "7/10", None],
)
def test_parse_score_failures(reply):
    out = parse_score(reply)
    assert isinstance(out, ParseFailure)
    assert out.reason


def test_zero_is_a_score_not_a_failure():
    out = parse_score("Score: 0.0")
    assert out == 0.0 and not isinstance(out, ParseFailure)


@pytest.mark.parametrize(
    "reply, expected",
    [("Preferred: 1", 1), ("preferred: 2", 2), ("Preferred: Response (2)", 2), ("Preferred: output 1", 1)],
)
def test_parse_preference(reply, expected):
    assert parse_preference(reply) == expected


@pytest.mark.parametrize("reply", ["", "Both are fine.", "Preferred: 3", "Preferred: 1\nPreferred: 2"])
def test_parse_preference_failures(reply):
    assert isinstance(parse_preference(reply), ParseFailure)


def test_parse_rubric():
    out = parse_rubric('Here: {"accuracy": 7, "Relevance": 8.5, "completeness": 0, "expression": 10} done')
    assert out == {"accuracy": 7.0, "relevance": 8.5, "completeness": 0.0, "expression": 10.0}


@pytest.mark.parametrize(
    "reply",
    [
        "no json",
        '{"accuracy": 7, "relevance": 8, "completeness": 6}',
        '{"accuracy": 11, "relevance": 8, "completeness": 6, "expression": 1}',
        '{"accuracy": "7", "relevance": 8, "completeness": 6, "expression": 1}',
        '{"accuracy": true, "relevance": 8, "completeness": 6, "expression": 1}',
        "[1, 2, 3]",
    ],
)
def test_parse_rubric_failures(reply):
    assert isinstance(parse_rubric(reply), ParseFailure)


def test_dispatch():
    assert parse("score", "Score: 0.5") == 0.5
    assert parse("pairwise", "Preferred: 2") == 2


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('{"accuracy": 7.3, "relevance": 8, "completeness": 6, "expression": 1}', "not a multiple of 0.5"),
        ('{"accuracy": 7, "relevance": 8.25, "completeness": 6, "expression": 1}', "not a multiple of 0.5"),
        ('{"accuracy": 10.5, "relevance": 8, "completeness": 6, "expression": 1}', "outside [0, 10]"),
    ],
)
def test_rubric_v2_rejects_values_off_the_half_point_grid(reply, reason):
    out = parse("rubric", reply, "rubric_v2")
    assert isinstance(out, ParseFailure) and reason in out.reason
    # Not coerced onto the grid; rubric_v1 reads any number in [0, 10].
    if "outside" not in reason:
        assert not isinstance(parse("rubric", reply, "rubric_v1"), ParseFailure)


def test_rubric_v2_reads_the_half_point_grid():
    reply = '{"accuracy": 7.5, "relevance": 0, "completeness": 9.5, "expression": 10.0}'
    assert parse("rubric", reply, "rubric_v2") == {
        "accuracy": 7.5,
        "relevance": 0.0,
        "completeness": 9.5,
        "expression": 10.0,
    }


@pytest.mark.parametrize("version", ["score_v1", "score_v2"])
def test_both_score_versions_read_a_score_line(version):
    assert parse("score", "Score: 0.7", version) == 0.7
    assert isinstance(parse("score", "Score: 7", version), ParseFailure)
