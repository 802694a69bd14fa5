"""Split-conformal prediction sets over unique sampled answers (pure numpy, no Ray).

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

Labels
------
An answer is acceptable when its judge score >= ``accuracy_threshold``; answers with a missing
score are left out (never counted as unacceptable). A prompt's calibration score is
``any_acceptable``: the lowest score among its acceptable answers (inf when none), so that a set
``{a: s(a) <= q}`` contains an acceptable answer exactly when the calibration score is <= q; or
``top_answer``: the most frequent answer's score when it is acceptable, else inf. Prompts without
any scored answer carry no label and are left out of calibration (counted).

Protocols
---------
``split`` (default): the calibration prompts are split once (seeded) into a *tuning* part and a
*calibration* part. The (w1, w2) grid search uses only the tuning part: for each grid point it
repeats ``random_count`` random halvings of the tuning part (threshold from one half, mean set size
on the other) and keeps the weights with the smallest mean size (first in grid order on ties). The
final threshold is computed once, with the chosen weights, as the ceil((n+1)(1-alpha))-th smallest
calibration score of the n calibration-part prompts. Because the weights never saw the calibration
part, its scores and a new test prompt's score are exchangeable given the weights, and the standard
split-conformal guarantee holds: P(test set contains an acceptable answer) >= 1 - alpha (for
``any_acceptable``; for ``top_answer``: contains the top answer and it is acceptable), and
<= 1 - alpha + 1/(n+1) when scores have no ties. A threshold of inf (too many unlabelled-acceptable
prompts for alpha) yields the full answer list.

``cfa``: the original procedure, kept for comparison: ``random_count`` random permutations split by
index mod ``split_num`` into calibration / validation / test parts; the threshold is
``np.percentile(cal_scores, ceil((n+1)(1-alpha))/n*100)`` (linear interpolation); weights minimise
the mean validation set size; the threshold used for the final sets is the one from the *last*
split. A prompt without an acceptable label scores 20 (the original's sentinel) instead of inf.
With ``label_rule: top_answer`` this is exactly the original's labelling (its calibration score was
the most frequent answer's score when the judge accepted it, else 20); ``any_acceptable`` is allowed
too. Weights are chosen per alpha in both protocols, as the original did.
One difference to the original: every grid point sees the same seeded splits (the original
reshuffled per grid point), which makes the search deterministic and independent of chunking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rluf_ray.errors import RlufError

LabelRule = Literal["any_acceptable", "top_answer"]
CFA_NO_LABEL = 20.0  # the original's calibration score for a prompt without an acceptable answer
_EPS = 1e-9


class ConformalError(RlufError):
    """Calibration cannot run on this input (e.g. too few calibration prompts for alpha)."""


# ---------------------------------------------------------------------------------------------
# Padded answer tables
# ---------------------------------------------------------------------------------------------
@dataclass
class AnswerTable:
    """Padded per-prompt answer data: counts (0 = padding), similarity to top answer, judge scores."""

    counts: np.ndarray  # (P, K) int64
    sim: np.ndarray  # (P, K) float64
    judge: np.ndarray  # (P, K) float64, NaN = missing / not scored
    answers: list[list[str]] = field(default_factory=list)
    prompt_ids: list[str] = field(default_factory=list)

    @property
    def mask(self) -> np.ndarray:
        """Real (non-padding) answers."""
        return self.counts > 0

    def take(self, idx: np.ndarray) -> AnswerTable:
        """The sub-table of the given prompt rows."""
        idx = np.asarray(idx, dtype=np.int64)
        return AnswerTable(
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
) -> AnswerTable:
    """Stack ragged per-prompt lists (most frequent answer first) into padded arrays.

    ``sims[i][j]`` is the similarity of answer j to answer 0 (entry 0 is ignored); ``judge`` entries
    may be None or NaN for missing scores.
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
    return AnswerTable(
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


def score_parts(table: AnswerTable) -> ScoreParts:
    """Precompute the weight-free score parts once; every grid point reuses them."""
    counts = table.counts
    total = counts.sum(axis=1)
    total2 = np.where(total <= 1, 2, total).astype(np.float64)[:, None]
    freq_term = 10 - counts.astype(np.float64) / total2 * 10
    hn = normalized_entropy(counts)
    return ScoreParts(freq_term, hn / 2, table.sim, table.mask)


def nonconformity(parts: ScoreParts, w1: np.ndarray | float, w2: np.ndarray | float) -> np.ndarray:
    """Scores for every weight pair: ``(G, P, K)`` (or ``(P, K)`` for scalar weights); padding is inf."""
    scalar = np.ndim(w1) == 0 and np.ndim(w2) == 0
    w1a = np.atleast_1d(np.asarray(w1, dtype=np.float64))[:, None, None]
    w2a = np.atleast_1d(np.asarray(w2, dtype=np.float64))[:, None, None]
    s = parts.freq_term[None] + parts.half_entropy[None, :, None] * w1a
    s = s - parts.sim[None] * w2a
    s = np.where(parts.mask[None], s, np.inf)
    return s[0] if scalar else s


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


def set_sizes(scores: np.ndarray, mask: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """Number of answers in each prompt's set: ``[..., P]``."""
    return in_set(scores, mask, threshold).sum(axis=-1)


def coverage(label: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """Share of prompts whose calibration score is <= threshold (the covered event), over the last axis."""
    thr = np.asarray(threshold, dtype=np.float64)
    return (np.asarray(label) <= thr[..., None]).mean(axis=-1)


def split_conformal_coverage(
    scores: np.ndarray, alpha: float, n_cal: int, repeats: int, seed: int
) -> np.ndarray:
    """Empirical coverage of the order-statistic threshold over random cal/test splits of ``scores``."""
    rng = np.random.default_rng(seed)
    out = np.empty(repeats)
    for r in range(repeats):
        perm = rng.permutation(scores.shape[0])
        thr = conformal_threshold(scores[perm[:n_cal]], alpha)
        out[r] = float(coverage(scores[perm[n_cal:]], thr))
    return out


# ---------------------------------------------------------------------------------------------
# Grid search: per-chunk statistics (a Ray task computes one chunk; the driver reduces)
# ---------------------------------------------------------------------------------------------
def weight_grid(values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """All (w1, w2) pairs, w1-major as the original's nested loops: two arrays of length len(values)**2."""
    v = np.asarray(values, dtype=np.float64)
    return np.repeat(v, len(v)), np.tile(v, len(v))


def make_permutations(n: int, repeats: int, seed: int) -> np.ndarray:
    """``repeats`` seeded permutations of range(n), shape (repeats, n)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(repeats)]) if repeats else np.zeros((0, n), int)


def tuning_calibration_split(n: int, tuning_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint (tuning, calibration) index sets of range(n)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_tune = int(round(n * tuning_fraction))
    n_tune = min(max(n_tune, 1), n - 1) if n >= 2 else 0
    return np.sort(perm[:n_tune]), np.sort(perm[n_tune:])


@dataclass
class GridStats:
    """Per grid point (axis 0 = alpha, axis 1 = grid point within the chunk)."""

    mean_size: np.ndarray  # the selection objective (tuning / validation mean set size)
    test_size: np.ndarray  # cfa: mean test-part set size; split: same as mean_size
    test_coverage: np.ndarray  # cfa: mean test-part coverage; split: held-out-half coverage
    last_threshold: np.ndarray  # cfa: threshold of the last split; split: NaN

    @staticmethod
    def concat(parts: Sequence[GridStats]) -> GridStats:
        """Reduce chunk results (in chunk order) into one."""
        return GridStats(*(np.concatenate([getattr(p, f) for p in parts], axis=1) for f in GridStats.FIELDS))

    FIELDS = ("mean_size", "test_size", "test_coverage", "last_threshold")


GRID_BATCH_ELEMENTS = 2_000_000  # grid points are vectorised together up to this many (R x P x K) cells


def grid_batches(g_n: int, cells_per_point: int) -> list[slice]:
    """Consecutive batches of grid points whose (G, R, P, K) working arrays stay small."""
    step = max(1, GRID_BATCH_ELEMENTS // max(1, cells_per_point))
    return [slice(i, min(i + step, g_n)) for i in range(0, g_n, step)]


def _all_sizes(scores: np.ndarray, mask: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Set sizes of every prompt under per-split thresholds ``thr`` (G, R): (G, R, P).

    Counted answer column by answer column (K small, vectorised over G x R x P) into a small integer
    accumulator: several times faster than reducing a (G, R, P, K) boolean array over its short last
    axis. Padding is NaN here, which is never <= a threshold (even an infinite one).
    """
    cols = np.ascontiguousarray(np.where(mask, scores, np.nan).transpose(2, 0, 1))[:, :, None, :]
    t = thr[:, :, None]
    out = np.zeros((*thr.shape, scores.shape[1]), dtype=np.uint8 if scores.shape[2] < 256 else np.int32)
    tmp = np.empty(out.shape, dtype=bool)
    for j in range(cols.shape[0]):
        np.less_equal(cols[j], t, out=tmp)
        np.add(out, tmp, out=out, casting="unsafe")
    return out


def grid_chunk_split(
    parts: ScoreParts,
    accept: np.ndarray,
    rule: LabelRule,
    w1: np.ndarray,
    w2: np.ndarray,
    perms: np.ndarray,
    alphas: Sequence[float],
) -> GridStats:
    """Split protocol, tuning part only: mean set size over random halvings, per alpha and grid point.

    ``parts``/``accept`` hold the tuning prompts; ``perms`` (R, n) are permutations of them: the first
    ceil(n/2) set the threshold, the rest measure set size and coverage.
    """
    n, k = parts.mask.shape
    m = (n + 1) // 2
    a_n, g_n = len(alphas), len(w1)
    mean_size = np.empty((a_n, g_n))
    cov = np.empty((a_n, g_n))
    held = perms[:, m:]  # (R, n - m)
    for b in grid_batches(g_n, perms.shape[0] * n * k):
        scores = nonconformity(parts, np.asarray(w1[b]), np.asarray(w2[b]))  # (G, P, K)
        label = label_scores(scores, accept, rule)  # (G, P)
        cal = label[:, perms[:, :m]]  # (G, R, m)
        for ai, alpha in enumerate(alphas):
            thr = conformal_threshold(cal, alpha)  # (G, R)
            sizes = np.take_along_axis(_all_sizes(scores, parts.mask, thr), held[None], axis=2)
            mean_size[ai, b] = sizes.mean(axis=(1, 2))
            cov[ai, b] = (label[:, held] <= thr[:, :, None]).mean(axis=(1, 2))
    return GridStats(mean_size, mean_size.copy(), cov, np.full((a_n, g_n), np.nan))


def cfa_parts(n: int, split_num: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (within a permutation) of the original's calibration / validation / test parts."""
    pos = np.arange(n)
    return pos[pos % split_num == 0], pos[pos % split_num == 1], pos[pos % split_num >= 2]


def grid_chunk_cfa(
    parts: ScoreParts,
    accept: np.ndarray,
    rule: LabelRule,
    w1: np.ndarray,
    w2: np.ndarray,
    perms: np.ndarray,
    alphas: Sequence[float],
    split_num: int = 3,
) -> GridStats:
    """The original's repeated 3-way splits for a chunk of grid points (same splits for every point)."""
    n, k = parts.mask.shape
    r_n = perms.shape[0]
    cal_pos, val_pos, test_pos = cfa_parts(n, split_num)
    if len(val_pos) == 0:
        raise ConformalError(f"cfa protocol needs at least 2 calibration prompts, got n={n}")
    cal_idx, val_idx, test_idx = perms[:, cal_pos], perms[:, val_pos], perms[:, test_pos]
    a_n, g_n = len(alphas), len(w1)
    out = GridStats(*(np.full((a_n, g_n), np.nan) for _ in GridStats.FIELDS))
    for b in grid_batches(g_n, r_n * n * k):
        scores = nonconformity(parts, np.asarray(w1[b]), np.asarray(w2[b]))  # (G, P, K)
        label = label_scores(scores, accept, rule, no_label=CFA_NO_LABEL)  # (G, P)
        for ai, alpha in enumerate(alphas):
            thr = cfa_threshold(label[:, cal_idx], alpha)  # (G, R)
            sizes = _all_sizes(scores, parts.mask, thr)  # (G, R, P)
            val_total = np.take_along_axis(sizes, val_idx[None], axis=2).sum(axis=(1, 2), dtype=np.int64)
            # the original divides by random_count twice (its question counter runs over all splits)
            out.mean_size[ai, b] = val_total / r_n / (r_n * len(val_pos))
            if len(test_pos):
                out.test_size[ai, b] = np.take_along_axis(sizes, test_idx[None], axis=2).mean(axis=(1, 2))
                out.test_coverage[ai, b] = (label[:, test_idx] <= thr[:, :, None]).mean(axis=(1, 2))
            out.last_threshold[ai, b] = thr[:, -1]
    return out


def choose(mean_size: np.ndarray) -> int:
    """Index of the smallest mean size (first in grid order on ties, as the original's strict <)."""
    return int(np.argmin(mean_size))


# ---------------------------------------------------------------------------------------------
# Final sets
# ---------------------------------------------------------------------------------------------
@dataclass
class Calibration:
    """What calibration decided for one alpha."""

    alpha: float
    w1: float
    w2: float
    threshold: float
    n_calibration: int


def final_threshold(
    parts: ScoreParts, accept: np.ndarray, rule: LabelRule, w1: float, w2: float, alpha: float
) -> float:
    """The order-statistic threshold on the calibration part with the chosen weights."""
    label = label_scores(nonconformity(parts, w1, w2), accept, rule)
    return float(conformal_threshold(label, alpha))


def heldout_report(
    parts: ScoreParts,
    accept: np.ndarray,
    rule: LabelRule,
    w1: float,
    w2: float,
    alpha: float,
    perms: np.ndarray,
) -> dict[str, float]:
    """Coverage and set sizes on held-out halves of the calibration part (threshold from the other half)."""
    scores = nonconformity(parts, w1, w2)
    label = label_scores(scores, accept, rule)
    n = label.shape[0]
    m = (n + 1) // 2
    held = perms[:, m:]
    thr = conformal_threshold(label[perms[:, :m]], alpha)
    sizes = ((scores[held] <= thr[:, None, None]) & parts.mask[held]).sum(axis=-1)
    cov = (label[held] <= thr[:, None]).mean(axis=1)
    return {
        "coverage_mean": float(cov.mean()),
        "coverage_std": float(cov.std()),
        "set_size_mean": float(sizes.mean()),
        "set_size_median": float(np.median(sizes)),
        "n_threshold": int(m),
        "n_heldout": int(n - m),
    }


def prediction_sets(scores: np.ndarray, mask: np.ndarray, threshold: float) -> list[list[int]]:
    """Indices of the answers in each prompt's set (answer order kept)."""
    member = in_set(scores, mask, threshold)
    return [list(np.flatnonzero(row)) for row in member]


# ---------------------------------------------------------------------------------------------
# The whole calibration (grid fan-out injected, so the stage can run chunks as Ray tasks)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConformalSettings:
    """The settings of one calibration run (mirrors the ``conformal`` config section)."""

    protocol: Literal["split", "cfa"] = "split"
    label_rule: LabelRule = "any_acceptable"
    alphas: tuple[float, ...] = (0.2, 0.5)
    accuracy_threshold: float = 0.7
    grid_values: tuple[float, ...] = tuple(round(0.2 * i, 10) for i in range(11))
    random_count: int = 50
    split_num: int = 3
    tuning_fraction: float = 0.5
    seed: int = 42
    chunks: int = 1
    min_cells_per_chunk: int = 8_000_000


def chunk_slices(n: int, chunks: int, cells_per_point: int = 0, min_cells: int = 0) -> list[slice]:
    """Split range(n) grid points into at most ``chunks`` contiguous, non-empty slices in order.

    With ``min_cells``, a chunk holds at least that many (split x prompt x answer) cells of work, so
    that on small inputs task overhead does not exceed the work (results never depend on chunking).
    """
    if min_cells and cells_per_point:
        chunks = min(chunks, max(1, (n * cells_per_point) // min_cells))
    chunks = max(1, min(chunks, n))
    bounds = np.linspace(0, n, chunks + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def serial_map(func: Any, shared: dict[str, Any], chunk_args: list[dict[str, Any]]) -> list[GridStats]:
    """Run the chunks one after the other in this process (the stage's Ray map does the same, in parallel)."""
    return [func(**shared, **args) for args in chunk_args]


@dataclass
class CalibrationResult:
    """Chosen weights and thresholds per alpha, the grid surfaces, a report and input counts."""

    calibrations: list[Calibration]
    surfaces: dict[float, np.ndarray]  # alpha -> (len(values), len(values)) objective, w1 rows
    report: dict[str, Any]
    counts: dict[str, int]


def input_counts(table: AnswerTable, accuracy_threshold: float, rule: LabelRule) -> dict[str, int]:
    """How many prompts/answers each bad-input case affected (reported, never silently dropped)."""
    labelled = has_label(table.judge, rule)
    acc = acceptable(table.judge, accuracy_threshold)
    no_acc = (~acc[:, 0]) if rule == "top_answer" else ~acc.any(axis=1)
    return {
        "prompts": int(table.counts.shape[0]),
        "answers": int(table.mask.sum()),
        "answers_missing_score": int((np.isnan(table.judge) & table.mask).sum()),
        "prompts_unlabelled": int((~labelled).sum()),
        "prompts_single_answer": int((table.mask.sum(axis=1) == 1).sum()),
        "prompts_no_acceptable": int((labelled & no_acc).sum()),
    }


def check_sizes(table: AnswerTable, settings: ConformalSettings) -> int:
    """Raise ConformalError (naming n and alpha) when the labelled prompts are too few for an alpha.

    Returns the number of labelled prompts. Cheap: the stage calls it before training FastText.
    """
    n = int(has_label(table.judge, settings.label_rule).sum())
    for a in settings.alphas:
        if settings.protocol == "cfa":
            cfa_threshold(np.zeros(len(cfa_parts(n, settings.split_num)[0])), a)
            if n < 2:
                raise ConformalError(f"cfa protocol needs at least 2 calibration prompts, got n={n}")
        elif not _split_sizes_ok(n, a, settings):
            need = next(m for m in range(n + 1, 100_000) if _split_sizes_ok(m, a, settings))
            raise ConformalError(
                f"calibration set too small for alpha={a}: n={n} labelled prompts; the split protocol "
                f"tunes on {settings.tuning_fraction:.0%} of them and thresholds on halves, which needs "
                f"n >= {need} (raise data.calibration_size)"
            )
    return n


def _split_sizes_ok(n: int, alpha: float, settings: ConformalSettings) -> bool:
    tune, cal = tuning_calibration_split(n, settings.tuning_fraction, settings.seed)
    try:
        order_stat_rank(len(cal), alpha)
        order_stat_rank((len(tune) + 1) // 2, alpha)
        order_stat_rank((len(cal) + 1) // 2, alpha)  # the held-out report thresholds on half of it
    except ConformalError:
        return False
    return True


def calibrate(
    table: AnswerTable, settings: ConformalSettings, map_chunks: Any = serial_map
) -> CalibrationResult:
    """Grid-search (w1, w2) and calibrate a threshold per alpha on the calibration prompts.

    ``map_chunks(func, shared, chunk_args)`` runs ``func(**shared, **args)`` per chunk of grid
    points and returns the results in order; every grid point is computed independently, so the
    result does not depend on the number of chunks.
    """
    counts = input_counts(table, settings.accuracy_threshold, settings.label_rule)
    check_sizes(table, settings)
    keep = np.flatnonzero(has_label(table.judge, settings.label_rule))
    data = table.take(keep)
    n = len(keep)
    alphas = list(settings.alphas)
    accept = acceptable(data.judge, settings.accuracy_threshold)
    w1, w2 = weight_grid(settings.grid_values)
    cells = settings.random_count * max(n, 1) * data.counts.shape[1] * len(alphas)
    slices = chunk_slices(len(w1), settings.chunks, cells, settings.min_cells_per_chunk)
    rule = settings.label_rule

    if settings.protocol == "cfa":
        n_cal = len(cfa_parts(n, settings.split_num)[0])
        perms = make_permutations(n, settings.random_count, settings.seed)
        shared = {"parts": score_parts(data), "accept": accept, "rule": rule, "perms": perms}
        shared.update(alphas=alphas, split_num=settings.split_num)
        stats = GridStats.concat(
            map_chunks(grid_chunk_cfa, shared, [{"w1": w1[s], "w2": w2[s]} for s in slices])
        )
        cals, per_alpha = [], {}
        for ai, a in enumerate(alphas):
            g = choose(stats.mean_size[ai])
            thr = float(stats.last_threshold[ai, g])
            cals.append(Calibration(a, float(w1[g]), float(w2[g]), thr, n_cal))
            per_alpha[str(a)] = {
                "w1": float(w1[g]),
                "w2": float(w2[g]),
                "threshold": thr,
                "validation_set_size_mean": float(stats.mean_size[ai, g] * settings.random_count),
                "coverage_mean": float(stats.test_coverage[ai, g]),
                "set_size_mean": float(stats.test_size[ai, g]),
                "heldout": "test parts of the cfa splits",
            }
        objective = stats.mean_size * settings.random_count  # per-prompt mean validation size
    else:
        tune, cal = tuning_calibration_split(n, settings.tuning_fraction, settings.seed)
        parts_all = score_parts(data)
        tune_parts = ScoreParts(
            parts_all.freq_term[tune], parts_all.half_entropy[tune], parts_all.sim[tune], parts_all.mask[tune]
        )
        cal_parts = ScoreParts(
            parts_all.freq_term[cal], parts_all.half_entropy[cal], parts_all.sim[cal], parts_all.mask[cal]
        )
        perms = make_permutations(len(tune), settings.random_count, settings.seed + 1)
        shared = {"parts": tune_parts, "accept": accept[tune], "rule": rule, "perms": perms, "alphas": alphas}
        stats = GridStats.concat(
            map_chunks(grid_chunk_split, shared, [{"w1": w1[s], "w2": w2[s]} for s in slices])
        )
        report_perms = make_permutations(len(cal), settings.random_count, settings.seed + 2)
        cals, per_alpha = [], {}
        for ai, a in enumerate(alphas):
            g = choose(stats.mean_size[ai])
            thr = final_threshold(cal_parts, accept[cal], rule, float(w1[g]), float(w2[g]), a)
            cals.append(Calibration(a, float(w1[g]), float(w2[g]), thr, len(cal)))
            held = heldout_report(cal_parts, accept[cal], rule, float(w1[g]), float(w2[g]), a, report_perms)
            per_alpha[str(a)] = {
                "w1": float(w1[g]),
                "w2": float(w2[g]),
                "threshold": thr,
                "tuning_set_size_mean": float(stats.mean_size[ai, g]),
                **held,
                "heldout": "random halves of the calibration part (threshold from the other half)",
            }
        objective = stats.mean_size
    k = len(settings.grid_values)
    surfaces = {a: objective[ai].reshape(k, k) for ai, a in enumerate(alphas)}
    report = {
        "protocol": settings.protocol,
        "label_rule": rule,
        "n_labelled": n,
        "grid_values": list(settings.grid_values),
        "grid_tasks": len(slices),
        "per_alpha": per_alpha,
    }
    return CalibrationResult(cals, surfaces, report, counts)
