"""assign-weights on real artifacts: prediction sets x pairs -> weighted pairs in the released format."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from rluf_ray.config import load
from rluf_ray.errors import RlufError
from rluf_ray.schema import (
    PAIRS_ARTIFACT,
    PREDICTION_SET_SCHEMA,
    PREDICTION_SETS_ARTIFACT,
    WEIGHTED_PAIRS_ARTIFACT,
)
from rluf_ray.stages import weights
from rluf_ray.stages.registry import StageContext
from rluf_ray.store.artifacts import ArtifactStore


def _pair(pid: str, c: str, r: str) -> dict[str, str]:
    return {
        "prompt_id": pid,
        "prompt": f"P {pid}",
        "chosen": c.upper(),
        "rejected": r.upper(),
        "chosen_answer": c,
        "rejected_answer": r,
    }


def _setup(
    tmp_path: Path, alphas: list[float], empty: tuple[float, ...] = (), trivial: tuple[float, ...] = ()
) -> tuple[ArtifactStore, StageContext]:
    store = ArtifactStore(tmp_path)
    rows = [("p1", 0.5, "a"), ("p1", 0.2, "a"), ("p1", 0.2, "b"), ("p2", 0.2, "x")]
    rows = [r for r in rows if r[1] in alphas and r[1] not in empty]
    per_alpha = {str(a): {"w1": 0.0, "w2": 0.0, "threshold": 5.0, "n_calibration": 10} for a in alphas}
    store.write_json("calibration", "calibration.json", {"protocol": "split", "per_alpha": per_alpha})
    report = {str(a): {"coverage_mean": 0.8, "trivial": a in trivial} for a in alphas}
    store.write_json("calibration", "report.json", {"per_alpha": report})
    table = pa.table(
        {
            "prompt_id": [r[0] for r in rows],
            "alpha": [r[1] for r in rows],
            "answer": [r[2] for r in rows],
            "nonconformity": [1.0] * len(rows),
        },
        schema=PREDICTION_SET_SCHEMA,
    )
    store.write_parquet("calibration", PREDICTION_SETS_ARTIFACT, table)
    store.write_jsonl(
        "feedback",
        PAIRS_ARTIFACT,
        [_pair("p1", "a", "b"), _pair("p1", "b", "c"), _pair("p2", "x", "y"), _pair("p3", "m", "n")],
    )
    return store, StageContext(name="assign-weights", store=store)


def test_weights_stage(tmp_path: Path) -> None:
    store, ctx = _setup(tmp_path, [0.2, 0.5])
    result = weights.run(weights.plan(load(None)), ctx)
    out = list(store.iter_jsonl("weights", WEIGHTED_PAIRS_ARTIFACT))
    assert [r["weight"] for r in out] == [0.725, 0.4, 0.4, 0.0]
    assert set(out[0]) >= {"prompt", "chosen", "rejected", "weight"}
    assert out[0]["chosen"] == "A" and out[0]["prompt"] == "P p1"
    assert result.rows == {"weighted_pairs": 4}
    summary = json.loads((tmp_path / "weights" / "summary.json").read_text())
    assert summary["zero_weight_share"] == 0.25
    assert summary["weight_histogram"] == {"0.0": 1, "0.4": 2, "0.725": 1}
    assert summary["mean_weight"] == pytest.approx((0.725 + 0.8) / 4)
    assert summary["effective_lr_scale"] == {"mean": summary["mean_weight"], "normalized": 1.0}
    assert summary["level_warnings"] == []


def test_weights_stage_names_an_empty_and_a_trivial_level(tmp_path: Path) -> None:
    """A level whose sets are all empty is kept (not "one level missing") and named with its reason."""
    store, ctx = _setup(tmp_path, [0.2, 0.5], empty=(0.5,), trivial=(0.2,))
    weights.run(weights.plan(load(None)), ctx)
    summary = json.loads((tmp_path / "weights" / "summary.json").read_text())
    assert (summary["small_set_alpha"], summary["large_set_alpha"]) == (0.5, 0.2)
    assert len(summary["level_warnings"]) == 2
    assert summary["level_warnings"][0].startswith("alpha=0.2 is trivial")
    assert summary["level_warnings"][1].startswith("alpha=0.5 has an empty set for every test prompt")


def test_weights_stage_needs_two_levels(tmp_path: Path) -> None:
    _, ctx = _setup(tmp_path, [0.2])
    with pytest.raises(RlufError, match="exactly two miscoverage levels"):
        weights.run(weights.plan(load(None)), ctx)
