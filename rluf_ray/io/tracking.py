"""Experiment tracking of a pipeline run (``tracking.backend``: none, mlflow or wandb), from the driver.

One tracked run per ``run-all``: the config as params, every stage's metrics once it is complete (ran
or skipped: the run describes the outputs it leaves), the SFT and DPO curves per step, and the
``report/`` folder as artifacts. The flattening is pure (``rluf_ray.core.tracking_metrics``); this
module only talks to the tracker.

MLflow's default store is ``sqlite:///<output_dir>/mlflow.db`` with artifacts in
``<output_dir>/mlartifacts``: no server. (MLflow 3.17 refuses its old ``./mlruns`` file store unless
``MLFLOW_ALLOW_FILE_STORE`` is set; its SQLite store needs SQLAlchemy and Alembic, which the
``tracking`` extra brings.)

Why TRL's ``report_to`` stays ``"none"`` inside the Ray Train workers: each worker would open its own
tracked run (one per worker, unit and seed), would need the tracking URI and credentials on every node
(a SQLite file on the driver's disk is not even reachable there), and a worker restarted by
``FailureConfig`` would log its steps twice. Every logged step is already in the unit's
``curves.jsonl``, which the driver reads after training and logs here, step by step, into the one run.

Secrets: only config values are logged (the judge key's environment variable *name*, never its
value) and files of ``report/``, which hold no credentials.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from rluf_ray.config import RlufConfig
from rluf_ray.core.tracking_metrics import config_params, curve_metrics, stage_metrics
from rluf_ray.errors import RlufError
from rluf_ray.io.artifacts import ArtifactStore

log = logging.getLogger("rluf.tracking")

BATCH = 100  # MLflow's log_batch takes at most 100 params and 1000 metrics per call


class Tracker(Protocol):
    """What the pipeline needs of a tracking backend."""

    def log_params(self, params: Mapping[str, str]) -> None: ...

    def log_metrics(self, points: Sequence[tuple[str, float, int]]) -> None: ...

    def log_artifacts(self, local_dir: str, path: str) -> None: ...

    def finish(self, ok: bool) -> None: ...


def default_mlflow_uri(output_dir: str) -> str:
    """``sqlite:///<output_dir>/mlflow.db`` (``~/.cache/rluf`` when output_dir is a remote URI)."""
    root = os.path.expanduser("~/.cache/rluf") if "://" in output_dir else os.path.abspath(output_dir)
    return f"sqlite:///{os.path.join(root, 'mlflow.db')}"


def _chunks(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class MlflowTracker:
    """One MLflow run through ``MlflowClient`` (no global state, no server)."""

    def __init__(self, uri: str, experiment: str, artifact_root: str | None, run_name: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment, artifact_root)
        self.run_id: str = self.client.create_run(exp_id, run_name=run_name).info.run_id
        self.uri = uri

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for chunk in _chunks(items):
            self.client.log_batch(self.run_id, params=list(chunk))

    def log_metrics(self, points: Sequence[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v, step in points]
        for chunk in _chunks(items, 1000):
            self.client.log_batch(self.run_id, metrics=list(chunk))

    def log_artifacts(self, local_dir: str, path: str) -> None:
        self.client.log_artifacts(self.run_id, local_dir, path)

    def finish(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


class WandbTracker:
    """One W&B run (needs the ``wandb`` package and its login; not a dependency of this project)."""

    def __init__(self, project: str, run_name: str, out_dir: str | None) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=project, name=run_name, dir=out_dir)

    def log_params(self, params: Mapping[str, str]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, points: Sequence[tuple[str, float, int]]) -> None:
        for key, value, step in points:  # stage metrics (step 0) and curves each keep their own axis
            self.run.log({key: value, f"{key}/step": step})

    def log_artifacts(self, local_dir: str, path: str) -> None:
        art = self.wandb.Artifact(path, type="report")
        art.add_dir(local_dir)
        self.run.log_artifact(art)

    def finish(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


def open_tracker(cfg: RlufConfig, run_name: str) -> Tracker | None:
    """The configured tracker with a new run open (None for ``tracking.backend: none``)."""
    t = cfg.tracking
    if t.backend == "none":
        return None
    if t.backend == "wandb":
        if importlib.util.find_spec("wandb") is None:
            raise RlufError("tracking.backend=wandb: the wandb package is not installed (pip install wandb)")
        local = None if "://" in cfg.output_dir else os.path.abspath(cfg.output_dir)
        return WandbTracker(t.experiment, run_name, local)
    if importlib.util.find_spec("mlflow") is None:
        raise RlufError("tracking.backend=mlflow: MLflow is not installed (pip install -e '.[tracking]')")
    uri = t.uri or default_mlflow_uri(cfg.output_dir)
    artifacts = None
    if t.uri is None and "://" not in cfg.output_dir:  # keep artifacts beside the database, not in CWD
        artifacts = Path(os.path.abspath(cfg.output_dir), "mlartifacts").as_uri()
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)
    tracker = MlflowTracker(uri, t.experiment, artifacts, run_name)
    log.info("tracking: MLflow run %s in %s", tracker.run_id, uri)
    return tracker


def stage_points(store: ArtifactStore, stage: str, artifact_dir: str) -> list[tuple[str, float, int]]:
    """A complete stage's metrics (step 0) and its per-step curves (SFT, every DPO unit)."""
    man = store.manifest(artifact_dir)
    if man is None or man.status != "complete":
        return []
    points = [(k, v, 0) for k, v in stage_metrics(stage, man.metrics).items()]
    curves: list[tuple[str, str]] = []
    if stage == "sft":
        curves.append(("sft/curve", "curves.jsonl"))
    if stage == "train":
        for unit in man.metrics.get("units") or []:
            if unit.get("curves"):
                curves.append((f"train/{unit['arm']}/seed-{unit['seed']}/curve", str(unit["curves"])))
    for prefix, name in curves:
        if store.exists(artifact_dir, name):
            points += curve_metrics(prefix, store.iter_jsonl(artifact_dir, name))
    return points


def log_folder(tracker: Tracker, store: ArtifactStore, artifact_dir: str) -> None:
    """Copy a store folder (local or remote) to a temporary directory and log it as artifacts."""
    files = store.list_files(artifact_dir)
    if not files:
        return
    with tempfile.TemporaryDirectory(prefix="rluf-tracking-") as tmp:
        for name in files:
            dest = Path(tmp, name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(store.read_bytes(artifact_dir, name))
        tracker.log_artifacts(tmp, artifact_dir)


class PipelineRun:
    """The tracked run of one pipeline run; every method is a no-op without a tracker."""

    def __init__(self, tracker: Tracker | None, store: ArtifactStore) -> None:
        self.tracker = tracker
        self.store = store

    def stage(self, stage: str, artifact_dir: str) -> None:
        """Log a complete stage's metrics and curves."""
        if self.tracker is not None:
            self.tracker.log_metrics(stage_points(self.store, stage, artifact_dir))

    def report(self, artifact_dir: str = "report") -> None:
        """Log the report folder as artifacts."""
        if self.tracker is not None:
            log_folder(self.tracker, self.store, artifact_dir)


@contextlib.contextmanager
def pipeline_run(cfg: RlufConfig, store: ArtifactStore) -> Iterator[PipelineRun]:
    """Open one tracked run (config as params), yield it, and close it FINISHED or FAILED."""
    tracker = open_tracker(cfg, run_name=time.strftime("run-all-%Y%m%d-%H%M%S"))
    if tracker is not None:
        tracker.log_params(config_params(cfg.model_dump(mode="json")))
    ok = False
    try:
        yield PipelineRun(tracker, store)
        ok = True
    finally:
        if tracker is not None:
            tracker.finish(ok)
