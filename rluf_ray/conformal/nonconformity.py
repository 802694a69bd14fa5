"""Nonconformity scores of unique sampled answers (pure numpy).

Data layout
-----------
A prompt has up to K unique answers, most frequent first. All prompts are stacked into padded
``(P, K)`` arrays: ``counts`` (0 marks padding), ``sim`` (similarity of each answer to the prompt's
top answer; 0 for the top answer itself and for padding) and ``judge`` (judge score, NaN where
missing). Nonconformity scores for G weight pairs are ``(G, P, K)`` float64 arrays; padding scores
are +inf and never enter a set.

Score (the original research code's formula)
--------------------------------------------
``s = 10 - 10*freq/total + w1*H/2 - w2*sim(answer, top answer)`` where ``total`` is the number of
samples (sum of the counts) and ``H`` the answer distribution's entropy divided by ``log(total)``;
``total <= 1`` is taken as 2 in the normaliser and the frequency term (as the original). The
arithmetic follows the original's operation order, so scores are bit-identical to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


# ---------------------------------------------------------------------------------------------
# Padded answer tables
# ---------------------------------------------------------------------------------------------
@dataclass
class PaddedAnswerTable:
    """Many prompts' answers stacked into padded ``(P, K)`` arrays: counts (0 = padding), similarity to
    the top answer, judge scores (the calibration's input; one prompt's counted answers are
    ``rluf_ray.conformal.answers.PromptAnswers``)."""

    counts: np.ndarray  # (P, K) int64
    sim: np.ndarray  # (P, K) float64
    judge: np.ndarray  # (P, K) float64, NaN = missing / not scored
    answers: list[list[str]] = field(default_factory=list)
    prompt_ids: list[str] = field(default_factory=list)

    @property
    def mask(self) -> np.ndarray:
        """Real (non-padding) answers."""
        return self.counts > 0

    def take(self, idx: np.ndarray) -> PaddedAnswerTable:
        """Select prompt rows.

        Args:
            idx: Row indices into the table, shape ``(M,)`` (any order; repeats allowed).

        Returns:
            The sub-table of those M prompts, in ``idx`` order (``answers``/``prompt_ids`` too, when set).
        """
        idx = np.asarray(idx, dtype=np.int64)
        return PaddedAnswerTable(
            counts=self.counts[idx],
            sim=self.sim[idx],
            judge=self.judge[idx],
            answers=[self.answers[i] for i in idx] if self.answers else [],
            prompt_ids=[self.prompt_ids[i] for i in idx] if self.prompt_ids else [],
        )


def pad_table(
    counts: Sequence[Sequence[int]],
    sims: Sequence[Sequence[float]] | None = None,
    judge: Sequence[Sequence[float | None]] | None = None,
    answers: Sequence[Sequence[str]] | None = None,
    prompt_ids: Sequence[str] | None = None,
) -> PaddedAnswerTable:
    """Stack ragged per-prompt lists (most frequent answer first) into padded arrays.

    Args:
        counts: ``counts[i]`` is prompt i's sample count per unique answer (each row non-empty, its
            first count positive); K is the longest row.
        sims: ``sims[i][j]`` is the similarity of answer j to answer 0 (entry 0 is ignored); None gives
            0 everywhere.
        judge: ``judge[i][j]`` is answer j's judge score; entries may be None or NaN for missing scores;
            None leaves every score missing.
        answers: The normalised answer strings per prompt, kept as they are (None: empty list).
        prompt_ids: One id per prompt (None: empty list).

    Returns:
        The table of P = ``len(counts)`` prompts: ``counts`` ``(P, K)`` int64 (0 = padding), ``sim``
        ``(P, K)`` (0 for answer 0 and padding) and ``judge`` ``(P, K)`` (NaN = missing or padding).

    Raises:
        ValueError: If a prompt has no answers or its first answer's count is not positive.
    """
    p = len(counts)
    k = max((len(c) for c in counts), default=0) or 1
    c_arr = np.zeros((p, k), dtype=np.int64)
    s_arr = np.zeros((p, k), dtype=np.float64)
    j_arr = np.full((p, k), np.nan, dtype=np.float64)
    for i, row in enumerate(counts):
        n = len(row)
        if n == 0:
            raise ValueError(f"prompt {i} has no answers")
        c_arr[i, :n] = row
        if sims is not None:
            s = np.asarray(sims[i], dtype=np.float64)
            s_arr[i, 1:n] = s[1:n]
        if judge is not None:
            j_arr[i, :n] = [np.nan if v is None else float(v) for v in judge[i]]
    if (c_arr[:, 0] <= 0).any():
        raise ValueError("every prompt needs a positive count for its first answer")
    return PaddedAnswerTable(
        c_arr,
        s_arr,
        j_arr,
        [list(a) for a in answers] if answers is not None else [],
        list(prompt_ids) if prompt_ids is not None else [],
    )


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------
@dataclass
class ScoreParts:
    """The weight-free parts of the score: 10 - 10*freq/total, and H/2 per prompt."""

    freq_term: np.ndarray  # (P, K)
    half_entropy: np.ndarray  # (P,)
    sim: np.ndarray  # (P, K)
    mask: np.ndarray  # (P, K)


def normalized_entropy(counts: np.ndarray) -> np.ndarray:
    """Entropy of each row's answer distribution divided by log(total) (total <= 1 taken as 2).

    Summed answer by answer in the original's order (a loop over the K columns, vectorised over
    prompts), so results equal the original's ``math.log`` loop bit for bit.

    Args:
        counts: Sample counts per answer, shape ``(P, K)`` (0 = padding).

    Returns:
        The normalised entropy H of each prompt, shape ``(P,)`` float64.
    """
    counts = np.asarray(counts)
    total = counts.sum(axis=1)
    c = counts.astype(np.float64)
    tot = total.astype(np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = c / tot
        term = np.where(counts > 0, -p * np.log(np.where(counts > 0, p, 1.0)), 0.0)
    num = np.zeros(counts.shape[0], dtype=np.float64)
    for j in range(counts.shape[1]):
        num = num + term[:, j]
    total2 = np.where(total <= 1, 2, total).astype(np.float64)
    return num / np.log(total2)


def score_parts(table: PaddedAnswerTable) -> ScoreParts:
    """Precompute the weight-free score parts once; every grid point reuses them.

    Args:
        table: The padded answers of P prompts.

    Returns:
        ``10 - 10*freq/total`` ``(P, K)``, ``H/2`` ``(P,)``, and the table's similarity and mask ``(P, K)``.
    """
    counts = table.counts
    total = counts.sum(axis=1)
    total2 = np.where(total <= 1, 2, total).astype(np.float64)[:, None]
    freq_term = 10 - counts.astype(np.float64) / total2 * 10
    hn = normalized_entropy(counts)
    return ScoreParts(freq_term, hn / 2, table.sim, table.mask)


def nonconformity(parts: ScoreParts, w1: np.ndarray | float, w2: np.ndarray | float) -> np.ndarray:
    """Compute the nonconformity scores for every weight pair; padding scores inf.

    Args:
        parts: The weight-free parts of P prompts (:func:`score_parts`).
        w1: The entropy weight per grid point, shape ``(G,)``, or a scalar.
        w2: The similarity weight per grid point, shape ``(G,)`` (as ``w1``), or a scalar.

    Returns:
        The scores, shape ``(G, P, K)``; ``(P, K)`` when both weights are scalars.
    """
    scalar = np.ndim(w1) == 0 and np.ndim(w2) == 0
    w1a = np.atleast_1d(np.asarray(w1, dtype=np.float64))[:, None, None]
    w2a = np.atleast_1d(np.asarray(w2, dtype=np.float64))[:, None, None]
    s = parts.freq_term[None] + parts.half_entropy[None, :, None] * w1a
    s = s - parts.sim[None] * w2a
    s = np.where(parts.mask[None], s, np.inf)
    return s[0] if scalar else s
