"""The infer stage through the shared engine pool: one prediction per held-out prompt (tiny model, Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rluf_ray.config import load
from rluf_ray.data.splits import split_plan, tokenizer_corpus
from rluf_ray.data.tiny_model import build_embedded
from rluf_ray.stages import infer

pytestmark = pytest.mark.ray


def test_predict_one_greedy_summary_per_prompt(ray_session, tmp_path: Path) -> None:
    cfg = load(
        overrides=["inference.test_size=3", "inference.max_new_tokens=4", "resources.engine_actors=1",
                   "generation.prompts_per_batch=2", f"output_dir={tmp_path}"]
    )  # fmt: skip
    model = build_embedded(
        tokenizer_corpus(cfg.data.prompt_template, split_plan(cfg.data, "train"), 50),
        tmp_path / "model",
        max_positions=512,
    )
    p = infer.plan(cfg)
    rows = infer.eval_rows(p.eval_split, p.test_size)
    assert len(rows) == 3
    pool = p.pool
    first = infer.predict(pool, str(model), rows)
    assert [p["prompt_id"] for p in first] == sorted(r["prompt_id"] for r in rows)
    assert all(isinstance(p["prediction"], str) and p["prompt"] for p in first)
    assert infer.predict(pool, str(model), rows) == first  # greedy: the same summaries again


def test_models_are_sft_then_every_unit() -> None:
    assert infer.models([("cfa", 1), ("dpo", 1)]) == [
        ("sft", None, "sft", "model"),
        ("cfa", 1, "train", "cfa/seed-1/model"),
        ("dpo", 1, "train", "dpo/seed-1/model"),
    ]
    assert infer.plan(load(overrides=["dpo.seeds=[3, 4]", "dpo.arms=[dpo]"])).units == (
        ("dpo", 3),
        ("dpo", 4),
    )
    assert infer.plan(load()).units == (("cfa", 42), ("dpo", 42))


def test_run_predicts_with_sft_and_every_unit(ray_session, tmp_path: Path) -> None:
    import shutil

    from rluf_ray.schema import PREDICTION_SCHEMA
    from rluf_ray.stages.registry import StageContext
    from rluf_ray.store.artifacts import ArtifactStore

    cfg = load(
        overrides=["inference.test_size=2", "inference.max_new_tokens=2", "resources.engine_actors=1",
                   "dpo.seeds=[5, 6]", "dpo.arms=[cfa]", f"output_dir={tmp_path / 'out'}"]
    )  # fmt: skip
    model = build_embedded(
        tokenizer_corpus(cfg.data.prompt_template, split_plan(cfg.data, "train"), 50),
        tmp_path / "model",
        max_positions=512,
    )
    store = ArtifactStore(cfg.output_dir)
    for stage, sub in (("sft", "model"), ("training", "cfa/seed-5/model"), ("training", "cfa/seed-6/model")):
        shutil.copytree(model, store.local_path(stage, sub))
    result = infer.run(infer.plan(cfg), StageContext("infer", store))
    table = store.read_parquet("inference", "predictions.parquet")
    assert table.schema.equals(PREDICTION_SCHEMA)
    rows = table.to_pylist()
    assert sorted((r["model"], r["seed"]) for r in rows) == sorted(
        [("sft", None)] * 2 + [("cfa", 5)] * 2 + [("cfa", 6)] * 2
    )
    assert result.rows == {"sft": 2, "cfa/seed-5": 2, "cfa/seed-6": 2}
    by_model = {}
    for r in rows:
        by_model.setdefault((r["model"], r["seed"]), []).append(r["prediction"])
    assert by_model[("cfa", 5)] == by_model[("sft", None)]  # same weights, greedy: the same summaries
