"""Paired bootstrap confidence intervals for arm comparisons (win rates) and rubric means.

Units are prompts: every arm answered the same prompts, so resampling prompts with replacement keeps
the pairing (one draw of prompt indices is used for every arm and every seed). With several training
seeds the seeds are resampled too (a two-level bootstrap: seeds, then prompts), so the interval
covers seed-to-seed variation as well as prompt sampling. Percentile intervals; a fixed RNG seed
makes them reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WIN, TIE, LOSS = 1.0, 0.5, 0.0


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class WinRateCI:
    """A's win rate over B (ties count one half) with its paired bootstrap interval."""

    a: str
    b: str
    win_rate: float
    ci_low: float
    ci_high: float
    n: int
    wins: int
    ties: int
    losses: int
    seeds: int

    def to_dict(self) -> dict[str, float | int | str]:
        """Give the fields as a plain dict (the report's win-rate entry).

        Returns:
            Field name -> value.
        """
        return dict(self.__dict__)


def _outcomes(values: np.ndarray) -> np.ndarray:
    """A 2-D float array (seeds x prompts) of outcomes in {0, 0.5, 1} (one seed: a row)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError("outcomes must be 1-D (prompts) or 2-D (seeds x prompts)")
    if arr.size and not np.isin(arr, (WIN, TIE, LOSS)).all():
        raise ValueError("outcomes must be 1 (win), 0.5 (tie) or 0 (loss)")
    return arr


def bootstrap_mean(values: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Mean over a (seeds x prompts) or (prompts,) array with a two-level paired percentile interval.

    Seeds are resampled with replacement, then prompts (one prompt draw shared by all seeds, so a
    prompt's seeds stay together).

    Args:
        values: The values, shape ``(S, P)`` (seeds x prompts) or ``(P,)`` (one seed).
        n_boot: Bootstrap resamples.
        level: Confidence level of the percentile interval, in (0, 1).
        seed: Seed of the bootstrap RNG.

    Returns:
        The mean of all values, the interval and n = P; NaN (n 0) with no prompts or seeds.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    s, p = arr.shape
    if p == 0 or s == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, p, size=(n_boot, p))
    seeds = rng.integers(0, s, size=(n_boot, s)) if s > 1 else np.zeros((n_boot, 1), dtype=np.int64)
    # stats[b] = mean over resampled seeds and resampled prompts
    picked = arr[seeds[:, :, None], prompts[:, None, :]]  # (n_boot, s, p)
    stats = picked.mean(axis=(1, 2))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return Interval(float(arr.mean()), float(low), float(high), p)


def win_rate_ci(
    a: str, b: str, outcomes: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> WinRateCI:
    """Compute A's win rate over B from per-prompt outcomes (1 win, 0.5 tie, 0 loss).

    Args:
        a: Arm A.
        b: Arm B.
        outcomes: A's outcomes, shape ``(S, P)`` (seeds x prompts) or ``(P,)``.
        n_boot: Bootstrap resamples.
        level: Confidence level of the interval, in (0, 1).
        seed: Seed of the bootstrap RNG.

    Returns:
        The win rate with its paired bootstrap interval, n = P, the win/tie/loss counts over all S x P
        cells, and S.

    Raises:
        ValueError: If ``outcomes`` is not 1-D or 2-D, or holds a value other than 1, 0.5 or 0.
    """
    arr = _outcomes(outcomes)
    iv = bootstrap_mean(arr, n_boot=n_boot, level=level, seed=seed)
    return WinRateCI(
        a=a,
        b=b,
        win_rate=iv.estimate,
        ci_low=iv.low,
        ci_high=iv.high,
        n=iv.n,
        wins=int((arr == WIN).sum()),
        ties=int((arr == TIE).sum()),
        losses=int((arr == LOSS).sum()),
        seeds=int(arr.shape[0]),
    )
