"""evaluate: three arms (sft, cfa, dpo; two seeds), pairwise win rates and rubric means with intervals."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rluf_ray.config import load
from rluf_ray.data.splits import load_split, split_plan
from rluf_ray.errors import RlufError
from rluf_ray.evaluation.intervals import bootstrap_mean
from rluf_ray.judge import api as judge_api
from rluf_ray.judge.keys import comparison_key
from rluf_ray.schema import EVAL_COMPARISON_SCHEMA, EVAL_SCORE_SCHEMA, PREDICTION_SCHEMA, PREDICTIONS_ARTIFACT
from rluf_ray.stages import evaluate
from rluf_ray.stages.registry import StageContext
from rluf_ray.store.artifacts import ArtifactStore

N = 5
PAIRS = [("cfa", "dpo"), ("cfa", "sft"), ("dpo", "sft")]


def _predictions(cfg, store: ArtifactStore, n: int = N, models=("sft", "cfa", "dpo")) -> list[dict]:
    """cfa copies the reference (best possible); dpo keeps its first half; sft says something unrelated.
    On the first prompt dpo seed 2 equals cfa seed 2 (a tie without a judge call)."""
    rows = []
    for i, src in enumerate(load_split(split_plan(cfg.data, "eval"))[:n]):
        ref = src["reference"]
        words = ref.split()
        text = {"cfa": ref, "dpo": " ".join(words[: max(1, len(words) // 2)]), "sft": "The weather was fine."}
        for model in models:
            for seed in [None] if model == "sft" else [1, 2]:
                pred = text[model]
                if model == "dpo" and seed == 2 and i == 0:
                    pred = ref + "  "
                rows.append({"prompt_id": src["prompt_id"], "model": model, "seed": seed, "prompt": "p",
                             "reference": ref, "prediction": pred})  # fmt: skip
    store.write_parquet(
        "inference", PREDICTIONS_ARTIFACT, pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)
    )
    return rows


def _recompute(comparisons: list[dict], dropped: set[str]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for c in comparisons:
        if c["prompt_id"] not in dropped:
            out[(c["a"], c["b"])].append(c["outcome"])
    return out


def test_evaluate_three_arms_two_seeds(tmp_path: Path) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    store = ArtifactStore(tmp_path)
    preds = _predictions(cfg, store)
    result = evaluate.run(evaluate.plan(cfg), StageContext(name="evaluate", store=store))
    report = json.loads((tmp_path / "evaluation" / "report.json").read_text())
    assert set(report) >= {"win_rates", "rubric", "dropped", "judge"}
    assert [(w["a"], w["b"]) for w in report["win_rates"]] == PAIRS
    comparisons = store.read_parquet("evaluation", "comparisons.parquet")
    assert comparisons.schema.equals(EVAL_COMPARISON_SCHEMA)
    comparisons = comparisons.to_pylist()
    assert len(comparisons) == 3 * 2 * N  # 3 pairs x 2 seeds x N prompts
    assert report["dropped"]["prompts"] == 0 and report["dropped"]["of"] == N
    recomputed = _recompute(comparisons, set())
    for w in report["win_rates"]:
        vals = recomputed[(w["a"], w["b"])]
        assert w["win_rate"] == pytest.approx(sum(vals) / len(vals))
        assert (w["wins"], w["ties"], w["losses"]) == (vals.count(1.0), vals.count(0.5), vals.count(0.0))
        assert w["n"] == N and w["seeds"] == 2 and w["seed_values"] == [1, 2]
        assert w["ci_low"] <= w["win_rate"] <= w["ci_high"]
    # The reference copy beats the unrelated answer on every item whichever side it was shown on;
    # the identical pair (cfa seed 2 vs dpo seed 2, first prompt) is a tie.
    by = {(w["a"], w["b"]): w for w in report["win_rates"]}
    assert by[("cfa", "sft")]["win_rate"] == 1.0 and by[("dpo", "sft")]["win_rate"] == 1.0
    assert by[("cfa", "dpo")]["ties"] == 1
    first_pid = preds[0]["prompt_id"]
    tie = [
        c for c in comparisons if (c["a"], c["b"], c["seed"], c["prompt_id"]) == ("cfa", "dpo", 2, first_pid)
    ]
    assert tie[0]["outcome"] == 0.5
    firsts = {(c["a"], c["first"]) for c in comparisons if c["b"] == "sft"}
    assert {("cfa", "cfa"), ("cfa", "sft")} <= firsts or {
        ("dpo", "dpo"),
        ("dpo", "sft"),
    } <= firsts  # both orders
    # Rubric: per model over seeds x prompts, the interval from bootstrap_mean with evaluation.seed.
    scores = store.read_parquet("evaluation", "scores.parquet")
    assert scores.schema.equals(EVAL_SCORE_SCHEMA)
    scores = scores.to_pylist()
    assert len(scores) == N * (1 + 2 + 2) and {s["seed"] for s in scores if s["model"] == "sft"} == {None}
    axes = cfg.evaluation.axes
    for model in ("cfa", "dpo", "sft"):
        rows = sorted(
            (r for r in scores if r["model"] == model), key=lambda r: (r["seed"] or 0, r["prompt_id"])
        )
        seeds = 1 if model == "sft" else 2
        overall = np.array([sum(r[a] for a in axes) / len(axes) for r in rows]).reshape(seeds, N)
        iv = bootstrap_mean(overall, n_boot=evaluate.N_BOOT, level=0.95, seed=cfg.evaluation.seed)
        got = report["rubric"][model]
        assert got["n"] == N and got["overall"]["mean"] == pytest.approx(iv.estimate)
        assert (got["overall"]["ci_low"], got["overall"]["ci_high"]) == pytest.approx((iv.low, iv.high))
        acc = np.mean([r["accuracy"] for r in rows])
        assert got["axes"]["accuracy"]["mean"] == pytest.approx(acc)
    assert report["rubric"]["cfa"]["overall"]["mean"] > report["rubric"]["sft"]["overall"]["mean"]
    assert result.rows == {"comparisons": 30, "scored": 25, "missing": 0}
    assert [(w["a"], w["b"]) for w in result.metrics["win_rates"]] == PAIRS
    assert set(result.metrics["rubric_overall"]) == {"cfa", "dpo", "sft"}
    md = (tmp_path / "evaluation" / "report.md").read_text()
    assert "| cfa | sft | 1.000 |" in md and "| dpo | " in md


def test_a_missing_judgement_drops_the_prompt_for_all_arms(tmp_path: Path, monkeypatch) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    store = ArtifactStore(tmp_path)
    preds = _predictions(cfg, store)
    lost = preds[-1]["prompt_id"]  # the last prompt loses one dpo-vs-sft judgement
    real = judge_api.judge

    def flaky(section, reqs, ctx, use_batch_api):
        results, report = real(section, reqs, ctx, use_batch_api=use_batch_api)
        for r in results:
            if r.key == comparison_key("dpo", "sft", 1, lost):
                r.value, r.error = None, "timeout: read"
        return results, report

    monkeypatch.setattr(judge_api, "judge", flaky)
    result = evaluate.run(evaluate.plan(cfg), StageContext(name="evaluate", store=store))
    report = json.loads((tmp_path / "evaluation" / "report.json").read_text())
    assert report["dropped"]["prompt_ids"] == {lost: ["timeout"]}
    assert report["dropped"]["prompts"] == 1 and report["dropped"]["by_reason"] == {"timeout": 1}
    comparisons = store.read_parquet("evaluation", "comparisons.parquet").to_pylist()
    failed = [c for c in comparisons if c["error"] is not None]
    assert len(failed) == 1 and failed[0]["outcome"] is None
    recomputed = _recompute(comparisons, {lost})
    for w in report["win_rates"]:  # every comparison loses the prompt, not only dpo-sft
        vals = recomputed[(w["a"], w["b"])]
        assert w["n"] == N - 1 and len(vals) == 2 * (N - 1)
        assert w["win_rate"] == pytest.approx(sum(vals) / len(vals))
    assert all(r["n"] == N - 1 for r in report["rubric"].values())
    assert result.rows["missing"] == 1


def test_two_arms_and_unknown_axis(tmp_path: Path) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    store = ArtifactStore(tmp_path)
    _predictions(cfg, store, n=3, models=("sft", "dpo"))
    evaluate.run(evaluate.plan(cfg), StageContext(name="evaluate", store=store))
    report = json.loads((tmp_path / "evaluation" / "report.json").read_text())
    assert [(w["a"], w["b"]) for w in report["win_rates"]] == [("dpo", "sft")]
    assert set(report["rubric"]) == {"dpo", "sft"}
    bad = load(None, [f"output_dir={tmp_path}", "evaluation.axes=[accuracy, style]"])
    with pytest.raises(RlufError, match="style"):
        evaluate.run(evaluate.plan(bad), StageContext(name="evaluate", store=store))


def test_one_model_is_refused(tmp_path: Path) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    store = ArtifactStore(tmp_path)
    _predictions(cfg, store, n=2, models=("sft",))
    with pytest.raises(RlufError, match="two models"):
        evaluate.run(evaluate.plan(cfg), StageContext(name="evaluate", store=store))
