"""Calibration end to end: choose (w1, w2) and a threshold per alpha on the calibration prompts.

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
The top answer is the *first sampled* answer, as in the original (which took its answer list in
sampling order and treated entry 0 as the top answer): :func:`top_answer_first` moves it to position 0
of every prompt, so it is the answer without a similarity term, the similarity reference of the
others, and the labelled answer under ``label_rule: top_answer``. With ``top_answer`` this is exactly
the original's labelling (its calibration score was the first sampled answer's score when the judge
accepted it, else 20); ``any_acceptable`` is allowed too. ``split`` keeps the most frequent answer
first. Weights are chosen per alpha in both protocols, as the original did.
One difference to the original: every grid point sees the same seeded splits (the original
reshuffled per grid point), which makes the search deterministic and independent of chunking.

Fan-out
-------
``calibrate`` hands the grid to an injected ``GridMap``: it calls ``func(**shared, w1=..., w2=...)``
on chunks of the grid points of its choosing (in grid order) and returns the chunk results in order.
``cells_per_point`` tells it the work per grid point, so it can avoid chunks too small to be worth a
task. The default, ``whole_grid``, runs the whole grid as one chunk in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from rluf_ray.conformal.grid_search import (
    GridStats,
    cfa_parts,
    choose,
    grid_chunk_cfa,
    grid_chunk_split,
    make_permutations,
    tuning_calibration_split,
    weight_grid,
)
from rluf_ray.conformal.nonconformity import PaddedAnswerTable, ScoreParts, nonconformity, score_parts
from rluf_ray.conformal.thresholds import (
    ConformalError,
    LabelRule,
    acceptable,
    cfa_threshold,
    conformal_threshold,
    covered,
    has_acceptable,
    has_label,
    is_trivial,
    label_scores,
    order_stat_rank,
)

ORDERED_COLUMNS = ("answers", "counts", "texts", "mean_logprobs")
"""The per-answer columns of a generation row that :func:`top_answer_first` reorders together."""


def top_answer_first(row: dict[str, Any], protocol: str) -> dict[str, Any]:
    """Reorder a generation row's answers into the order ``protocol`` scores them.

    Position 0 is the top answer: the one without a similarity term, the similarity reference of the
    others, and the labelled answer under ``label_rule: top_answer``. Under ``cfa`` it is the *first
    sampled* answer (index ``row["first_sampled"]`` of the most-frequent-first lists), as in the
    original; the other answers keep their most-frequent-first order behind it. Under ``split`` the
    row is returned as it is (most frequent first). Every column of ``ORDERED_COLUMNS`` present in the
    row moves together, so each answer keeps its count, text and log-prob; the result has
    ``first_sampled`` 0.

    Args:
        row: One prompt's generation row (``answers``, ``counts``, ``texts``, ``mean_logprobs``,
            ``first_sampled``, ...), most frequent answer first; it is not modified.
        protocol: The calibration protocol, ``split`` or ``cfa``.

    Returns:
        The row itself when nothing moves (``split``, or sample 0's answer is already first), else a
        reordered copy.

    Raises:
        ValueError: If ``first_sampled`` lies outside the row's answers.
    """
    if protocol != "cfa":
        return row
    n = len(row["answers"])
    first = int(row.get("first_sampled") or 0)
    if not 0 <= first < n:
        raise ValueError(f"prompt {row.get('prompt_id')}: first_sampled={first} outside its {n} answers")
    if first == 0:
        return row
    order = [first, *(i for i in range(n) if i != first)]
    out = dict(row)
    for col in ORDERED_COLUMNS:
        values = row.get(col)
        if values is not None and len(values) == n:
            out[col] = [values[i] for i in order]
    out["first_sampled"] = 0
    return out


class GridMap(Protocol):
    """Runs ``func(**shared, w1=w1[s], w2=w2[s])`` for consecutive chunks ``s`` of the grid, in order."""

    def __call__(
        self,
        func: Callable[..., GridStats],
        shared: dict[str, Any],
        w1: np.ndarray,
        w2: np.ndarray,
        cells_per_point: int,
    ) -> list[GridStats]: ...


def whole_grid(
    func: Callable[..., GridStats],
    shared: dict[str, Any],
    w1: np.ndarray,
    w2: np.ndarray,
    cells_per_point: int,
) -> list[GridStats]:
    """Run every grid point in one chunk, in this process (the default ``GridMap``).

    Args:
        func: The chunk function (``grid_chunk_split`` or ``grid_chunk_cfa``).
        shared: The keyword arguments every chunk gets (score parts, labels, permutations, alphas).
        w1: The entropy weight of every grid point, shape ``(G,)``.
        w2: The similarity weight of every grid point, shape ``(G,)``.
        cells_per_point: The work per grid point (unused here: there is one chunk).

    Returns:
        The one chunk's statistics, as a one-element list.
    """
    return [func(**shared, w1=w1, w2=w2)]


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
    """Compute the order-statistic threshold on the calibration part with the chosen weights.

    Args:
        parts: The weight-free score parts of the n calibration-part prompts.
        accept: Their acceptable answers, shape ``(n, K)``.
        rule: The label rule.
        w1: The chosen entropy weight.
        w2: The chosen similarity weight.
        alpha: The miscoverage level, in (0, 1).

    Returns:
        The ceil((n+1)(1-alpha))-th smallest label; inf when that rank falls on a prompt without an
        acceptable answer.
    """
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
    """Measure coverage and set sizes on held-out halves of the calibration part.

    Each of the R permutations splits the n calibration-part prompts into a first ceil(n/2) that set
    the threshold and the rest, on which coverage and set sizes are measured.

    Args:
        parts: The weight-free score parts of the n calibration-part prompts.
        accept: Their acceptable answers, shape ``(n, K)``.
        rule: The label rule.
        w1: The chosen entropy weight.
        w2: The chosen similarity weight.
        alpha: The miscoverage level, in (0, 1).
        perms: Seeded permutations of ``range(n)``, shape ``(R, n)``.

    Returns:
        ``coverage_mean``/``coverage_std`` over the R halvings, ``set_size_mean``/``set_size_median``
        over every held-out prompt, and the half sizes ``n_threshold`` and ``n_heldout``.
    """
    scores = nonconformity(parts, w1, w2)
    label = label_scores(scores, accept, rule)
    n = label.shape[0]
    m = (n + 1) // 2
    held = perms[:, m:]
    thr = conformal_threshold(label[perms[:, :m]], alpha)
    sizes = ((scores[held] <= thr[:, None, None]) & parts.mask[held]).sum(axis=-1)
    cov = covered(label[held], thr[:, None]).mean(axis=1)
    return {
        "coverage_mean": float(cov.mean()),
        "coverage_std": float(cov.std()),
        "set_size_mean": float(sizes.mean()),
        "set_size_median": float(np.median(sizes)),
        "n_threshold": int(m),
        "n_heldout": int(n - m),
    }


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


@dataclass
class CalibrationResult:
    """Chosen weights and thresholds per alpha, the grid surfaces, a report and input counts."""

    calibrations: list[Calibration]
    surfaces: dict[float, np.ndarray]  # alpha -> (len(values), len(values)) objective, w1 rows
    report: dict[str, Any]
    counts: dict[str, int]


def input_counts(table: PaddedAnswerTable, accuracy_threshold: float, rule: LabelRule) -> dict[str, int]:
    """Count how many prompts/answers each bad-input case affected (reported, never silently dropped).

    Args:
        table: The padded answers of every calibration prompt.
        accuracy_threshold: The least acceptable judge score.
        rule: The label rule (which prompts count as labelled and as having an acceptable answer).

    Returns:
        ``prompts``, ``answers``, ``answers_missing_score``, ``prompts_unlabelled``,
        ``prompts_single_answer`` and ``prompts_no_acceptable`` (labelled, but no acceptable answer).
    """
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


def check_sizes(table: PaddedAnswerTable, settings: ConformalSettings) -> int:
    """Raise ConformalError (naming n and alpha) when the labelled prompts are too few for an alpha.

    Cheap: the stage calls it before training FastText.

    Args:
        table: The padded answers of every calibration prompt.
        settings: The calibration settings (protocol, label rule, alphas and split sizes).

    Returns:
        The number of labelled prompts.

    Raises:
        ConformalError: If some alpha needs more labelled prompts than there are (the split protocol
            names the n it needs).
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
    table: PaddedAnswerTable, settings: ConformalSettings, map_grid: GridMap = whole_grid
) -> CalibrationResult:
    """Grid-search (w1, w2) and calibrate a threshold per alpha on the calibration prompts.

    Args:
        table: The padded answers of every calibration prompt (unlabelled prompts are dropped here,
            and counted).
        settings: The calibration settings.
        map_grid: Runs the grid search's chunks (see the module docstring); every grid point is
            computed independently, so the result does not depend on how it chunks the grid.

    Returns:
        The chosen weights and threshold per alpha, the objective surface per alpha (shape
        ``(V, V)`` for V grid values, w1 on rows), the report and the input counts.

    Raises:
        ConformalError: If the labelled prompts are too few for an alpha (see :func:`check_sizes`).
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
    rule = settings.label_rule

    shared: dict[str, Any]
    if settings.protocol == "cfa":
        n_cal = len(cfa_parts(n, settings.split_num)[0])
        perms = make_permutations(n, settings.random_count, settings.seed)
        shared = {"parts": score_parts(data), "accept": accept, "rule": rule, "perms": perms}
        shared.update(alphas=alphas, split_num=settings.split_num)
        chunks = map_grid(grid_chunk_cfa, shared, w1, w2, cells)
        stats = GridStats.concat(chunks)
        cals, per_alpha = [], {}
        for ai, a in enumerate(alphas):
            g = choose(stats.mean_size[ai])
            thr = float(stats.last_threshold[ai, g])
            cals.append(Calibration(a, float(w1[g]), float(w2[g]), thr, n_cal))
            label = label_scores(nonconformity(shared["parts"], float(w1[g]), float(w2[g])), accept, rule)
            per_alpha[str(a)] = {
                "w1": float(w1[g]),
                "w2": float(w2[g]),
                "threshold": thr,
                "trivial": is_trivial(thr, label, has_acceptable(accept, rule)),
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
        chunks = map_grid(grid_chunk_split, shared, w1, w2, cells)
        stats = GridStats.concat(chunks)
        report_perms = make_permutations(len(cal), settings.random_count, settings.seed + 2)
        cals, per_alpha = [], {}
        for ai, a in enumerate(alphas):
            g = choose(stats.mean_size[ai])
            thr = final_threshold(cal_parts, accept[cal], rule, float(w1[g]), float(w2[g]), a)
            cals.append(Calibration(a, float(w1[g]), float(w2[g]), thr, len(cal)))
            held = heldout_report(cal_parts, accept[cal], rule, float(w1[g]), float(w2[g]), a, report_perms)
            label = label_scores(nonconformity(cal_parts, float(w1[g]), float(w2[g])), accept[cal], rule)
            per_alpha[str(a)] = {
                "w1": float(w1[g]),
                "w2": float(w2[g]),
                "threshold": thr,
                "trivial": is_trivial(thr, label, has_acceptable(accept[cal], rule)),
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
        "grid_tasks": len(chunks),
        "per_alpha": per_alpha,
    }
    return CalibrationResult(cals, surfaces, report, counts)
