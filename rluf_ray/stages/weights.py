"""assign-weights: weight each DPO pair by the prediction-set membership of its two answers."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

from rluf_ray.config import RlufConfig
from rluf_ray.core.weighting import SetIndex, WeightScheme, pair_weight, small_and_large_alpha
from rluf_ray.errors import RlufError
from rluf_ray.io.artifacts import ArtifactStore
from rluf_ray.schema import PAIRS_ARTIFACT, PREDICTION_SETS_ARTIFACT, WEIGHTED_PAIRS_ARTIFACT
from rluf_ray.stages.registry import StageContext, StageDef, StageResult

log = logging.getLogger("rluf.weights")


def scheme_from_config(cfg: RlufConfig) -> WeightScheme:
    """The weighting scheme of the config's ``weights`` section."""
    w = cfg.weights
    return WeightScheme(w.in_small_set, w.in_large_set_only, w.in_both, w.in_neither)


def load_sets(store: ArtifactStore, calibration_dir: str) -> SetIndex:
    """alpha -> prompt_id -> set of normalised answers, from the calibration stage's artifact."""
    table = store.read_parquet(calibration_dir, PREDICTION_SETS_ARTIFACT)
    sets: dict[float, dict[str, set[str]]] = {}
    cols = table.select(["alpha", "prompt_id", "answer"]).to_pydict()
    for alpha, pid, answer in zip(cols["alpha"], cols["prompt_id"], cols["answer"], strict=True):
        sets.setdefault(float(alpha), {}).setdefault(pid, set()).add(answer)
    return sets


def weighted_rows(
    pairs: Iterator[dict[str, Any]], sets: SetIndex, scheme: WeightScheme, small: float, large: float
) -> Iterator[dict[str, Any]]:
    """Each pair in the released format (prompt, chosen, rejected, weight) plus its keys."""
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


def run(cfg: RlufConfig, ctx: StageContext) -> StageResult:
    """Join feedback pairs with prediction sets and write weighted pairs."""
    store = ctx.store
    sets = load_sets(store, ctx.upstream_dir("calibrate"))
    alphas = sorted(sets) or sorted(cfg.conformal.quantile_bars)
    try:
        small, large = small_and_large_alpha(alphas)
    except ValueError as exc:
        raise RlufError(f"assign-weights: {exc} (run calibrate with two quantile_bars)") from None
    scheme = scheme_from_config(cfg)
    hist: Counter[float] = Counter()

    def counted() -> Iterator[dict[str, Any]]:
        for row in weighted_rows(
            store.iter_jsonl(ctx.upstream_dir("feedback"), PAIRS_ARTIFACT), sets, scheme, small, large
        ):
            hist[row["weight"]] += 1
            yield row

    n = store.write_jsonl(ctx.dir, WEIGHTED_PAIRS_ARTIFACT, counted())
    if n == 0:
        raise RlufError("assign-weights: the feedback stage produced no pairs")
    summary = {
        "pairs": n,
        "small_set_alpha": small,
        "large_set_alpha": large,
        "weight_histogram": {str(k): v for k, v in sorted(hist.items())},
        "zero_weight_share": hist.get(0.0, 0) / n,
        "mean_weight": sum(k * v for k, v in hist.items()) / n,
    }
    store.write_json(ctx.dir, "summary.json", summary)
    log.info(
        "assign-weights: %d pairs, mean weight %.3f, zero share %.3f",
        n,
        summary["mean_weight"],
        summary["zero_weight_share"],
    )
    return StageResult(rows={"weighted_pairs": n}, metrics=summary)


def plan(cfg: RlufConfig) -> dict[str, Any]:
    """The weighting scheme, and the levels to expect when calibrate wrote no set at all."""
    return {"scheme": scheme_from_config(cfg), "alphas": sorted(cfg.conformal.quantile_bars)}


STAGE = StageDef(
    name="assign-weights",
    artifact_dir="weights",
    upstream=("calibrate", "feedback"),
    reads=("weights", "conformal.quantile_bars"),
    plan_fn=plan,
    run_fn=run,
)
