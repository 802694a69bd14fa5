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
    """Answers whose judge score is >= threshold (missing scores are never acceptable)."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(judge, nan=-np.inf) >= threshold


def has_label(judge: np.ndarray, rule: LabelRule) -> np.ndarray:
    """Prompts whose label is known: any scored answer (any_acceptable) / a scored top answer."""
    scored = ~np.isnan(judge)
    return scored[:, 0] if rule == "top_answer" else scored.any(axis=1)


def label_scores(
    scores: np.ndarray, accept: np.ndarray, rule: LabelRule, no_label: float = np.inf
) -> np.ndarray:
    """Each prompt's calibration score (``scores[..., P, K]`` -> ``[..., P]``)."""
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
    """k = ceil((n+1)(1-alpha)): the rank (1-based) of the conformal quantile among n scores."""
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
    """The ceil((n+1)(1-alpha))-th smallest score along the last axis (order statistic, no interpolation)."""
    cal_scores = np.asarray(cal_scores, dtype=np.float64)
    k = order_stat_rank(cal_scores.shape[-1], alpha)
    return np.partition(cal_scores, k - 1, axis=-1)[..., k - 1]


def cfa_threshold(cal_scores: np.ndarray, alpha: float) -> np.ndarray:
    """The original's threshold: ``np.percentile`` at ceil((n+1)(1-alpha))/n*100, linear interpolation."""
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
    """Membership ``score <= threshold`` for real answers; ``threshold`` broadcasts over (P, K)."""
    thr = np.asarray(threshold, dtype=np.float64)
    return (scores <= thr[..., None, None]) & mask


def covered(
    label: np.ndarray, threshold: np.ndarray | float, labelled: np.ndarray | None = None
) -> np.ndarray:
    """Whether each prompt's set holds an acceptable answer: ``label <= threshold`` and the prompt has one.

    ``labelled`` marks prompts with an acceptable answer (default: a finite label); ``threshold``
    broadcasts against ``label``.
    """
    label = np.asarray(label, dtype=np.float64)
    has = np.isfinite(label) if labelled is None else np.asarray(labelled, dtype=bool)
    return (label <= np.asarray(threshold, dtype=np.float64)) & has


def coverage(
    label: np.ndarray, threshold: np.ndarray | float, labelled: np.ndarray | None = None
) -> np.ndarray:
    """Share of covered prompts over the last axis (see :func:`covered`)."""
    thr = np.asarray(threshold, dtype=np.float64)
    return covered(label, thr[..., None], labelled).mean(axis=-1)


def has_acceptable(accept: np.ndarray, rule: LabelRule) -> np.ndarray:
    """Prompts whose label comes from an acceptable answer under ``rule``: (P,)."""
    return np.asarray(accept[:, 0] if rule == "top_answer" else accept.any(axis=-1), dtype=bool)


def is_trivial(threshold: float, label: np.ndarray, labelled: np.ndarray) -> bool:
    """The threshold admits every answer: it lies above every acceptable prompt's label (or none exists)."""
    real = np.asarray(label, dtype=np.float64)[np.asarray(labelled, dtype=bool)]
    return bool(real.size == 0 or threshold > float(real.max()))
