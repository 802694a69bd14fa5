"""infer: generate one summary per held-out (eval split) prompt with the SFT model and the trained policy.

The same engine actors and UDF as ``generate`` (Ray Data ``map_batches`` over an actor pool), with
one sample per prompt (greedy at ``inference.temperature: 0``). Both models see the same prompts, so
``evaluate`` can compare them prompt by prompt.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from rluf_ray.config import RlufConfig
from rluf_ray.data import splits
from rluf_ray.errors import RlufError
from rluf_ray.io.engines import SamplingSpec, check_model_path
from rluf_ray.io.ray_runtime import release_on_error
from rluf_ray.schema import PREDICTION_SCHEMA, PREDICTIONS_ARTIFACT
from rluf_ray.stages import generate
from rluf_ray.stages.registry import StageContext, StageDef, StageResult

log = logging.getLogger("rluf.infer")

MODELS = (("sft", "sft"), ("rluf", "train"))  # (model name in the predictions, stage that made it)


def sampling_spec(cfg: RlufConfig) -> SamplingSpec:
    """One sample per prompt with the inference settings."""
    i = cfg.inference
    return SamplingSpec(
        n=1, temperature=i.temperature, top_p=cfg.generation.top_p, max_new_tokens=i.max_new_tokens
    )


def eval_rows(cfg: RlufConfig) -> list[dict[str, Any]]:
    """The held-out prompts (capped by ``inference.test_size``)."""
    rows = splits.load_split(cfg, "eval")
    if cfg.inference.test_size is not None:
        rows = rows[: cfg.inference.test_size]
    if not rows:
        raise RlufError("infer: the eval split is empty")
    return [{**r, "split": "eval"} for r in rows]


def predict(cfg: RlufConfig, model_dir: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Generate with one model over the engine actor pool; returns prompt_id, prompt, reference, text."""
    import ray.data

    check_model_path(model_dir)
    ds = ray.data.from_items(rows).map_batches(
        generate.SampleUDF,
        fn_constructor_kwargs={
            "engine_factory": generate.default_engine_factory(cfg, model_dir),
            "spec": sampling_spec(cfg),
            "template": cfg.data.prompt_template,
            "prompt_budget": splits.prompt_budget(cfg, cfg.inference.max_new_tokens),
            "seed": cfg.generation.seed,
        },
        **generate.plan(cfg),
    )
    selected = ds.select_columns(["prompt_id", "prompt", "reference", "texts"])
    try:
        out = [
            {"prompt_id": r["prompt_id"], "prompt": r["prompt"], "reference": r["reference"],
             "prediction": r["texts"][0]}
            for r in selected.iter_rows()
        ]  # fmt: skip
    except BaseException as exc:
        release_on_error(exc, selected)  # free the engine actors now, not at the next collection
        del ds, selected
        raise
    return sorted(out, key=lambda r: r["prompt_id"])


def run(cfg: RlufConfig, ctx: StageContext) -> StageResult:
    """Predict with the SFT model and the trained policy; write one Parquet file of predictions."""
    from rluf_ray.io.ray_runtime import ensure_ray

    rows = eval_rows(cfg)
    ensure_ray()
    predictions: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for name, stage in MODELS:
        model_dir = ctx.store.local_path(ctx.upstream_dir(stage), "model")
        preds = predict(cfg, model_dir, rows)
        predictions += [{**p, "model": name} for p in preds]
        counts[name] = len(preds)
        log.info("infer: %s produced %d predictions", name, len(preds))
    table = pa.Table.from_pylist(predictions, schema=PREDICTION_SCHEMA)
    ctx.store.write_parquet(ctx.dir, PREDICTIONS_ARTIFACT, table)
    empty = {name: sum(1 for p in predictions if p["model"] == name and not p["prediction"].strip())
             for name, _ in MODELS}  # fmt: skip
    return StageResult(rows=counts, metrics={"empty_predictions": empty, "prompts": len(rows)})


def plan(cfg: RlufConfig) -> dict[str, Any]:
    """Sampling settings and engine pool arguments of the inference run."""
    return {"sampling": sampling_spec(cfg), "pool": generate.plan(cfg)}


STAGE = StageDef(
    name="infer",
    artifact_dir="inference",
    upstream=("sft", "train"),
    reads=("inference", "data", "model.max_context"),
    plan_fn=plan,
    run_fn=run,
)
