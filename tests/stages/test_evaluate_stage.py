"""evaluate: rubric per prediction, per-model means, win rate of the policy over the SFT model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest

from rluf_ray.config import load
from rluf_ray.data.splits import load_split
from rluf_ray.errors import RlufError
from rluf_ray.io.artifacts import ArtifactStore
from rluf_ray.schema import PREDICTION_SCHEMA, PREDICTIONS_ARTIFACT
from rluf_ray.stages import evaluate
from rluf_ray.stages.registry import StageContext


def _predictions(cfg, store: ArtifactStore, n: int = 4) -> None:
    rows = []
    for src in load_split(cfg, "eval")[:n]:
        # The policy copies the reference (best possible); the baseline says something unrelated.
        rows.append(
            {
                "prompt_id": src["prompt_id"],
                "model": "cfa",
                "seed": 42,
                "prompt": "p",
                "reference": src["reference"],
                "prediction": src["reference"],
            }
        )
        rows.append(
            {
                "prompt_id": src["prompt_id"],
                "model": "sft",
                "seed": None,
                "prompt": "p",
                "reference": src["reference"],
                "prediction": "The weather was fine.",
            }
        )
    store.write_parquet(
        "inference", PREDICTIONS_ARTIFACT, pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)
    )


def test_evaluate_offline(tmp_path: Path) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    store = ArtifactStore(tmp_path)
    _predictions(cfg, store)
    result = evaluate.run(cfg, StageContext(name="evaluate", store=store))
    report = json.loads((tmp_path / "evaluation" / "report.json").read_text())
    assert report["win_rate"]["rate"] == 1.0 and report["win_rate"]["wins"] == 4
    assert report["models"]["cfa"]["overall"] > report["models"]["sft"]["overall"]
    assert result.rows == {"scored": 8, "missing": 0}
    scores = store.read_parquet("evaluation", "scores.parquet").to_pylist()
    assert len(scores) == 8 and all(0 <= s["accuracy"] <= 10 for s in scores)
    assert "Win rate of cfa over sft: 1.000" in (tmp_path / "evaluation" / "report.md").read_text()


def test_summarise_leaves_failures_out() -> None:
    rows = [
        {"prompt_id": "a", "model": "cfa", "error": None, "accuracy": 8.0, "relevance": 8.0},
        {"prompt_id": "a", "model": "sft", "error": None, "accuracy": 6.0, "relevance": 6.0},
        {"prompt_id": "b", "model": "cfa", "error": "timeout: x", "accuracy": None, "relevance": None},
        {"prompt_id": "b", "model": "sft", "error": None, "accuracy": 9.0, "relevance": 9.0},
    ]
    s = evaluate.summarise(rows, ("accuracy", "relevance"))
    assert s["win_rate"]["wins"] == 1 and s["win_rate"]["losses"] == 0  # b has no policy score: left out
    assert s["models"]["cfa"]["missing"] == 1 and s["models"]["sft"]["axes"]["accuracy"] == 7.5
    assert not math.isnan(s["models"]["cfa"]["overall"])


def test_unknown_axis(tmp_path: Path) -> None:
    cfg = load(None, [f"output_dir={tmp_path}", "evaluation.axes=[accuracy, style]"])
    with pytest.raises(RlufError, match="style"):
        evaluate.run(cfg, StageContext(name="evaluate", store=ArtifactStore(tmp_path)))
