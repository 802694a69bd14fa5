"""Labels, conformal thresholds and prediction sets over nonconformity scores (pure numpy).

Labels
------
An answer is acceptable when its judge score >= ``accuracy_threshold``; answers with a missing
score are left out (never counted as unacceptable). A prompt's calibration score is
``any_acceptable``: the lowest score among its acceptable answers (inf when none), so that a set
``{a: s(a) <= q}`` contains an acceptable answer exactly when the calibration score is <= q; or
``top_answer``: the most frequent answer's score when it is acceptable, else inf. Prompts without
any scored answer carry no label and are left out of calibration (counted).

Thresholds
----------
``conformal_threshold`` is the split-conformal quantile: the ceil((n+1)(1-alpha))-th smallest of n
calibration scores (an order statistic, never an interpolated percentile). ``cfa_threshold`` is the
original research code's interpolated ``np.percentile``, kept for the ``cfa`` protocol. A threshold
of inf yields the full answer list; coverage is always reported as the true share of covered prompts.

Coverage
--------
A prompt is covered when its set holds an acceptable answer: ``label <= threshold`` for a prompt that
has one. A prompt without an acceptable answer is never covered, even by an infinite threshold
(``inf <= inf`` would report 1.0). A level is ``trivial`` when its threshold lies above every
acceptable prompt's label: the order statistic fell on a prompt with no acceptable answer (more than
alpha of the calibration prompts have none), so every set is the whole answer list.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from rluf_ray.errors import RlufError

LabelRule = Literal["any_acceptable", "top_answer"]
_EPS = 1e-9


class ConformalError(RlufError):
    """Calibration cannot run on this input (e.g. too few calibration prompts for alpha)."""


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------
def acceptable(judge: np.ndarray, threshold: float) -> np.ndarray:
    """Mark the answers whose judge score is >= threshold (missing scores are never acceptable).

    Args:
        judge: Judge scores, shape ``(P, K)`` (any shape works), NaN = missing or padding.
        threshold: The least acceptable judge score (``accuracy_threshold``).

    Returns:
        Booleans of ``judge``'s shape.
    """
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(judge, nan=-np.inf) >= threshold


def has_label(judge: np.ndarray, rule: LabelRule) -> np.ndarray:
    """Mark the prompts whose label is known: any scored answer (any_acceptable) / a scored top answer.

    Args:
        judge: Judge scores, shape ``(P, K)``, NaN = missing or padding.
        rule: The label rule.

    Returns:
        Booleans, shape ``(P,)``.
    """
    scored = ~np.isnan(judge)
    return scored[:, 0] if rule == "top_answer" else scored.any(axis=1)


def label_scores(
    scores: np.ndarray, accept: np.ndarray, rule: LabelRule, no_label: float = np.inf
) -> np.ndarray:
    """Compute each prompt's calibration score (its label) under ``rule``.

    Args:
        scores: Nonconformity scores, shape ``(..., P, K)`` (e.g. ``(G, P, K)``).
        accept: Acceptable answers, shape ``(P, K)`` (:func:`acceptable`).
        rule: ``any_acceptable``: the lowest score among the acceptable answers; ``top_answer``: the
            score of answer 0 when it is acceptable.
        no_label: The score of a prompt without an acceptable answer (``cfa`` uses the original's 20).

    Returns:
        The labels, shape ``(..., P)``.

    Raises:
        ValueError: If ``rule`` is unknown.
    """
    if rule == "any_acceptable":
        out = np.where(accept, scores, np.inf).min(axis=-1)
        return np.where(accept.any(axis=-1), out, no_label)
    if rule == "top_answer":
        return np.where(accept[:, 0], scores[..., 0], no_label)
    raise ValueError(f"unknown label rule {rule!r}")


# ---------------------------------------------------------------------------------------------
# Thresholds
# ---------------------------------------------------------------------------------------------
def order_stat_rank(n: int, alpha: float) -> int:
    """Compute k = ceil((n+1)(1-alpha)), the rank (1-based) of the conformal quantile among n scores.

    Args:
        n: The number of calibration scores.
        alpha: The miscoverage level, in (0, 1).

    Returns:
        The rank k, in ``1..n``.

    Raises:
        ValueError: If ``alpha`` is outside (0, 1).
        ConformalError: If k > n (``n`` is below 1/alpha - 1) or ``n`` < 1.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    k = math.ceil((n + 1) * (1 - alpha) - _EPS)
    if n < 1 or k > n:
        raise ConformalError(
            f"calibration set too small for alpha={alpha}: n={n} scores, need n >= 1/alpha - 1 = "
            f"{math.ceil(1 / alpha - 1 - _EPS)}"
        )
    return k


def conformal_threshold(cal_scores: np.ndarray, alpha: float) -> np.ndarray:
    """Take the ceil((n+1)(1-alpha))-th smallest score along the last axis (no interpolation).

    Args:
        cal_scores: Calibration scores (labels), shape ``(..., n)``: n prompts on the last axis (e.g.
            ``(G, R, n)``: grid points x random splits).
        alpha: The miscoverage level, in (0, 1).

    Returns:
        The thresholds, shape ``(...)`` (a 0-d array for 1-d input).

    Raises:
        ConformalError: If n is too small for ``alpha`` (see :func:`order_stat_rank`).
    """
    cal_scores = np.asarray(cal_scores, dtype=np.float64)
    k = order_stat_rank(cal_scores.shape[-1], alpha)
    return np.partition(cal_scores, k - 1, axis=-1)[..., k - 1]


def cfa_threshold(cal_scores: np.ndarray, alpha: float) -> np.ndarray:
    """Compute the original's threshold: ``np.percentile`` at ceil((n+1)(1-alpha))/n*100, interpolated.

    Args:
        cal_scores: Calibration scores (labels), shape ``(..., n)``: n prompts on the last axis.
        alpha: The miscoverage level, in (0, 1).

    Returns:
        The thresholds (linear interpolation), shape ``(...)``.

    Raises:
        ConformalError: If n < 1 or the percentile exceeds 100 (n below 1/alpha - 1).
    """
    cal_scores = np.asarray(cal_scores, dtype=np.float64)
    n = cal_scores.shape[-1]
    q = np.ceil((n + 1) * (1 - alpha)) / n * 100 if n else np.inf
    if n < 1 or q > 100:
        raise ConformalError(
            f"calibration set too small for alpha={alpha}: n={n} scores, need n >= 1/alpha - 1 = "
            f"{math.ceil(1 / alpha - 1 - _EPS)}"
        )
    return np.percentile(cal_scores, q, axis=-1)


# ---------------------------------------------------------------------------------------------
# Sets and metrics
# ---------------------------------------------------------------------------------------------
def in_set(scores: np.ndarray, mask: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """Compute set membership ``score <= threshold`` for real answers.

    Args:
        scores: Nonconformity scores, shape ``(..., P, K)``.
        mask: Real (non-padding) answers, shape ``(P, K)``.
        threshold: A threshold per leading index, shape ``(...)`` (e.g. ``(G,)``), or a scalar; it
            broadcasts over ``(P, K)``.

    Returns:
        Booleans, shape ``(..., P, K)``.
    """
    thr = np.asarray(threshold, dtype=np.float64)
    return (scores <= thr[..., None, None]) & mask


def covered(
    label: np.ndarray, threshold: np.ndarray | float, labelled: np.ndarray | None = None
) -> np.ndarray:
    """Whether each prompt's set holds an acceptable answer: ``label <= threshold`` and the prompt has one.

    Args:
        label: Calibration scores of the prompts, shape ``(..., P)``.
        threshold: Thresholds, shape broadcastable against ``label`` (e.g. ``(G, 1)`` for ``(G, P)``
            labels), or a scalar.
        labelled: Prompts with an acceptable answer, shape broadcastable against ``label``; default: a
            finite label.

    Returns:
        Booleans, the broadcast shape of the inputs.
    """
    label = np.asarray(label, dtype=np.float64)
    has = np.isfinite(label) if labelled is None else np.asarray(labelled, dtype=bool)
    return (label <= np.asarray(threshold, dtype=np.float64)) & has


def coverage(
    label: np.ndarray, threshold: np.ndarray | float, labelled: np.ndarray | None = None
) -> np.ndarray:
    """Compute the share of covered prompts over the last axis (see :func:`covered`).

    Args:
        label: Calibration scores of the prompts, shape ``(..., P)``.
        threshold: One threshold per leading index, shape ``(...)``, or a scalar.
        labelled: Prompts with an acceptable answer, shape broadcastable against ``label``; default: a
            finite label.

    Returns:
        The coverage in [0, 1], shape ``(...)``.
    """
    thr = np.asarray(threshold, dtype=np.float64)
    return covered(label, thr[..., None], labelled).mean(axis=-1)


def has_acceptable(accept: np.ndarray, rule: LabelRule) -> np.ndarray:
    """Mark the prompts whose label comes from an acceptable answer under ``rule``.

    Args:
        accept: Acceptable answers, shape ``(P, K)``.
        rule: ``top_answer`` looks at answer 0 only; ``any_acceptable`` at every answer.

    Returns:
        Booleans, shape ``(P,)``.
    """
    return np.asarray(accept[:, 0] if rule == "top_answer" else accept.any(axis=-1), dtype=bool)


def is_trivial(threshold: float, label: np.ndarray, labelled: np.ndarray) -> bool:
    """Tell whether the threshold admits every answer: it lies above every acceptable prompt's label.

    Args:
        threshold: The threshold of one level.
        label: Calibration scores of the prompts, shape ``(P,)``.
        labelled: Prompts with an acceptable answer, shape ``(P,)``.

    Returns:
        True when the threshold exceeds every labelled prompt's label, or no prompt is labelled.
    """
    real = np.asarray(label, dtype=np.float64)[np.asarray(labelled, dtype=bool)]
    return bool(real.size == 0 or threshold > float(real.max()))
