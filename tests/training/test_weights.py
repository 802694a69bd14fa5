"""The original weighting scheme, by hand."""

from __future__ import annotations

import pytest

from rluf_ray.training.weights import WeightScheme, pair_weight, small_and_large_alpha

SETS = {
    0.5: {"p": {"a"}},  # small (50%) set
    0.2: {"p": {"a", "b"}},  # large (80%) set
}


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ("a", "a", 0.65),  # both sets, both answers
        ("a", "b", (0.65 + 0.8) / 2),  # 0.725, as in the released data
        ("b", "c", 0.4),  # large-only with neither
        ("b", "b", 0.8),
        ("c", "d", 0.0),
    ],
)
def test_pair_weights(x: str, y: str, expected: float) -> None:
    assert pair_weight(WeightScheme(), SETS, "p", x, y, 0.5, 0.2) == pytest.approx(expected)


def test_small_only_and_unknown_prompt() -> None:
    sets = {0.5: {"p": {"a"}}, 0.2: {"p": set()}}
    assert pair_weight(WeightScheme(), sets, "p", "a", "a", 0.5, 0.2) == 0.5
    assert pair_weight(WeightScheme(), sets, "other", "a", "a", 0.5, 0.2) == 0.0


def test_custom_scheme() -> None:
    s = WeightScheme(in_small_only=1, in_large_only=2, in_both=3, in_neither=4)
    assert [s.answer_weight(a, b) for a, b in [(1, 1), (1, 0), (0, 1), (0, 0)]] == [3, 1, 2, 4]


def test_alpha_levels() -> None:
    assert small_and_large_alpha([0.2, 0.5]) == (0.5, 0.2)
    assert small_and_large_alpha([0.5, 0.2, 0.5]) == (0.5, 0.2)
    with pytest.raises(ValueError, match="exactly two"):
        small_and_large_alpha([0.2])


def test_released_weights_are_reachable_by_the_default_scheme(weighted_sample_path) -> None:
    import itertools
    import json

    s = WeightScheme()
    singles = [s.answer_weight(a, b) for a, b in itertools.product([True, False], repeat=2)]
    reachable = {round((x + y) / 2, 6) for x, y in itertools.product(singles, repeat=2)}
    with open(weighted_sample_path) as f:
        released = {round(json.loads(line)["weight"], 6) for line in f}
    assert released <= reachable
    assert {0.0, 0.4, 0.725, 0.8} <= released


def test_weight_health_figures_from_the_released_scheme() -> None:
    from rluf_ray.training.weights import weight_health

    h = weight_health([0.0, 0.0, 0.65, 0.8, 0.5, 0.725, 0.0, 0.4])
    assert h["pairs"] == 8
    assert h["weight_histogram"] == {"0.0": 3, "0.4": 1, "0.5": 1, "0.65": 1, "0.725": 1, "0.8": 1}
    assert h["zero_weight_share"] == 3 / 8
    assert h["mean_weight"] == (0.65 + 0.8 + 0.5 + 0.725 + 0.4) / 8
    assert h["effective_lr_scale"] == {"mean": h["mean_weight"], "normalized": 1.0}
    assert weight_health([0.0, 0.0])["effective_lr_scale"] == {"mean": 0.0, "normalized": 0.0}
