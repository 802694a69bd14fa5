"""assign-weights: weight each DPO pair by the prediction-set membership of its two answers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from rluf_ray.config import RlufConfig, WeightsConfig, plan_type
from rluf_ray.errors import RlufError
from rluf_ray.schema import PAIRS_ARTIFACT, PREDICTION_SETS_ARTIFACT, WEIGHTED_PAIRS_ARTIFACT
from rluf_ray.stages.registry import StageContext, StageDef, StageResult
from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.training.weights import (
    SetIndex,
    WeightScheme,
    pair_weight,
    small_and_large_alpha,
    weight_health,
)

log = logging.getLogger("rluf.weights")


@plan_type
class WeightsPlan:
    """The weighting scheme (the levels come from calibrate's artifacts)."""

    scheme: WeightScheme


def scheme_from_config(weights: WeightsConfig) -> WeightScheme:
    """The weighting scheme of the config's ``weights`` section.

    Args:
        weights: The ``weights`` section.

    Returns:
        The scheme.
    """
    w = weights
    return WeightScheme(w.in_small_set, w.in_large_set_only, w.in_both, w.in_neither)


def load_sets(store: ArtifactStore, calibration_dir: str) -> SetIndex:
    """alpha -> prompt_id -> set of normalised answers, from the calibration stage's artifact.

    Args:
        store: The artifact store.
        calibration_dir: The calibrate stage's artifact directory.

    Returns:
        The prediction sets by alpha and prompt_id.
    """
    table = store.read_parquet(calibration_dir, PREDICTION_SETS_ARTIFACT)
    sets: dict[float, dict[str, set[str]]] = {}
    cols = table.select(["alpha", "prompt_id", "answer"]).to_pydict()
    for alpha, pid, answer in zip(cols["alpha"], cols["prompt_id"], cols["answer"], strict=True):
        sets.setdefault(float(alpha), {}).setdefault(pid, set()).add(answer)
    return sets


def weighted_rows(
    pairs: Iterator[dict[str, Any]], sets: SetIndex, scheme: WeightScheme, small: float, large: float
) -> Iterator[dict[str, Any]]:
    """Each pair in the released format (prompt, chosen, rejected, weight) plus its keys.

    Args:
        pairs: Feedback pairs (``prompt``, ``chosen``, ``rejected``, ``prompt_id``, ``chosen_answer``,
            ``rejected_answer``).
        sets: Alpha -> prompt_id -> the normalised answers in that prompt's prediction set.
        scheme: The answer weights by set membership.
        small: The alpha of the small set.
        large: The alpha of the large set.

    Yields:
        One row per pair, its weight rounded to 6 decimals, with ``prompt_id``, ``chosen_answer`` and
        ``rejected_answer``.
    """
    for p in pairs:
        w = pair_weight(scheme, sets, p["prompt_id"], p["chosen_answer"], p["rejected_answer"], small, large)
        yield {
            "prompt": p["prompt"],
            "chosen": p["chosen"],
            "rejected": p["rejected"],
            "weight": round(w, 6),
            "prompt_id": p["prompt_id"],
            "chosen_answer": p["chosen_answer"],
            "rejected_answer": p["rejected_answer"],
        }


def calibrated_levels(store: ArtifactStore, calibration_dir: str) -> dict[float, dict[str, Any]]:
    """alpha -> what calibrate decided (threshold, and ``trivial`` from its report) for every level.

    Args:
        store: The artifact store.
        calibration_dir: The calibrate stage's artifact directory.

    Returns:
        Each alpha's ``calibration.json`` entry plus ``trivial`` (False when the report lacks it).
    """
    decided = store.read_json(calibration_dir, "calibration.json")["per_alpha"]
    report = store.read_json(calibration_dir, "report.json").get("per_alpha", {})
    return {
        float(a): {**v, "trivial": bool(report.get(a, {}).get("trivial", False))} for a, v in decided.items()
    }


def level_warnings(levels: dict[float, dict[str, Any]], sets: SetIndex) -> list[str]:
    """One line per level that cannot discriminate: trivial (every answer in) or empty (no answer in).

    Args:
        levels: Alpha -> what calibrate decided (``threshold``, ``trivial``).
        sets: Alpha -> prompt_id -> the answers in that prompt's prediction set.

    Returns:
        The warnings, in alpha order (empty: every level discriminates).
    """
    out = []
    for alpha, info in sorted(levels.items()):
        if info["trivial"]:
            out.append(f"alpha={alpha} is trivial: its threshold ({info['threshold']}) admits every answer "
                       "(more than alpha of calibration prompts had no acceptable answer)")  # fmt: skip
        elif not any(sets.get(alpha, {}).values()):
            out.append(f"alpha={alpha} has an empty set for every test prompt: its threshold "
                       f"({info['threshold']}) lies below every answer's score")  # fmt: skip
    return out


def run(p: WeightsPlan, ctx: StageContext) -> StageResult:
    """Join feedback pairs with prediction sets and write weighted pairs and their health figures.

    Args:
        p: The stage's plan (the weighting scheme).
        ctx: The run's context (store, options, stage key).

    Returns:
        Row counts and metrics for the manifest.
    """
    store = ctx.store
    cal_dir = ctx.upstream_dir("calibrate")
    sets = load_sets(store, cal_dir)
    levels = calibrated_levels(store, cal_dir)
    try:
        small, large = small_and_large_alpha(levels)
    except ValueError as exc:
        raise RlufError(f"assign-weights: {exc} in {cal_dir}/calibration.json (run calibrate with two "
                        "conformal.quantile_bars, not --quantile)") from None  # fmt: skip
    warnings = level_warnings(levels, sets)
    for line in warnings:
        log.warning("assign-weights: %s", line)
    scheme = p.scheme
    weights: list[float] = []

    def counted() -> Iterator[dict[str, Any]]:
        for row in weighted_rows(
            store.iter_jsonl(ctx.upstream_dir("feedback"), PAIRS_ARTIFACT), sets, scheme, small, large
        ):
            weights.append(row["weight"])
            yield row

    n = store.write_jsonl(ctx.dir, WEIGHTED_PAIRS_ARTIFACT, counted())
    if n == 0:
        raise RlufError("assign-weights: the feedback stage produced no pairs")
    summary = {"small_set_alpha": small, "large_set_alpha": large, "level_warnings": warnings,
               **weight_health(weights)}  # fmt: skip
    store.write_json(ctx.dir, "summary.json", summary)
    log.info(
        "assign-weights: %d pairs, mean weight %.3f, zero share %.3f, learning-rate scale under mean %.3f",
        n,
        summary["mean_weight"],
        summary["zero_weight_share"],
        summary["effective_lr_scale"]["mean"],  # type: ignore[index]
    )
    return StageResult(rows={"weighted_pairs": n}, metrics=summary)


def plan(cfg: RlufConfig) -> WeightsPlan:
    """The weighting scheme (the levels come from calibrate's artifacts).

    Args:
        cfg: The config (its ``weights`` section).

    Returns:
        The stage's plan.
    """
    return WeightsPlan(scheme=scheme_from_config(cfg.weights))


STAGE = StageDef(
    name="assign-weights",
    artifact_dir="weights",
    upstream=("calibrate", "feedback"),
    plan_fn=plan,
    run_fn=run,
)
