"""Grid search over the score weights (w1, w2): per-chunk statistics of both protocols (pure numpy).

A chunk is a contiguous run of grid points; each grid point is computed independently of the
others, so results never depend on how the grid is chunked. The caller (see ``calibration``)
decides how chunks are run and reduces them with ``GridStats.concat``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rluf_ray.conformal.nonconformity import ScoreParts, nonconformity
from rluf_ray.conformal.thresholds import (
    ConformalError,
    LabelRule,
    cfa_threshold,
    conformal_threshold,
    covered,
    has_acceptable,
    label_scores,
)

CFA_NO_LABEL = 20.0  # the original's calibration score for a prompt without an acceptable answer


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
            cov[ai, b] = covered(label[:, held], thr[:, :, None]).mean(axis=(1, 2))
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
        labelled = has_acceptable(accept, rule)[test_idx]  # (R, T): only an acceptable answer covers
        for ai, alpha in enumerate(alphas):
            thr = cfa_threshold(label[:, cal_idx], alpha)  # (G, R)
            sizes = _all_sizes(scores, parts.mask, thr)  # (G, R, P)
            val_total = np.take_along_axis(sizes, val_idx[None], axis=2).sum(axis=(1, 2), dtype=np.int64)
            # the original divides by random_count twice (its question counter runs over all splits)
            out.mean_size[ai, b] = val_total / r_n / (r_n * len(val_pos))
            if len(test_pos):
                out.test_size[ai, b] = np.take_along_axis(sizes, test_idx[None], axis=2).mean(axis=(1, 2))
                hit = covered(label[:, test_idx], thr[:, :, None], labelled[None])
                out.test_coverage[ai, b] = hit.mean(axis=(1, 2))
            out.last_threshold[ai, b] = thr[:, -1]
    return out


def choose(mean_size: np.ndarray) -> int:
    """Index of the smallest mean size (first in grid order on ties, as the original's strict <)."""
    return int(np.argmin(mean_size))
