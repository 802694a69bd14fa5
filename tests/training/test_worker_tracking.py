"""The SFT Train workers report to a child MLflow run of the pipeline's run (transformers'
MLflowCallback, rank 0) and a worker group that FailureConfig restarts reattaches to it cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from rluf_ray.config import load
from rluf_ray.pipeline import run_stage
from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.tracking.runs import PARENT_TAG, pipeline_run


def _worker_logs() -> str:
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    return "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("worker-*")) if p.is_file())


@pytest.mark.ray
@pytest.mark.slow
def test_sft_workers_log_to_a_child_run_across_a_restart(ray_idle, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    out = tmp_path / "out"
    cfg = load(None, [
        f"output_dir={out}", "data.sft_size=16", "sft.max_steps=4", "sft.save_steps=2", "sft.logging_steps=1",
        "sft.max_length=128", "sft.per_device_batch_size=4", "sft.max_failures=1", "resources.train_workers=1",
        "resources.cpus_per_train_worker=1", "tracking.backend=mlflow",
    ])  # fmt: skip
    store = ArtifactStore(cfg.output_dir)
    with pipeline_run(cfg, store) as run:  # fails once at step 3, resumes from the step-2 checkpoint
        assert run_stage(cfg, store, "sft", options={"fail_at_step": 3}, tracking=run) is not None
    client = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("rluf-ray").experiment_id])
    (parent,) = [r for r in runs if PARENT_TAG not in r.data.tags]
    (child,) = [r for r in runs if PARENT_TAG in r.data.tags]
    assert child.info.run_name == "sft" and child.data.tags[PARENT_TAG] == parent.info.run_id
    assert child.info.status == "FINISHED" and parent.info.status == "FINISHED"
    history = client.get_metric_history(child.info.run_id, "loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]  # both attempts' steps in the one run
    assert child.data.metrics["train_loss"] > 0 and child.data.params["run_name"] == "sft"
    # The restarted worker logged no params again (its scratch output_dir differs: MLflow refuses).
    assert "Changing param values is not allowed" not in _worker_logs()


@pytest.mark.ray
@pytest.mark.slow
def test_sft_workers_log_to_a_wandb_run_in_the_commands_group(
    ray_idle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """W&B offline: rank 0's WandbCallback opens a run named ``sft`` in the command's group, in the
    driver's run directory; nothing but the environment the driver hands over tells it where."""
    from tests.support.wandb_offline import offline_runs

    monkeypatch.setenv("WANDB_MODE", "offline")  # set after the session Ray started: it reaches the
    monkeypatch.setenv("WANDB_SILENT", "true")  # workers only through the run's worker_runtime_env
    monkeypatch.delenv("WANDB_DIR", raising=False)
    out = tmp_path / "out"
    cfg = load(None, [
        f"output_dir={out}", "data.sft_size=16", "sft.max_steps=2", "sft.logging_steps=1", "sft.max_length=128",
        "sft.per_device_batch_size=4", "resources.train_workers=1", "resources.cpus_per_train_worker=1",
        "tracking.backend=wandb",
    ])  # fmt: skip
    store = ArtifactStore(cfg.output_dir)
    with pipeline_run(cfg, store, "sft") as run:
        assert run_stage(cfg, store, "sft", tracking=run) is not None
        run.stage("sft", "sft")
    runs = {r.job_type: r for r in offline_runs(out)}
    parent, child = runs["pipeline"], runs["train"]
    assert len(runs) == 2 and child.name == "sft" and child.group == parent.name == parent.group
    assert child.id == f"{parent.id}-sft" and child.project == parent.project == "rluf-ray"
    assert child.metric("train/global_step")[:2] == [1, 2] and len(child.metric("train/loss")) == 2
    assert child.config["run_name"] == "sft"
    assert parent.metric("sft/curve/loss") == child.metric("train/loss")  # the driver's curve, the same steps
