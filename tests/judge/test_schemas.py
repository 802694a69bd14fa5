"""Structured judge replies: the schemas, the response_format, and the JSON parser's failures."""

from __future__ import annotations

import json

import pytest

from rluf_ray.judge.parsing import ParseFailure
from rluf_ray.judge.schemas import SCHEMAS, parse_reply, parse_structured, response_format


@pytest.mark.parametrize("task", sorted(SCHEMAS))
def test_response_format_is_a_valid_strict_json_schema(task: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    rf = response_format(task)
    assert rf["type"] == "json_schema" and rf["json_schema"]["name"] == f"{task}_reply"
    schema = rf["json_schema"]["schema"]
    jsonschema.Draft202012Validator.check_schema(schema)
    # OpenAI's strict mode: every property required, no others allowed.
    assert set(schema["required"]) == set(schema["properties"]) and schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("task", "reply", "value"),
    [
        ("score", '{"score": 0.56}', 0.56),
        ("score", '{"score": 1}', 1.0),
        ("pairwise", '{"preferred": 2}', 2),
        ("rubric", '{"accuracy": 7.5, "relevance": 8, "completeness": 6.5, "expression": 9}',
         {"accuracy": 7.5, "relevance": 8.0, "completeness": 6.5, "expression": 9.0}),
    ],
)  # fmt: skip
def test_valid_replies(task: str, reply: str, value) -> None:
    assert parse_structured(task, reply, "rubric_v2") == value


@pytest.mark.parametrize(
    ("task", "reply", "reason"),
    [
        ("score", "", "empty reply"),
        ("score", "Score: 0.5", "not JSON"),
        ("score", "[0.5]", "not a JSON object"),
        ("score", '{"score": 1.5}', "outside [0, 1]"),
        ("score", '{"score": true}', "not a number"),
        ("score", '{"grade": 0.5}', "missing"),
        ("pairwise", '{"preferred": 3}', "not 1 or 2"),
        ("pairwise", '{"preferred": 1.5}', "not 1 or 2"),
        ("rubric", '{"accuracy": 7.3, "relevance": 8, "completeness": 6.5, "expression": 9}', "multiple of 0.5"),
        ("rubric", '{"accuracy": 7}', "'relevance' missing"),
    ],
)  # fmt: skip
def test_unreadable_replies_are_failures_never_scores(task: str, reply: str, reason: str) -> None:
    out = parse_structured(task, reply, "rubric_v2")
    assert isinstance(out, ParseFailure) and reason in out.reason


def test_mode_picks_the_parser() -> None:
    assert parse_reply("score", "Score: 0.4", None, "none") == 0.4
    assert isinstance(parse_reply("score", "Score: 0.4", None, "json_schema"), ParseFailure)
    assert parse_reply("score", json.dumps({"score": 0.4}), None, "json_schema") == 0.4
    with pytest.raises(ValueError):
        parse_reply("score", "Score: 0.4", None, "xml")
