"""Three-arm evaluation (pure): which pairwise comparisons to ask, in which order, what each reply
means, which prompts survive missing judgements, and the win rates and rubric means with intervals.

Arms are the models in the predictions ("cfa", "dpo", "sft"; any subset of two or more). Every pair
of arms is compared in ``rluf_ray.arms.ARM_ORDER`` (cfa-dpo, cfa-sft, dpo-sft). Seeds: two trained
arms pair seed ``s`` of A with seed ``s`` of B; an arm with a single unseeded prediction set (sft,
seed null) is paired with every seed of the other arm.

One comparison item is (A, B, seed, prompt). Which arm is shown as output_1 is drawn per item from
an RNG seeded with (``evaluation.seed``, A, B, seed, prompt), so it does not depend on processing
order and position bias averages out item by item. Identical predictions (after stripping
whitespace) are a tie without a judge call. A prompt with a missing judgement anywhere (any
comparison, any rubric of any arm and seed) or a missing prediction is dropped for every arm alike,
so all win rates and rubric means are over the same prompts.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rluf_ray.arms import ARM_ORDER
from rluf_ray.evaluation.intervals import LOSS, WIN, bootstrap_mean, win_rate_ci
from rluf_ray.judge.keys import SEP

MISSING_PREDICTION = "missing_prediction"

Seed = int | None


def ordered_arms(models: Iterable[str]) -> list[str]:
    """Order arms as ``ARM_ORDER``; arms not named there follow, by name.

    Args:
        models: Arm names (repeats allowed).

    Returns:
        The distinct arms, in order.
    """
    rank = {m: i for i, m in enumerate(ARM_ORDER)}
    return sorted(set(models), key=lambda m: (rank.get(m, len(ARM_ORDER)), m))


def arm_pairs(models: Iterable[str]) -> list[tuple[str, str]]:
    """List every pair (A, B) of the arms, A before B in ``ARM_ORDER`` (cfa-dpo, cfa-sft, dpo-sft).

    Args:
        models: Arm names (repeats allowed).

    Returns:
        The pairs, in ``ARM_ORDER`` order (see :func:`ordered_arms`).
    """
    return list(itertools.combinations(ordered_arms(models), 2))


def seed_order(s: Seed) -> tuple[bool, int]:
    """Give the sort key of a seed: None first, then ascending.

    Args:
        s: A training seed, or None for an unseeded arm (sft).

    Returns:
        The key, for ``sorted(..., key=seed_order)``.
    """
    return (s is not None, s if s is not None else 0)


def seed_pairs(a_seeds: Iterable[Seed], b_seeds: Iterable[Seed]) -> list[tuple[Seed, Seed, Seed]]:
    """(comparison seed, A's seed, B's seed) for each row of a comparison's outcome matrix.

    An arm whose only seed is None (sft) is paired with every seed of the other arm; otherwise the
    seeds both arms have are paired one to one.

    Args:
        a_seeds: The seeds of arm A's prediction sets (None for an unseeded one).
        b_seeds: The seeds of arm B's prediction sets.

    Returns:
        ``(comparison seed, A's seed, B's seed)`` triples, by comparison seed (None first); the
        comparison seed is the trained arm's seed, None when both are unseeded.
    """
    sa, sb = set(a_seeds), set(b_seeds)
    if sb == {None}:
        return [(s, s, None) for s in sorted(sa, key=seed_order)]
    if sa == {None}:
        return [(s, None, s) for s in sorted(sb, key=seed_order)]
    return [(s, s, s) for s in sorted(sa & sb, key=seed_order)]


def first_shown(eval_seed: int, a: str, b: str, seed: Seed, prompt_id: str) -> str:
    """Draw the arm shown as output_1 for one item: a fair coin seeded by the item and ``evaluation.seed``.

    Args:
        eval_seed: The ``evaluation.seed`` of the run.
        a: Arm A of the comparison.
        b: Arm B of the comparison.
        seed: The comparison seed (None for two unseeded arms).
        prompt_id: The prompt of the item.

    Returns:
        ``a`` or ``b``; the same for the same item on every run and in any processing order.
    """
    rng = random.Random(SEP.join(map(str, (eval_seed, a, b, "" if seed is None else seed, prompt_id))))
    return b if rng.random() < 0.5 else a


def outcome_of(a: str, first: str, preference: int) -> float:
    """Turn the judge's preference for output 1 or 2 into A's outcome (1 win, 0 loss).

    Args:
        a: Arm A of the comparison.
        first: The arm that was shown as output_1.
        preference: The output the judge preferred, 1 or 2.

    Returns:
        ``WIN`` when the preferred output was A's, else ``LOSS``.

    Raises:
        ValueError: If ``preference`` is neither 1 nor 2.
    """
    if preference not in (1, 2):
        raise ValueError(f"preference must be 1 or 2, got {preference!r}")
    first_won = preference == 1
    return WIN if first_won == (first == a) else LOSS


@dataclass(frozen=True)
class ComparisonItem:
    """One comparison of A and B on one prompt (and seed); ``tie`` needs no judge call."""

    a: str
    b: str
    seed: Seed
    prompt_id: str
    a_seed: Seed  # the seed of A's prediction (None for sft)
    b_seed: Seed
    first: str  # the arm shown as output_1
    tie: bool  # identical predictions after stripping whitespace


def comparison_items(
    predictions: Mapping[tuple[str, Seed, str], str], eval_seed: int
) -> tuple[list[ComparisonItem], dict[str, list[str]]]:
    """Build the comparison items for every pair of arms, seed pairing and prompt.

    A prompt that lacks any (arm, seed) prediction gets no items (it is dropped for all arms).

    Args:
        predictions: ``(model, seed, prompt_id) -> prediction`` (seed None for an unseeded arm).
        eval_seed: The ``evaluation.seed``, which draws the arm shown first per item.

    Returns:
        The items (by arm pair, then seed, then prompt id), and prompts lacking a prediction -> the
        missing cells as ``model/seed`` strings.
    """
    seeds: dict[str, set[Seed]] = {}
    prompts: set[str] = set()
    for model, seed, pid in predictions:
        seeds.setdefault(model, set()).add(seed)
        prompts.add(pid)
    missing: dict[str, list[str]] = {}
    for pid in sorted(prompts):
        gaps = [f"{m}/{'' if s is None else s}" for m in ordered_arms(seeds)
                for s in sorted(seeds[m], key=seed_order) if (m, s, pid) not in predictions]  # fmt: skip
        if gaps:
            missing[pid] = gaps
    items = []
    for a, b in arm_pairs(seeds):
        for seed, sa, sb in seed_pairs(seeds[a], seeds[b]):
            for pid in sorted(prompts):
                if pid in missing:
                    continue
                pa_, pb_ = predictions[(a, sa, pid)], predictions[(b, sb, pid)]
                first = first_shown(eval_seed, a, b, seed, pid)
                items.append(ComparisonItem(a, b, seed, pid, sa, sb, first, pa_.strip() == pb_.strip()))
    return items, missing


def reason_of(error: str | None) -> str:
    """Shorten a failed judgement's error to its reason (the part before the first colon).

    Args:
        error: The error message of the judgement row; None counts as ``unknown``.

    Returns:
        The reason.
    """
    return (error or "unknown").split(":", 1)[0]


def dropped_prompts(
    comparisons: Iterable[Mapping[str, Any]],
    rubric: Iterable[Mapping[str, Any]],
    missing_predictions: Mapping[str, Sequence[str]] = {},
) -> dict[str, list[str]]:
    """Collect the prompts to drop: a missing prediction or any failed judgement.

    A judgement failed when its comparison row or rubric row has ``error`` set.

    Args:
        comparisons: The comparison rows (``prompt_id``, ``error``, ...).
        rubric: The rubric rows (``prompt_id``, ``error``, ...).
        missing_predictions: Prompts lacking a prediction -> the missing cells
            (from :func:`comparison_items`).

    Returns:
        prompt_id -> its sorted reasons (``missing_prediction`` or :func:`reason_of` of each error),
        by prompt id.
    """
    out: dict[str, list[str]] = {pid: [MISSING_PREDICTION] for pid in missing_predictions}
    for row in itertools.chain(comparisons, rubric):
        if row["error"] is not None:
            out.setdefault(row["prompt_id"], []).append(reason_of(row["error"]))
    return {pid: sorted(reasons) for pid, reasons in sorted(out.items())}


def _seeds_by_prompts(
    cells: Mapping[tuple[Seed, str], Any], keep: Sequence[str], value: Any, missing: str
) -> tuple[list[Seed], np.ndarray]:
    """``value(cell)`` as a seeds x prompts array (prompts in ``keep`` order); a missing cell is an error."""
    seeds = sorted({s for s, _ in cells}, key=seed_order)
    arr = np.full((len(seeds), len(keep)), np.nan)
    for i, s in enumerate(seeds):
        for j, pid in enumerate(keep):
            if (s, pid) not in cells:
                raise ValueError(f"{missing} for seed {s}, prompt {pid}")
            arr[i, j] = value(cells[(s, pid)])
    return seeds, arr


def outcome_matrix(
    comparisons: Iterable[Mapping[str, Any]], a: str, b: str, keep: Sequence[str]
) -> tuple[list[Seed], np.ndarray]:
    """Lay A's outcomes against B out as seeds x prompts (``keep`` in order).

    Args:
        comparisons: The comparison rows (``a``, ``b``, ``seed``, ``prompt_id``, ``outcome``).
        a: Arm A.
        b: Arm B.
        keep: The prompt ids kept (the columns, in order).

    Returns:
        The S comparison seeds (None first) and the outcomes, shape ``(S, len(keep))``.

    Raises:
        ValueError: If a (seed, kept prompt) cell has no outcome.
    """
    kept = set(keep)
    cells = {(r["seed"], r["prompt_id"]): r["outcome"] for r in comparisons
             if r["a"] == a and r["b"] == b and r["prompt_id"] in kept and r["outcome"] is not None}  # fmt: skip
    return _seeds_by_prompts(cells, keep, float, f"{a} vs {b}: no outcome")


def rubric_matrix(
    rubric: Iterable[Mapping[str, Any]], model: str, axes: Sequence[str], keep: Sequence[str]
) -> dict[str, np.ndarray]:
    """Lay a model's rubric scores out per axis and ``"overall"`` (mean of the axes) as seeds x prompts.

    Args:
        rubric: The rubric rows (``model``, ``seed``, ``prompt_id`` and one value per axis).
        model: The arm whose scores are taken.
        axes: The rubric axes.
        keep: The prompt ids kept (the columns, in order).

    Returns:
        Axis (and ``"overall"``) -> the scores, shape ``(S, len(keep))`` for the model's S seeds.

    Raises:
        ValueError: If a (seed, kept prompt) cell has no rubric row.
    """
    kept = set(keep)
    cells = {(r["seed"], r["prompt_id"]): r for r in rubric if r["model"] == model and r["prompt_id"] in kept}
    out = {a: _seeds_by_prompts(cells, keep, lambda c, a=a: c[a], f"{model}: no rubric")[1] for a in axes}
    out["overall"] = _seeds_by_prompts(
        cells, keep, lambda c: sum(c[x] for x in axes) / len(axes), f"{model}: no rubric"
    )[1]
    return out


def _iv(values: np.ndarray, n_boot: int, level: float, seed: int) -> dict[str, float]:
    iv = bootstrap_mean(values, n_boot=n_boot, level=level, seed=seed)
    return {"mean": iv.estimate, "ci_low": iv.low, "ci_high": iv.high}


def summarise(
    comparisons: Sequence[Mapping[str, Any]],
    rubric: Sequence[Mapping[str, Any]],
    axes: Sequence[str],
    missing_predictions: Mapping[str, Sequence[str]] = {},
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The report's ``win_rates``, ``rubric`` and ``dropped`` parts.

    Args:
        comparisons: The comparison rows: a, b, seed, prompt_id, outcome (1 / 0.5 / 0, None when
            failed), error.
        rubric: The rubric rows: model, seed, prompt_id, error and one value per axis.
        axes: The rubric axes.
        missing_predictions: Prompts lacking a prediction -> the missing cells (dropped too).
        n_boot: Bootstrap resamples per interval.
        level: Confidence level of the intervals, in (0, 1).
        seed: Seed of the bootstrap RNG (the same for every interval).

    Returns:
        ``win_rates`` (one dict per arm pair, in ``ARM_ORDER``), ``rubric`` (per model: ``n``,
        ``seeds``, per-axis and overall mean with interval) and ``dropped`` (counts, prompt ids and
        reasons of the dropped prompts).
    """
    prompts = sorted(
        {r["prompt_id"] for r in itertools.chain(comparisons, rubric)} | set(missing_predictions)
    )
    drops = dropped_prompts(comparisons, rubric, missing_predictions)
    keep = [p for p in prompts if p not in drops]
    failed = Counter(
        reason_of(r["error"]) for r in itertools.chain(comparisons, rubric) if r["error"] is not None
    )
    if missing_predictions:
        failed[MISSING_PREDICTION] = sum(len(v) for v in missing_predictions.values())
    win_rates = []
    pairs = list(dict.fromkeys((r["a"], r["b"]) for r in comparisons))
    for a, b in sorted(pairs, key=_pair_rank):
        seeds, arr = outcome_matrix(comparisons, a, b, keep)
        wr: dict[str, Any] = dict(win_rate_ci(a, b, arr, n_boot=n_boot, level=level, seed=seed).to_dict())
        wr["seed_values"] = seeds
        win_rates.append(wr)
    models = ordered_arms(r["model"] for r in rubric)
    rubric_out: dict[str, Any] = {}
    for model in models:
        mats = rubric_matrix(rubric, model, axes, keep)
        over = mats["overall"]
        rubric_out[model] = {
            "n": int(over.shape[1]),
            "seeds": int(over.shape[0]),
            "axes": {x: _iv(mats[x], n_boot, level, seed) for x in axes},
            "overall": _iv(over, n_boot, level, seed),
        }
    dropped = {
        "prompts": len(drops),
        "of": len(prompts),
        "kept": len(keep),
        "prompt_ids": drops,
        "failed_judgements": {
            "comparisons": sum(r["error"] is not None for r in comparisons),
            "rubric": sum(r["error"] is not None for r in rubric),
        },
        "by_reason": dict(sorted(failed.items())),
    }
    return {"win_rates": win_rates, "rubric": rubric_out, "dropped": dropped}


def _pair_rank(pair: tuple[str, str]) -> tuple[int, int, str, str]:
    rank = {m: i for i, m in enumerate(ARM_ORDER)}
    n = len(ARM_ORDER)
    return (rank.get(pair[0], n), rank.get(pair[1], n), pair[0], pair[1])
