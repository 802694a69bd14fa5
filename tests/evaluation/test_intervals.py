"""Paired bootstrap intervals: hand-checkable cases and coverage on seeded synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rluf_ray.evaluation.intervals import bootstrap_mean, win_rate_ci


def test_win_rate_counts_ties_as_half() -> None:
    r = win_rate_ci("cfa", "dpo", np.array([1, 1, 0.5, 0, 1, 0.5]))
    assert r.win_rate == pytest.approx((3 + 0.5 * 2) / 6)
    assert (r.wins, r.ties, r.losses, r.n, r.seeds) == (3, 2, 1, 6, 1)
    assert r.ci_low <= r.win_rate <= r.ci_high


def test_constant_outcomes_have_a_degenerate_interval() -> None:
    r = win_rate_ci("a", "b", np.ones(25))
    assert (r.win_rate, r.ci_low, r.ci_high) == (1.0, 1.0, 1.0)


def test_interval_width_matches_the_normal_approximation() -> None:
    """For 400 fair coin flips the 95% interval is about +-1.96*sqrt(0.25/400) = +-0.049."""
    rng = np.random.default_rng(3)
    out = rng.integers(0, 2, size=400).astype(float)
    r = win_rate_ci("a", "b", out, n_boot=4000)
    half = (r.ci_high - r.ci_low) / 2
    assert half == pytest.approx(1.96 * math.sqrt(out.mean() * (1 - out.mean()) / 400), rel=0.12)


def test_seeds_widen_the_interval() -> None:
    """Two seeds that disagree add seed variance that one seed's interval does not show."""
    good = np.tile([1.0, 1.0, 1.0, 0.5], 25)
    bad = np.tile([0.0, 0.0, 0.5, 1.0], 25)
    one = win_rate_ci("a", "b", good)
    two = win_rate_ci("a", "b", np.stack([good, bad]))
    assert two.seeds == 2 and two.n == 100
    assert two.win_rate == pytest.approx((good.mean() + bad.mean()) / 2)
    assert (two.ci_high - two.ci_low) > 3 * (one.ci_high - one.ci_low)


def test_bootstrap_mean_covers_the_true_mean() -> None:
    """Seeded coverage check: the 90% interval holds the true mean in about 90% of 300 samples."""
    rng = np.random.default_rng(11)
    hits = 0
    for i in range(300):
        sample = rng.normal(5.0, 2.0, size=60)
        iv = bootstrap_mean(sample, n_boot=500, level=0.9, seed=i)
        hits += iv.low <= 5.0 <= iv.high
    assert 0.84 <= hits / 300 <= 0.95


def test_bad_outcomes_and_empty_input() -> None:
    with pytest.raises(ValueError, match="outcomes must be"):
        win_rate_ci("a", "b", np.array([1.0, 2.0]))
    assert math.isnan(bootstrap_mean(np.array([])).estimate)
