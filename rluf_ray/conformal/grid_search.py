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
    """List all (w1, w2) pairs, w1-major as the original's nested loops.

    Args:
        values: The V grid values each weight takes.

    Returns:
        ``(w1, w2)``, each of shape ``(G,)`` with G = V**2.
    """
    v = np.asarray(values, dtype=np.float64)
    return np.repeat(v, len(v)), np.tile(v, len(v))


def make_permutations(n: int, repeats: int, seed: int) -> np.ndarray:
    """Draw ``repeats`` seeded permutations of range(n).

    Args:
        n: The number of prompts permuted.
        repeats: The number R of permutations (``random_count``).
        seed: Seed of the generator.

    Returns:
        The permutations, shape ``(R, n)``.
    """
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(repeats)]) if repeats else np.zeros((0, n), int)


def tuning_calibration_split(n: int, tuning_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split range(n) into seeded, disjoint (tuning, calibration) index sets.

    Args:
        n: The number of labelled prompts.
        tuning_fraction: The share of them that tunes the weights; rounded, then kept in
            ``1..n-1`` so neither part is empty (for n < 2 everything is calibration).
        seed: Seed of the split.

    Returns:
        The sorted tuning and calibration indices, shapes ``(n_tune,)`` and ``(n - n_tune,)``.
    """
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
        """Reduce chunk results (in chunk order) into one.

        Args:
            parts: The chunks' statistics, each field of shape ``(A, G_chunk)``.

        Returns:
            The statistics of all grid points, each field of shape ``(A, G)``.
        """
        return GridStats(*(np.concatenate([getattr(p, f) for p in parts], axis=1) for f in GridStats.FIELDS))

    FIELDS = ("mean_size", "test_size", "test_coverage", "last_threshold")


GRID_BATCH_ELEMENTS = 2_000_000  # grid points are vectorised together up to this many (R x P x K) cells


def grid_batches(g_n: int, cells_per_point: int) -> list[slice]:
    """Cut grid points into consecutive batches whose (G, R, P, K) working arrays stay small.

    Args:
        g_n: The number of grid points.
        cells_per_point: The (R x P x K) cells of work per grid point; a batch holds at most
            ``GRID_BATCH_ELEMENTS`` cells (at least one point).

    Returns:
        Slices covering ``range(g_n)`` in order.
    """
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

    Args:
        parts: The weight-free score parts of the n tuning prompts.
        accept: Their acceptable answers, shape ``(n, K)``.
        rule: The label rule.
        w1: The chunk's entropy weights, shape ``(G,)``.
        w2: The chunk's similarity weights, shape ``(G,)``.
        perms: Permutations of the tuning prompts, shape ``(R, n)``: the first ceil(n/2) set the
            threshold, the rest measure set size and coverage.
        alphas: The A miscoverage levels.

    Returns:
        Per alpha and grid point (fields of shape ``(A, G)``): the mean held-out set size (as
        ``mean_size`` and ``test_size``), the held-out coverage, and NaN for ``last_threshold``.
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
    """Give the positions (within a permutation) of the original's calibration / validation / test parts.

    Args:
        n: The number of labelled prompts.
        split_num: Position i goes to calibration when ``i % split_num == 0``, validation when 1, and
            test otherwise.

    Returns:
        The calibration, validation and test positions, each 1-d.
    """
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
    """Run the original's repeated 3-way splits for a chunk of grid points (same splits for every point).

    Args:
        parts: The weight-free score parts of the n labelled prompts.
        accept: Their acceptable answers, shape ``(n, K)``.
        rule: The label rule; prompts without an acceptable answer score ``CFA_NO_LABEL``.
        w1: The chunk's entropy weights, shape ``(G,)``.
        w2: The chunk's similarity weights, shape ``(G,)``.
        perms: Permutations of the prompts, shape ``(R, n)``, cut into parts by :func:`cfa_parts`.
        alphas: The A miscoverage levels.
        split_num: The number of parts (see :func:`cfa_parts`).

    Returns:
        Per alpha and grid point (fields of shape ``(A, G)``): the original's validation objective
        (divided by R twice, as the original), the mean test-part set size and coverage (NaN without a
        test part), and the threshold of the last split.

    Raises:
        ConformalError: If the validation part is empty (n < 2).
    """
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
    """Pick the index of the smallest mean size (first in grid order on ties, as the original's strict <).

    Args:
        mean_size: The objective of one alpha per grid point, shape ``(G,)``.

    Returns:
        The chosen grid point.
    """
    return int(np.argmin(mean_size))
