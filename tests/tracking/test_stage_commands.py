"""Each stage command is tracked like run-all, with the real clients: MLflow's local store, and W&B
offline (``WANDB_MODE=offline``: the runs' files are read back with ``tests.support.wandb_offline``).

The stage is a stand-in (no model, no Ray) that writes what the real SFT stage leaves (metrics,
``curves.jsonl``) and opens its Ray Train run's tracking as the real one does (``train_run``); for W&B
its "worker" is a subprocess with the environment Ray Train's workers get, running transformers'
``WandbCallback`` as rank 0 of the trainer does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from rluf_ray import cli
from rluf_ray.stages import registry
from rluf_ray.stages.registry import StageResult
from rluf_ray.tracking import runs as tracking
from tests.support.wandb_offline import offline_runs

SECRET = "sk-stage-command-secret-456"
STAGE_RUN = re.compile(r"sft-\d{8}-\d{6}")

# What a Ray Train worker's trainer does with report_to=["wandb"]: WandbCallback on rank 0 opens the
# run at train begin and logs each logging step; the process ends without wandb.finish (W&B's exit hook).
WORKER = """
import sys
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import WandbCallback

args = TrainingArguments(output_dir=sys.argv[1], report_to=["wandb"], run_name=sys.argv[2], use_cpu=True)
state, control, callback = TrainerState(), TrainerControl(), WandbCallback()
callback.on_train_begin(args, state, control, model=None)
for step, loss in ((1, 2.5), (2, 2.0)):
    state.global_step = step
    callback.on_log(args, state, control, logs={"loss": loss})
"""


def _sft(cfg, ctx, worker: bool = False):
    with tracking.train_run(ctx.tracking, "sft") as report:
        if worker and report.env:
            env = {**os.environ, **report.env}
            with tempfile.TemporaryDirectory(prefix="rluf-worker-") as scratch:  # the worker's HF output_dir
                subprocess.run(
                    [sys.executable, "-c", WORKER, scratch, report.run_name or ""], env=env, check=True
                )
    ctx.store.write_jsonl(ctx.dir, "curves.jsonl", [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}])
    return StageResult(rows={"examples": 4}, metrics={"train_loss": 2.25, "base_model": "x"})


@pytest.fixture
def fake_sft(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._OVERRIDES, "sft", replace(registry.get("sft"), run_fn=_sft))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


@pytest.fixture
def wandb_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)  # a login in the environment is never written out
    monkeypatch.delenv("WANDB_DIR", raising=False)
    for name in (
        "WANDB_PROJECT",
        "WANDB_RUN_GROUP",
        "WANDB_RUN_ID",
        "WANDB_JOB_TYPE",
        "WANDB_RESUME",
        "WANDB_SERVICE",
    ):
        monkeypatch.delenv(name, raising=False)


def _no_secret_under(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.slow  # MLflow creates its SQLite tables with Alembic migrations: 20-50 s on 2 cores
def test_a_stage_command_writes_an_mlflow_run_named_for_it(fake_sft: None, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    out = tmp_path / "out"
    assert cli.main(["sft", "--output-dir", str(out), "--set", "tracking.backend=mlflow"]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    exp_id = client.get_experiment_by_name("rluf-ray").experiment_id
    runs = client.search_runs([exp_id])
    (parent,) = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    (child,) = [r for r in runs if tracking.PARENT_TAG in r.data.tags]
    assert STAGE_RUN.fullmatch(parent.info.run_name) and parent.info.status == "FINISHED"
    assert parent.data.metrics["sft/train_loss"] == 2.25
    assert parent.data.params["tracking.backend"] == "mlflow"
    history = client.get_metric_history(parent.info.run_id, "sft/curve/loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 2.5), (2, 2.0)]
    assert child.info.run_name == "sft" and child.data.tags[tracking.PARENT_TAG] == parent.info.run_id
    assert child.info.status == "FINISHED"
    _no_secret_under(out)


def test_a_stage_command_writes_an_offline_wandb_run_with_its_metrics(
    fake_sft: None, wandb_offline: None, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [
        "sft",
        "--output-dir",
        str(out),
        "--set",
        "tracking.backend=wandb",
        "--set",
        "tracking.experiment=proj",
    ]
    assert cli.main(args) == 0
    (run,) = offline_runs(out)  # W&B's files are under <output_dir>/wandb when WANDB_DIR is unset
    assert STAGE_RUN.fullmatch(run.name) and run.group == run.name and run.job_type == "pipeline"
    assert run.project == "proj" and run.exit_code == 0
    assert run.config["tracking.backend"] == "wandb" and run.config["output_dir"] == str(out)
    assert run.config["judge.api_key_env"] == "OPENAI_API_KEY"  # the name, never the value
    assert run.metric("sft/train_loss") == [2.25]  # the same names and values as MLflow's
    assert run.metric("sft/curve/loss") == [2.5, 2.0] and run.metric("sft/curve/loss/step") == [1, 2]
    assert not (out / "mlflow.db").exists()
    _no_secret_under(out / "wandb")


@pytest.mark.slow  # a subprocess imports transformers and opens a second W&B run (~15 s on 2 cores)
def test_the_train_workers_wandb_run_joins_the_stage_commands_group(
    wandb_offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        registry._OVERRIDES, "sft", replace(registry.get("sft"), run_fn=lambda c, x: _sft(c, x, True))
    )
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))  # WANDB_DIR wins over output_dir
    out = tmp_path / "out"
    assert cli.main(["sft", "--output-dir", str(out), "--set", "tracking.backend=wandb"]) == 0
    assert not (out / "wandb").exists()
    runs = {r.job_type: r for r in offline_runs(tmp_path / "wb")}
    parent, child = runs["pipeline"], runs["train"]
    assert len(runs) == 2 and STAGE_RUN.fullmatch(parent.name)
    assert child.name == "sft" and child.group == parent.name == parent.group  # MLflow's child run name
    assert child.project == parent.project == "rluf-ray" and child.id == f"{parent.id}-sft"
    assert child.metric("train/loss") == [2.5, 2.0] and child.metric("train/global_step") == [1, 2]
    assert child.config["run_name"] == "sft" and child.config["report_to"] == ["wandb"]
    assert child.exit_code == 0 and parent.metric("sft/train_loss") == [2.25] and parent.exit_code == 0
    _no_secret_under(tmp_path / "wb")
