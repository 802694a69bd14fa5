"""Tracking of a pipeline run, with a recording tracker in place of MLflow (the real MLflow store is
read back in tests/integration/test_run_all.py)."""

from __future__ import annotations

import contextlib
import importlib.machinery
import logging
import re
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rluf_ray import cli, pipeline
from rluf_ray.config import load
from rluf_ray.errors import RlufError
from rluf_ray.stages import registry
from rluf_ray.stages.registry import StageResult
from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.tracking import runs as tracking

SECRET = "sk-test-secret-value-123"


class Recorder:
    def __init__(self) -> None:
        self.params: dict[str, str] = {}
        self.points: list[tuple[str, float, int]] = []
        self.artifacts: dict[str, list[str]] = {}
        self.finished: bool | None = None
        self.worker_runs: list[str] = []
        self.names: list[str] = []  # the runs opened (open_tracker's run_name)

    def log_params(self, params: Any) -> None:
        self.params.update(params)

    def log_metrics(self, points: Any) -> None:
        self.points += list(points)

    def log_artifacts(self, local_dir: str, path: str) -> None:
        self.artifacts[path] = sorted(p.name for p in Path(local_dir).rglob("*") if p.is_file())

    def finish(self, ok: bool) -> None:
        self.finished = ok

    @contextlib.contextmanager
    def worker_run(self, name: str):
        self.worker_runs.append(name)
        yield tracking.WorkerReport(["mlflow"], name, {"MLFLOW_RUN_ID": f"child-{name}"})


REPORTS: list[tracking.WorkerReport] = []  # what the fake sft stage's "Ray Train run" was told


def _sft(cfg, ctx):
    with tracking.train_run(ctx.tracking, "sft") as report:  # as the real stage wraps fit_and_export
        REPORTS.append(report)
    ctx.store.write_jsonl(ctx.dir, "curves.jsonl", [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}])
    return StageResult(rows={"examples": 4}, metrics={"train_loss": 2.25, "base_model": "x"})


def _generate(cfg, ctx, fail: bool = False):
    if fail:
        raise RuntimeError("killed")
    ctx.store.write_json(ctx.dir, "out.json", {})
    return StageResult(metrics={"calibration": {"distinct_mean": 3.5}})


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Recorder:
    rec = Recorder()

    def open_tracker(cfg: Any, run_name: str) -> Recorder | None:
        if cfg.tracking.backend == "none":
            return None
        rec.names.append(run_name)
        return rec

    monkeypatch.setattr(tracking, "open_tracker", open_tracker)
    monkeypatch.setitem(registry._OVERRIDES, "sft", replace(registry.get("sft"), run_fn=_sft))
    monkeypatch.setitem(registry._OVERRIDES, "generate", replace(registry.get("generate"), run_fn=_generate))
    monkeypatch.setattr(pipeline, "ORDER", ("sft", "generate"))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return rec


def test_one_tracked_run_with_params_metrics_curves_and_report(recorder: Recorder, tmp_path: Path) -> None:
    cfg = load(None, [f"output_dir={tmp_path}", "tracking.backend=mlflow"])
    pipeline.run_all(cfg, ArtifactStore(tmp_path))
    assert recorder.finished is True
    assert len(recorder.names) == 1 and re.fullmatch(r"run-all-\d{8}-\d{6}", recorder.names[0])
    assert recorder.worker_runs == ["sft"]  # run_all hands its run to the stage's Ray Train run
    assert recorder.params["tracking.backend"] == "mlflow"
    assert recorder.params["judge.api_key_env"] == "OPENAI_API_KEY"  # the name, never the value
    assert all(SECRET not in v for v in recorder.params.values())
    assert ("sft/train_loss", 2.25, 0) in recorder.points
    assert ("generate/calibration/distinct_mean", 3.5, 0) in recorder.points
    assert [p for p in recorder.points if p[0] == "sft/curve/loss"] == [
        ("sft/curve/loss", 2.5, 1), ("sft/curve/loss", 2.0, 2)
    ]  # fmt: skip
    assert {"index.html", "summary.json"} <= set(recorder.artifacts["report"])


def test_a_stage_command_opens_a_tracked_run_named_for_it(recorder: Recorder, tmp_path: Path) -> None:
    assert cli.main(["sft", "--output-dir", str(tmp_path), "--set", "tracking.backend=mlflow"]) == 0
    assert len(recorder.names) == 1 and re.fullmatch(r"sft-\d{8}-\d{6}", recorder.names[0])
    assert recorder.finished is True
    assert recorder.worker_runs == ["sft"]  # the stage's Ray Train run reports under the command's run
    assert recorder.params["tracking.backend"] == "mlflow" and recorder.params["output_dir"] == str(tmp_path)
    assert all(SECRET not in v for v in recorder.params.values())
    assert ("sft/train_loss", 2.25, 0) in recorder.points
    assert [p for p in recorder.points if p[0] == "sft/curve/loss"] == [
        ("sft/curve/loss", 2.5, 1), ("sft/curve/loss", 2.0, 2)
    ]  # fmt: skip
    assert not any(p[0].startswith("generate/") for p in recorder.points)  # only this stage's metrics
    assert recorder.artifacts == {}  # the report is run-all's
    assert cli.main(["generate", "--output-dir", str(tmp_path), "--set", "tracking.backend=mlflow"]) == 0
    assert re.fullmatch(r"generate-\d{8}-\d{6}", recorder.names[1])
    assert ("generate/calibration/distinct_mean", 3.5, 0) in recorder.points


def test_a_skipped_stage_command_still_logs_its_metrics(recorder: Recorder, tmp_path: Path) -> None:
    args = ["sft", "--output-dir", str(tmp_path), "--set", "tracking.backend=mlflow"]
    assert cli.main(args) == 0
    recorder.points.clear()
    assert cli.main(args) == 0  # complete: skipped, and its run describes the outputs it leaves
    assert len(recorder.names) == 2 and recorder.worker_runs == ["sft"]
    assert ("sft/train_loss", 2.25, 0) in recorder.points


def test_a_dry_run_opens_no_tracked_run(recorder: Recorder, tmp_path: Path) -> None:
    assert cli.main(["sft", "--output-dir", str(tmp_path)]) == 0  # the upstream, untracked
    dry = ["generate", "--dry-run", "--output-dir", str(tmp_path), "--set", "tracking.backend=mlflow"]
    assert cli.main(dry) == 0
    assert recorder.names == [] and recorder.points == [] and recorder.finished is None


def test_a_failing_stage_command_closes_its_run_failed(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = replace(registry.get("generate"), run_fn=lambda c, x: _generate(c, x, fail=True))
    monkeypatch.setitem(registry._OVERRIDES, "generate", failing)
    assert cli.main(["sft", "--output-dir", str(tmp_path)]) == 0
    with pytest.raises(RuntimeError, match="killed"):
        cli.main(["generate", "--output-dir", str(tmp_path), "--set", "tracking.backend=mlflow"])
    assert recorder.finished is False and re.fullmatch(r"generate-\d{8}-\d{6}", recorder.names[0])


def test_a_failed_pipeline_closes_the_run_failed(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = replace(registry.get("generate"), run_fn=lambda c, x: _generate(c, x, fail=True))
    monkeypatch.setitem(registry._OVERRIDES, "generate", failing)
    cfg = load(None, [f"output_dir={tmp_path}", "tracking.backend=mlflow"])
    with pytest.raises(RuntimeError, match="killed"):
        pipeline.run_all(cfg, ArtifactStore(tmp_path))
    assert recorder.finished is False
    assert ("sft/train_loss", 2.25, 0) in recorder.points  # what finished is logged


def test_backend_none_opens_nothing(tmp_path: Path) -> None:
    assert tracking.open_tracker(load(None, [f"output_dir={tmp_path}"]), "r") is None


REMOTE, SERVER = "output_dir=s3://bucket/out", "tracking.uri=http://mlflow:5000"
UNREACHABLE = "output_dir s3://bucket/out is remote and tracking.uri is unset"


@pytest.mark.parametrize(
    ("overrides", "expected", "why"),
    [
        ([], "none", ""),  # tracking.backend: none
        (["tracking.backend=mlflow"], "mlflow", ""),  # local output_dir: the default SQLite store
        (["tracking.backend=mlflow", REMOTE], "none", UNREACHABLE),  # the default store is the driver's
        (["tracking.backend=mlflow", REMOTE, SERVER], "mlflow", ""),  # an explicit store
        (["tracking.backend=mlflow", SERVER], "mlflow", ""),
        (["tracking.backend=wandb", REMOTE], "wandb", ""),  # W&B is a server
    ],
)
def test_what_the_train_workers_report_to(
    tmp_path: Path, overrides: list[str], expected: str, why: str
) -> None:
    backend, reason = tracking.worker_backend(load(None, [f"output_dir={tmp_path}", *overrides]))
    assert backend == expected
    assert reason.startswith(why) and bool(reason) == bool(why)


def test_train_run_reports_nothing_without_a_run_or_a_reachable_store(
    recorder: Recorder, tmp_path: Path
) -> None:
    store = ArtifactStore(tmp_path)
    cases = [None, tracking.PipelineRun(None, store, "mlflow"), tracking.PipelineRun(recorder, store, "none")]
    for run in cases:
        with tracking.train_run(run, "sft") as report:
            assert report == tracking.NO_REPORT
            assert report.trainer_args() == {"report_to": "none"} and report.env == {}
    assert recorder.worker_runs == []
    with tracking.train_run(tracking.PipelineRun(recorder, store, "mlflow"), "train-cfa-seed42") as report:
        assert report.trainer_args() == {"report_to": ["mlflow"], "run_name": "train-cfa-seed42"}
    assert recorder.worker_runs == ["train-cfa-seed42"]


def test_remote_output_dir_without_uri_keeps_workers_off_in_one_line(
    recorder: Recorder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load(None, ["output_dir=s3://bucket/out", "tracking.backend=mlflow"])
    with (
        caplog.at_level(logging.INFO, "rluf.tracking"),
        tracking.pipeline_run(cfg, ArtifactStore(tmp_path)) as run,
    ):
        assert run.workers == "none"
        with tracking.train_run(run, "sft") as report:
            assert report == tracking.NO_REPORT
    lines = [r.getMessage() for r in caplog.records if "report_to none" in r.getMessage()]
    assert len(lines) == 1 and "tracking.uri is unset" in lines[0]
    assert recorder.worker_runs == [] and recorder.finished is True


def test_default_mlflow_uri_is_a_local_sqlite_file(tmp_path: Path) -> None:
    assert tracking.default_mlflow_uri(str(tmp_path)) == f"sqlite:///{tmp_path}/mlflow.db"
    assert tracking.default_mlflow_uri("s3://bucket/out").endswith("/.cache/rluf/mlflow.db")


def test_wandb_missing_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError; find_spec -> ValueError
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    cfg = load(None, [f"output_dir={tmp_path}", "tracking.backend=wandb"])
    with pytest.raises(RlufError, match=r"^tracking.backend=wandb: the wandb package is not installed"):
        tracking.open_tracker(cfg, "r")


def test_wandb_adapter_with_a_stand_in_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)  # the node's login: never handed on

    class Run:
        id = "abc123"
        config = types.SimpleNamespace(update=lambda d, allow_val_change: calls.append(("config", d)))

        def log(self, d: dict) -> None:
            calls.append(("log", d))

        def log_artifact(self, art: Any) -> None:
            calls.append(("artifact", art.name))

        def finish(self, exit_code: int) -> None:
            calls.append(("finish", exit_code))

    class Artifact:
        def __init__(self, name: str, type: str) -> None:
            self.name = name

        def add_dir(self, path: str) -> None:
            calls.append(("add_dir", Path(path).is_dir()))

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = lambda **kw: calls.append(("init", kw)) or Run()  # type: ignore[attr-defined]
    fake.Artifact = Artifact  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = load(None, [f"output_dir={tmp_path}", "tracking.backend=wandb", "tracking.experiment=proj"])
    t = tracking.open_tracker(cfg, "r")
    assert t is not None
    t.log_params({"a": "1"})
    t.log_metrics([("sft/curve/loss", 2.0, 3)])
    t.log_artifacts(str(tmp_path), "report")
    with t.worker_run("train-cfa-seed42") as report:
        assert report.trainer_args() == {"report_to": ["wandb"], "run_name": "train-cfa-seed42"}
        assert report.env == {
            "WANDB_PROJECT": "proj", "WANDB_RUN_GROUP": "r", "WANDB_JOB_TYPE": "train",
            "WANDB_RUN_ID": "abc123-train-cfa-seed42", "WANDB_RESUME": "allow", "WANDB_SERVICE": "", "WANDB_MODE": "offline",
            "WANDB_DIR": str(tmp_path),
        }  # fmt: skip
    t.finish(True)
    init = {
        "project": "proj",
        "name": "r",
        "group": "r",
        "job_type": "pipeline",
        "dir": str(tmp_path),
        "reinit": "create_new",
    }
    assert calls == [("init", init), ("config", {"a": "1"}), ("log", {"sft/curve/loss": 2.0, "sft/curve/loss/step": 3}),
                     ("add_dir", True), ("artifact", "report"), ("finish", 0)]  # fmt: skip


def test_wandb_dir_is_wandb_dir_or_the_local_output_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_DIR", raising=False)
    assert tracking.wandb_dir(str(tmp_path)) == str(tmp_path)
    assert tracking.wandb_dir("s3://bucket/out") is None  # W&B's own default, ./wandb
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    assert tracking.wandb_dir("s3://bucket/out") == str(tmp_path / "wb")


@pytest.mark.slow  # MLflow creates its SQLite tables with Alembic migrations: 20-50 s on 2 cores
def test_mlflow_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real MLflow backend in its default local store: one FINISHED run per run-all, read back."""
    from mlflow import MlflowClient

    monkeypatch.setitem(registry._OVERRIDES, "sft", replace(registry.get("sft"), run_fn=_sft))
    monkeypatch.setattr(pipeline, "ORDER", ("sft",))
    cfg = load(None, [f"output_dir={tmp_path}", "tracking.backend=mlflow"])
    store = ArtifactStore(tmp_path)
    REPORTS.clear()
    pipeline.run_all(cfg, store)
    pipeline.run_all(cfg, store)  # everything complete: a second run with the same metrics
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_experiment_by_name("rluf-ray").experiment_id
    runs = client.search_runs([exp_id], order_by=["attributes.start_time ASC"])
    assert {r.info.status for r in runs} == {"FINISHED"}
    parents = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    (child,) = [r for r in runs if tracking.PARENT_TAG in r.data.tags]  # sft ran once, in the first run-all
    assert len(parents) == 2 and child.data.tags[tracking.PARENT_TAG] == parents[0].info.run_id
    assert child.info.run_name == "sft" and child.info.experiment_id == exp_id
    (report,) = REPORTS  # what the workers would get: the child run, in the same store
    assert report.env == {"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": child.info.run_id}
    assert report.trainer_args() == {"report_to": ["mlflow"], "run_name": "sft"}
    run = parents[0]
    assert run.data.metrics["sft/train_loss"] == 2.25
    assert run.data.params["output_dir"] == str(tmp_path)
    history = client.get_metric_history(run.info.run_id, "sft/curve/loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 2.5), (2, 2.0)]
    assert {"report/index.html", "report/summary.json"} <= {
        f.path for f in client.list_artifacts(run.info.run_id, "report")
    }
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the store, not in the working directory
    parent = tracking.open_tracker(cfg, "failing")
    assert isinstance(parent, tracking.MlflowTracker)
    with pytest.raises(RuntimeError, match="worker died"), parent.worker_run("train-cfa-seed42") as failed:
        raise RuntimeError("worker died")  # a Ray Train run that fails ends its child run FAILED
    (dead,) = client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent.run_id}'")
    assert dead.info.status == "FAILED" and dead.info.run_id == failed.env["MLFLOW_RUN_ID"]
