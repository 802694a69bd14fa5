"""Evaluation metrics: rubric means and win rates between two models' per-prompt scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class WinRate:
    """Head-to-head result of model A against model B over shared prompts."""

    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def rate(self) -> float:
        """Win rate of A with ties counted as half (NaN with no prompts)."""
        return (self.wins + 0.5 * self.ties) / self.n if self.n else math.nan


def win_rate(a: Mapping[str, float], b: Mapping[str, float], tol: float = 1e-9) -> WinRate:
    """Compare per-prompt scores on the prompts both models have (missing scores left out)."""
    wins = ties = losses = 0
    for pid in sorted(set(a) & set(b)):
        x, y = a[pid], b[pid]
        if math.isnan(x) or math.isnan(y):
            continue
        if abs(x - y) <= tol:
            ties += 1
        elif x > y:
            wins += 1
        else:
            losses += 1
    return WinRate(wins, ties, losses)


def axis_means(rows: Sequence[Mapping[str, float | None]], axes: Sequence[str]) -> dict[str, float]:
    """Mean of each rubric axis over rows, ignoring missing (None/NaN) values; NaN if none."""
    out: dict[str, float] = {}
    for axis in axes:
        vals = [float(v) for r in rows if (v := r.get(axis)) is not None and not math.isnan(float(v))]
        out[axis] = sum(vals) / len(vals) if vals else math.nan
    return out
