"""Naming what changed between two plans' key data."""

from __future__ import annotations

from rluf_ray.config.plan_diff import ABSENT, Change, describe, diff_plan_data, leaf_name, short_value


def test_equal_plans_have_no_changes() -> None:
    data = {"a": {"b": [1, 2], "c": None}, "s": [["provider", "offline"]]}
    assert diff_plan_data(data, {"s": [["provider", "offline"]], "a": {"c": None, "b": [1, 2]}}) == []


def test_nested_fields_list_items_and_pairs_are_named_by_path() -> None:
    old = {
        "pool": {"sampling": {"temperature": 0.85}},
        "alphas": [0.2, 0.5],
        "judge": [["seed", 0]],
        "gone": 1,
    }
    new = {
        "pool": {"sampling": {"temperature": 0.9}},
        "alphas": [0.2, 0.4],
        "judge": [["seed", 1]],
        "added": 2,
    }
    assert diff_plan_data(old, new) == [
        Change("added", ABSENT, 2),
        Change("alphas[1]", 0.5, 0.4),
        Change("gone", 1, ABSENT),
        Change("judge.seed", 0, 1),
        Change("pool.sampling.temperature", 0.85, 0.9),
    ]


def test_lists_of_other_lengths_and_bools_change_whole() -> None:
    assert diff_plan_data({"seeds": [42]}, {"seeds": [42, 43]}) == [Change("seeds", [42], [42, 43])]
    assert diff_plan_data({"x": True}, {"x": 1}) == [Change("x", True, 1)]  # True == 1, not one value
    assert diff_plan_data(1, 2) == [Change("(plan)", 1, 2)]


def test_texts() -> None:
    assert leaf_name("samples.splits[0].size") == "size" and leaf_name("alphas[1]") == "alphas"
    assert short_value("x" * 50, width=10) == '"xxxxxx...'
    assert describe(Change("a.b", 1, ABSENT)) == "plan a.b: 1 -> <absent>"
    assert (
        describe(Change("a.b", 0.85, 0.9), "generation.temperature") == "generation.temperature: 0.85 -> 0.9"
    )
