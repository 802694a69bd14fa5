"""infer: generate one summary per held-out (eval split) prompt with the SFT model and every trained
unit (each arm of ``dpo.arms`` for each seed of ``dpo.seeds``: ``training/<arm>/seed-<seed>/model``).

The engine pool component that ``generate`` uses too (Ray Data ``map_batches`` over an actor pool),
with one sample per prompt (greedy at ``inference.temperature: 0``). Every model sees the same prompts, so
``evaluate`` can compare them prompt by prompt. One Parquet file, ``inference/predictions.parquet``
(PREDICTION_SCHEMA): ``model`` is "sft", "cfa" or "dpo", ``seed`` the training seed (null for sft).
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from rluf_ray.arms import SFT_ARM
from rluf_ray.config import RlufConfig, plan_type
from rluf_ray.data import splits
from rluf_ray.data.splits import SplitPlan
from rluf_ray.engines import pool as engine_pool
from rluf_ray.engines.base import SamplingSpec
from rluf_ray.engines.pool import PoolPlan
from rluf_ray.errors import RlufError
from rluf_ray.runtime.bootstrap import releases_on_error
from rluf_ray.schema import MODEL_DIR, PREDICTION_SCHEMA, PREDICTIONS_ARTIFACT, train_unit_dir
from rluf_ray.stages.registry import StageContext, StageDef, StageResult
from rluf_ray.store.model_cache import check_model_location

log = logging.getLogger("rluf.infer")


@plan_type
class InferPlan:
    """Everything infer takes from the config: the engine pool (one sample per prompt with the inference
    settings, its prompt budget, template, seed), the prompt cap, the eval split and the trained units."""

    pool: PoolPlan
    test_size: int | None  # held-out prompts to predict for (None: all)
    eval_split: SplitPlan
    units: tuple[tuple[str, int], ...]  # (arm, seed): every trained unit predicts


def models(units: list[tuple[str, int]]) -> list[tuple[str, int | None, str, str]]:
    """(model name, seed, stage that made it, model dir in that stage's artifacts): sft, then every unit.

    Args:
        units: The trained units as (arm, seed).

    Returns:
        ``(name, seed, stage, model_dir)`` per model: sft (seed None) first, then the units in order.
    """
    out: list[tuple[str, int | None, str, str]] = [(SFT_ARM, None, "sft", MODEL_DIR)]
    out += [(arm, seed, "train", f"{train_unit_dir(arm, seed)}/{MODEL_DIR}") for arm, seed in units]
    return out


def model_label(name: str, seed: int | None) -> str:
    """``sft``, or ``<arm>/seed-<seed>`` (row counts and logs).

    Args:
        name: The model name (``sft`` or an arm).
        seed: The training seed (None for sft).

    Returns:
        ``name`` when ``seed`` is None, else ``<name>/seed-<seed>``.
    """
    return name if seed is None else train_unit_dir(name, seed)


def eval_rows(split: SplitPlan, test_size: int | None) -> list[dict[str, Any]]:
    """The held-out prompts (capped by ``inference.test_size``).

    Args:
        split: The eval split's plan.
        test_size: At most this many prompts (None: all).

    Returns:
        The rows, each with ``split: eval``.

    Raises:
        RlufError: The eval split is empty.
    """
    rows = splits.load_split(split)
    if test_size is not None:
        rows = rows[:test_size]
    if not rows:
        raise RlufError("infer: the eval split is empty")
    return [{**r, "split": "eval"} for r in rows]


@releases_on_error  # a failed run frees its engine actors at once
def predict(pool: PoolPlan, model: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Generate with one model over the engine pool: one prediction per row.

    Args:
        pool: The engine pool's plan (``plan(cfg).pool``).
        model: The model: a path or store URI.
        rows: Prompt rows (prompt_id, post, reference, split).

    Returns:
        prompt_id, prompt, reference and prediction per row, sorted by prompt id.
    """
    import ray.data

    check_model_location(model)
    factory = engine_pool.default_engine_factory(pool, model)
    ds = engine_pool.apply(ray.data.from_items(rows), pool, factory)
    selected = ds.select_columns(["prompt_id", "prompt", "reference", "texts"])
    out = [
        {"prompt_id": r["prompt_id"], "prompt": r["prompt"], "reference": r["reference"],
         "prediction": r["texts"][0]}
        for r in selected.iter_rows()
    ]  # fmt: skip
    return sorted(out, key=lambda r: r["prompt_id"])


def run(p: InferPlan, ctx: StageContext) -> StageResult:
    """Predict with the SFT model and every trained unit; write one Parquet file of predictions.

    Args:
        p: The stage's plan (pool, eval split, units).
        ctx: The run's context (store, options, stage key).

    Returns:
        Row counts and metrics for the manifest.
    """
    from rluf_ray.runtime.bootstrap import ensure_ray

    rows = eval_rows(p.eval_split, p.test_size)
    ensure_ray()
    predictions: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    empty: dict[str, int] = {}
    for name, seed, stage, model_path in models(list(p.units)):
        label = model_label(name, seed)
        preds = predict(p.pool, ctx.store.uri(ctx.upstream_dir(stage), model_path), rows)
        predictions += [{**r, "model": name, "seed": seed} for r in preds]
        counts[label] = len(preds)
        empty[label] = sum(1 for r in preds if not r["prediction"].strip())
        log.info("infer: %s produced %d predictions", label, len(preds))
    table = pa.Table.from_pylist(predictions, schema=PREDICTION_SCHEMA)
    ctx.store.write_parquet(ctx.dir, PREDICTIONS_ARTIFACT, table)
    return StageResult(rows=counts, metrics={"empty_predictions": empty, "prompts": len(rows)})


def plan(cfg: RlufConfig) -> InferPlan:
    """Everything the run takes from the config.

    Args:
        cfg: The config.

    Returns:
        The stage's plan.
    """
    i = cfg.inference
    budget = splits.prompt_budget(cfg.model.max_context, i.max_new_tokens)
    spec = SamplingSpec.from_config(cfg.generation, i)
    return InferPlan(
        pool=engine_pool.plan(
            cfg.generation, cfg.resources, cfg.model, cfg.data.prompt_template, spec, budget
        ),
        test_size=i.test_size,
        eval_split=splits.split_plan(cfg.data, "eval"),
        units=tuple(cfg.dpo.units()),
    )


STAGE = StageDef(
    name="infer",
    artifact_dir="inference",
    upstream=("sft", "train"),
    plan_fn=plan,
    run_fn=run,
)
