"""The infer stage through the shared engine pool: one prediction per held-out prompt (tiny model, Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rluf_ray.config import load
from rluf_ray.data.splits import tokenizer_corpus
from rluf_ray.data.tiny_model import build_embedded
from rluf_ray.stages import infer

pytestmark = pytest.mark.ray


def test_predict_one_greedy_summary_per_prompt(ray_session, tmp_path: Path) -> None:
    cfg = load(
        overrides=["inference.test_size=3", "inference.max_new_tokens=4", "resources.engine_actors=1",
                   "generation.prompts_per_batch=2", f"output_dir={tmp_path}"]
    )  # fmt: skip
    model = build_embedded(tokenizer_corpus(cfg, 50), tmp_path / "model", max_positions=512)
    rows = infer.eval_rows(cfg)
    pool = infer.plan(cfg)["pool"]
    first = infer.predict(pool, str(model), rows)
    assert [p["prompt_id"] for p in first] == sorted(r["prompt_id"] for r in rows)
    assert all(isinstance(p["prediction"], str) and p["prompt"] for p in first)
    assert infer.predict(pool, str(model), rows) == first  # greedy: the same summaries again
