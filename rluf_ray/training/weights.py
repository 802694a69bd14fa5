"""Uncertainty weights for preference pairs from conformal prediction-set membership.

Two prediction sets per prompt: the *small* one (largest alpha, e.g. 0.5 -> 50% coverage) and the
*large* one (smallest alpha, e.g. 0.2 -> 80% coverage). An answer's weight depends on which sets
hold it; a pair's weight is the mean of its two answers' weights (the original scheme).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class WeightScheme:
    """Weight of an answer by membership (defaults: the original project's scheme)."""

    in_small_only: float = 0.5
    in_large_only: float = 0.8
    in_both: float = 0.65
    in_neither: float = 0.0

    def answer_weight(self, in_small: bool, in_large: bool) -> float:
        """Weigh one answer by its membership in the two sets.

        Args:
            in_small: Whether the small set (largest alpha) holds the answer.
            in_large: Whether the large set (smallest alpha) holds the answer.

        Returns:
            The answer's weight.
        """
        if in_small and in_large:
            return self.in_both
        if in_small:
            return self.in_small_only
        if in_large:
            return self.in_large_only
        return self.in_neither


def small_and_large_alpha(alphas: Iterable[float]) -> tuple[float, float]:
    """Tell the alpha of the small set and of the large set from exactly two miscoverage levels.

    Args:
        alphas: The calibrated miscoverage levels (repeats are counted once).

    Returns:
        ``(small-set alpha, large-set alpha)``: the larger level, then the smaller.

    Raises:
        ValueError: If there are not exactly two distinct levels.
    """
    levels = sorted(set(alphas))
    if len(levels) != 2:
        raise ValueError(f"the weighting scheme needs exactly two miscoverage levels, got {levels}")
    return levels[1], levels[0]


SetIndex = Mapping[float, Mapping[str, set[str]]]  # alpha -> prompt_id -> answers in the set


def pair_weight(
    scheme: WeightScheme,
    sets: SetIndex,
    prompt_id: str,
    answer_a: str,
    answer_b: str,
    small_alpha: float,
    large_alpha: float,
) -> float:
    """Weigh a pair as the mean of its two answers' weights; an answer of a prompt without sets is in neither.

    Args:
        scheme: The answer weights by membership.
        sets: Alpha -> prompt_id -> the normalised answers in that prompt's prediction set.
        prompt_id: The pair's prompt.
        answer_a: One answer of the pair (normalised, as in ``sets``).
        answer_b: The other answer.
        small_alpha: The alpha of the small set.
        large_alpha: The alpha of the large set.

    Returns:
        The pair's weight.
    """
    small = sets.get(small_alpha, {}).get(prompt_id, set())
    large = sets.get(large_alpha, {}).get(prompt_id, set())
    wa = scheme.answer_weight(answer_a in small, answer_a in large)
    wb = scheme.answer_weight(answer_b in small, answer_b in large)
    return (wa + wb) / 2.0


def weight_health(weights: Iterable[float]) -> dict[str, object]:
    """How much a set of pair weights will move training: histogram, mean, zero share, and the scale
    each reduction applies to the configured learning rate relative to plain DPO (every weight 1).

    ``mean`` (sum(w*l)/B): the gradient shrinks with the mean weight, so the scale is the mean weight
    (0.05 means a 20x smaller step). ``normalized`` (sum(w*l)/sum(w)): 1.0 whenever a weight is
    non-zero. Both are 0 when every weight is 0 (nothing to train on).

    Args:
        weights: The pair weights.

    Returns:
        ``pairs``, ``weight_histogram`` (weight rounded to 6 places, as a string -> pairs, ascending),
        ``mean_weight``, ``zero_weight_share`` and ``effective_lr_scale`` (reduction -> scale).
    """
    values = [float(w) for w in weights]
    n = len(values)
    hist: dict[str, int] = {}
    for w in sorted(values):
        key = str(round(w, 6))
        hist[key] = hist.get(key, 0) + 1
    zeros = sum(1 for w in values if w == 0.0)
    mean = sum(values) / n if n else 0.0
    return {
        "pairs": n,
        "weight_histogram": hist,
        "mean_weight": mean,
        "zero_weight_share": zeros / n if n else 0.0,
        "effective_lr_scale": {"mean": mean, "normalized": 1.0 if n and zeros < n else 0.0},
    }
