"""Request keys: their exact spelling (artifacts rely on it) and the round trip through the parsers."""

from __future__ import annotations

import pytest

from rluf_ray.judge.keys import (
    answer_key,
    comparison_key,
    pair_key,
    parse_answer_key,
    parse_comparison_key,
    parse_pair_key,
    parse_rubric_key,
    parse_seeded_rubric_key,
    rubric_key,
    seeded_rubric_key,
)


def test_keys_are_spelled_as_before():
    assert answer_key("p7", "the cat sat") == "p7\x1fthe cat sat"
    assert answer_key("p7", str(3)) == "p7\x1f3"  # generate's dry run keys samples by index
    assert pair_key("p7", 2, 0) == "p7\x1f2\x1f0"
    assert rubric_key("rluf", "p7") == "rluf\x1fp7"


@pytest.mark.parametrize("answer", ["the cat sat", "", "has\x1fa separator", "ünïcode {braces}"])
def test_answer_key_round_trips(answer):
    assert parse_answer_key(answer_key("p-1", answer)) == ("p-1", answer)


def test_pair_and_rubric_keys_round_trip():
    assert parse_pair_key(pair_key("tldr_12", 11, 4)) == ("tldr_12", 11, 4)
    assert parse_rubric_key(rubric_key("sft", "tldr_12")) == ("sft", "tldr_12")


@pytest.mark.parametrize(
    ("parse", "key"),
    [(parse_answer_key, "no separator"), (parse_pair_key, "p\x1f1"), (parse_rubric_key, "model-only")],
)
def test_malformed_keys_are_rejected(parse, key):
    with pytest.raises(ValueError, match="key"):
        parse(key)


@pytest.mark.parametrize("seed", [None, 0, 3, 1234])
def test_evaluation_keys_round_trip(seed):
    key = comparison_key("cfa", "dpo", seed, "tldr_12")
    assert parse_comparison_key(key) == ("cfa", "dpo", seed, "tldr_12")
    assert parse_seeded_rubric_key(seeded_rubric_key("sft", seed, "tldr_12")) == ("sft", seed, "tldr_12")
    # distinct items, distinct keys
    assert comparison_key("cfa", "dpo", 1, "p") != comparison_key("cfa", "dpo", 2, "p")
    assert seeded_rubric_key("cfa", None, "p") != seeded_rubric_key("cfa", 0, "p")


def test_evaluation_keys_are_spelled_out():
    assert comparison_key("cfa", "sft", 2, "p7") == "cfa\x1fsft\x1f2\x1fp7"
    assert comparison_key("cfa", "sft", None, "p7") == "cfa\x1fsft\x1f\x1fp7"
    assert seeded_rubric_key("dpo", 1, "p7") == "dpo\x1f1\x1fp7"
    with pytest.raises(ValueError, match="key"):
        parse_comparison_key("cfa\x1fsft\x1fp7")
    with pytest.raises(ValueError, match="key"):
        parse_seeded_rubric_key("dpo\x1fp7")
