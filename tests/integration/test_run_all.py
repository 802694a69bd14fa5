"""The whole pipeline end to end on the embedded default (shrunk): the session's tiny ``./dev demo``
(tests/support/demo_run.py: a real local Ray, MLflow tracking) read back: every stage's contract, and
with MlflowClient a metric from every stage, the curves, the report, no secret, and a child run per Ray
Train run holding what transformers' MLflowCallback logged in the workers. Then, on a copy, two more
run-alls in this process: one that runs nothing, one that re-runs from calibrate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from rluf_ray.config import load
from rluf_ray.pipeline import run_all
from rluf_ray.stages.registry import all_stages
from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.tracking.runs import PARENT_TAG
from tests.support.demo_run import DEMO_SETS, SECRET, DemoRun


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)  # the shared run (~3 min on 2 idle cores) and two in-process run-alls
def test_run_all_end_to_end_then_skips(
    tiny_demo: DemoRun, ray_idle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_demo.check_ok()
    out = tmp_path / "out"  # the reruns below change artifacts: they work on a copy
    shutil.copytree(tiny_demo.out, out, ignore=shutil.ignore_patterns("logs"))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # judge.api_key_env's value: must never be logged
    cfg = load(None, [*DEMO_SETS, f"output_dir={out}"])
    store = ArtifactStore(out)
    for spec in all_stages():
        man = store.manifest(spec.artifact_dir)
        assert man is not None and man.status == "complete" and man.files, spec.name
    # Each stage's contract holds end to end.
    assert store.read_parquet("generation", "calibration").num_rows == 16
    assert store.read_parquet("generation", "scores.parquet").column("score").null_count == 0
    alphas = set(store.read_parquet("calibration", "prediction_sets.parquet").column("alpha").to_pylist())
    assert alphas == {0.2, 0.5}
    weighted = list(store.iter_jsonl("weights", "weighted_pairs.jsonl"))
    assert weighted and all({"prompt", "chosen", "rejected", "weight"} <= set(r) for r in weighted)
    # Weight health as reported equals what the weighted pairs themselves give.
    health = json.loads((out / "weights" / "summary.json").read_text())
    ws = [float(r["weight"]) for r in weighted]
    assert health["pairs"] == len(ws)
    assert health["zero_weight_share"] == pytest.approx(sum(w == 0 for w in ws) / len(ws))
    assert health["mean_weight"] == pytest.approx(sum(ws) / len(ws))
    assert health["effective_lr_scale"]["mean"] == pytest.approx(sum(ws) / len(ws))
    assert sum(health["weight_histogram"].values()) == len(ws)
    for value, count in health["weight_histogram"].items():
        assert count == sum(abs(w - float(value)) < 1e-6 for w in ws)
    for arm in ("cfa", "dpo"):  # both arms, one seed (dpo.seed) each
        assert (out / "training" / arm / "seed-42" / "model" / "config.json").is_file()
    preds = store.read_parquet("inference", "predictions.parquet").to_pylist()
    models = {p["model"] for p in preds}
    assert models == {"sft", "cfa", "dpo"} and len(preds) == 9
    assert {(p["model"], p["seed"]) for p in preds} == {("sft", None), ("cfa", 42), ("dpo", 42)}
    report = json.loads((out / "evaluation" / "report.json").read_text())
    assert [(w["a"], w["b"]) for w in report["win_rates"]] == [("cfa", "dpo"), ("cfa", "sft"), ("dpo", "sft")]
    kept = len({p["prompt_id"] for p in preds}) - report["dropped"]["prompts"]
    for w in report["win_rates"]:
        assert w["ci_low"] <= w["win_rate"] <= w["ci_high"] and w["n"] == kept
    assert set(report["rubric"]) == models
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert set(summary["stages"]) == {s.name for s in all_stages()}
    _check_tracked_run(out, health, report)
    # A second run-all finds everything complete and runs nothing.
    assert run_all(cfg, store) == []
    # Changing a key only calibrate reads re-runs calibrate and everything downstream of it.
    cfg2 = load(None, [*DEMO_SETS, f"output_dir={out}", "conformal.accuracy_threshold=0.5"])
    assert run_all(cfg2, store) == ["calibrate", "assign-weights", "train", "infer", "evaluate"]
    client = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("rluf-ray").experiment_id])
    assert sum(PARENT_TAG not in r.data.tags for r in runs) == 3  # one per run-all
    children = sorted(r.info.run_name for r in runs if PARENT_TAG in r.data.tags)
    assert children == sorted(["sft", *TRAIN_CHILDREN, *TRAIN_CHILDREN])  # the third re-ran both units


TRAIN_CHILDREN = ("train-cfa-seed42", "train-dpo-seed42")


def _runs(client: MlflowClient, exp_id: str) -> tuple[list, dict]:
    """The pipeline (parent) runs, and the child runs by name."""
    runs = client.search_runs([exp_id])
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    return parents, {r.info.run_name: r for r in runs if PARENT_TAG in r.data.tags}


def _check_worker_runs(client: MlflowClient, out: Path, parent_id: str, children: dict) -> None:
    """One child run per Ray Train run, nested under the pipeline run, with the steps that transformers'
    MLflowCallback logged from rank 0 (equal to the unit's curves.jsonl) and the trainer's params."""
    assert sorted(children) == sorted(["sft", *TRAIN_CHILDREN])
    units = {
        "sft": out / "sft",
        **{n: out / "training" / n.split("-")[1] / "seed-42" for n in TRAIN_CHILDREN},
    }
    for name, child in children.items():
        assert child.data.tags[PARENT_TAG] == parent_id and child.info.status == "FINISHED", name
        assert child.data.params["learning_rate"] and child.data.params["run_name"] == name
        assert "train_loss" in child.data.metrics, name  # the trainer's own end-of-training log
        curve = [json.loads(line) for line in (units[name] / "curves.jsonl").open()]
        history = client.get_metric_history(child.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [
            (r["step"], pytest.approx(r["loss"])) for r in curve
        ], name
    sft_steps = sorted(m.step for m in client.get_metric_history(children["sft"].info.run_id, "loss"))
    assert sft_steps == [2, 4]  # 4 steps, a log every 2
    assert len(client.get_metric_history(children["train-cfa-seed42"].info.run_id, "loss")) == 2


def _check_tracked_run(out: Path, health: dict, report: dict) -> None:
    """The one MLflow run of the first run-all: params, a metric from every stage, curves, report/."""
    client = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    exp = client.get_experiment_by_name("rluf-ray")
    (run,), children = _runs(client, exp.experiment_id)
    assert run.info.status == "FINISHED"
    _check_worker_runs(client, out, run.info.run_id, children)
    params, metrics = run.data.params, run.data.metrics
    assert params["generation.sampling_num"] == "6" and params["judge.api_key_env"] == "OPENAI_API_KEY"
    cal = json.loads((out / "calibration" / "report.json").read_text())["per_alpha"]
    for alpha in ("0.2", "0.5"):
        assert metrics[f"calibrate/alpha_{alpha}/coverage_mean"] == pytest.approx(cal[alpha]["coverage_mean"])
        assert f"calibrate/alpha_{alpha}/set_size_mean" in metrics
    assert metrics["assign-weights/zero_weight_share"] == pytest.approx(health["zero_weight_share"])
    for value, count in health["weight_histogram"].items():
        assert metrics[f"assign-weights/weight_histogram/{value}"] == count
    for w in report["win_rates"]:
        name = f"evaluate/win_rate/{w['a']}_vs_{w['b']}"
        assert metrics[name] == pytest.approx(w["win_rate"])
        assert metrics[f"{name}/ci_low"] == pytest.approx(w["ci_low"])
        assert metrics[f"{name}/ci_high"] == pytest.approx(w["ci_high"])
    assert "sft/train_loss" in metrics and "generate/scores" in metrics and "feedback/pairs" in metrics
    assert "train/cfa/seed-42/train_loss" in metrics and "infer/prompts" in metrics
    curve = [json.loads(line) for line in (out / "training" / "cfa" / "seed-42" / "curves.jsonl").open()]
    history = client.get_metric_history(run.info.run_id, "train/cfa/seed-42/curve/loss")
    assert sorted((m.step, m.value) for m in history) == [
        (r["step"], pytest.approx(r["loss"])) for r in curve
    ]
    assert len(history) == 2  # dpo.max_steps=2, a log line every step
    assert len(client.get_metric_history(run.info.run_id, "sft/curve/loss")) == 2  # 4 steps, a log every 2
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/index.html", "report/summary.json"} <= logged
    for path in [out / "mlflow.db", *(out / "mlartifacts").rglob("*")]:
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
