"""Experiment tracking of a pipeline run (``tracking.backend``: none, mlflow or wandb), from the driver.

One tracked run per command: ``run-all`` (named ``run-all-YYYYmmdd-HHMMSS``) and each stage command
(``rluf sft`` -> ``sft-YYYYmmdd-HHMMSS``; a dry run opens none), through
``rluf_ray.pipeline.run_tracked``. It holds the config as params, every stage's metrics once it is
complete (ran or skipped: the run describes the outputs it leaves), the SFT and DPO curves per step,
and, for run-all, the ``report/`` folder as artifacts. The flattening is pure
(``rluf_ray.tracking.metrics``); this module only talks to the tracker.

MLflow's default store is ``sqlite:///<output_dir>/mlflow.db`` with artifacts in
``<output_dir>/mlartifacts``: no server. (MLflow 3.17 refuses its old ``./mlruns`` file store unless
``MLFLOW_ALLOW_FILE_STORE`` is set; its SQLite store needs SQLAlchemy and Alembic, which the
``tracking`` extra brings.)

The Ray Train workers report too (TRL/transformers' ``report_to`` follows ``tracking.backend``): for
each Ray Train run (``sft``, and every DPO unit ``train-<arm>-seed<seed>``) the driver opens a child
run of the pipeline's run (``train_run``) and hands its workers ``report_to=["mlflow"]`` with
``MLFLOW_TRACKING_URI`` and ``MLFLOW_RUN_ID`` (transformers' ``MLflowCallback`` reattaches to that run
on rank 0 only, logs the trainer's arguments as params and every logging step's metrics, and ends it
at train end); the driver ends it again FINISHED or FAILED once the Ray Train run returns or fails.
With W&B the pipeline's run is in a group of its own name (job type ``pipeline``), and the workers
get ``report_to=["wandb"]``, ``WANDB_PROJECT`` (``tracking.experiment``), ``WANDB_RUN_GROUP`` (the
pipeline run's name), ``WANDB_JOB_TYPE=train``, a ``WANDB_RUN_ID`` chosen by the driver with
``WANDB_RESUME=allow``, and the driver's ``WANDB_MODE`` and run directory (``wandb_dir``):
``WandbCallback`` opens, on rank 0, one W&B run per Ray Train run, named like MLflow's child run, in
that group (login, unless offline, from the node's own environment). ``WANDB_MODE=offline`` writes
the driver's run under ``<WANDB_DIR or output_dir>/wandb/offline-run-*`` for a later ``wandb sync``,
and the workers' runs there too where they reach that directory (a local Ray, a shared mount).
The environment travels as the run's ``worker_runtime_env``: it is set before the worker process
imports MLflow, holds for that run's workers only, is set again for a worker group that
``FailureConfig`` restarts, and leaves the train loops unaware of tracking. The parent run still
gets every stage metric and curve from the driver (``curves.jsonl``), so nothing depends on the
workers reaching the store.

The workers keep ``report_to="none"`` when there is no tracked run (a stage run outside
``run_tracked``), with ``tracking.backend: none``, and with MLflow when ``output_dir`` is a remote URI
and ``tracking.uri`` is unset: the default store is then ``~/.cache/rluf/mlflow.db`` on the driver's
disk, which workers on other nodes cannot reach (one info line says so). A local ``output_dir`` (a
local Ray, or a shared mount with ``shared_output_dir``) or an explicit ``tracking.uri`` is
reachable: the workers report.

A worker group that ``FailureConfig`` restarts reattaches to the same child run and resumes from the
last checkpoint: the steps between that checkpoint and the failure are logged a second time (MLflow
keeps both points at those steps; the parent's curves, from the restored trainer state, do not).
The resumed workers do not log the trainer's params again (``MLFLOW_MAX_LOG_PARAMS=0``, see
``rluf_ray.training.ray_train.quiet_params_on_resume``): their fresh scratch ``output_dir`` would
differ from the logged one, and MLflow refuses a changed param.

Secrets: only config values and metrics are logged (the judge key's environment variable *name*,
never its value) and files of ``report/``, which hold no credentials. The workers get the tracking
URI and a run id, never a key: MLflow or W&B credentials must already be in the nodes' environment.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rluf_ray.config import RlufConfig
from rluf_ray.errors import RlufError
from rluf_ray.schema import CURVES_ARTIFACT
from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.store.locations import is_uri
from rluf_ray.tracking.metrics import config_params, curve_metrics, stage_metrics

log = logging.getLogger("rluf.tracking")

BATCH = 100  # MLflow's log_batch takes at most 100 params and 1000 metrics per call
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag (the UI shows the run under its parent)


@dataclass(frozen=True)
class WorkerReport:
    """How one Ray Train run's workers report.

    TrainingArguments' ``report_to`` and ``run_name``, and the environment transformers' tracking
    callback reads (the run's ``worker_runtime_env``).
    """

    report_to: str | list[str] = "none"
    run_name: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def trainer_args(self) -> dict[str, Any]:
        """The TrainingArguments overrides (``report_to``, and ``run_name`` when reporting).

        Returns:
            ``{"report_to": ...}``, with ``"run_name"`` when the run has a name.
        """
        return {"report_to": self.report_to, **({"run_name": self.run_name} if self.run_name else {})}


NO_REPORT = WorkerReport()


class Tracker(Protocol):
    """What the pipeline needs of a tracking backend."""

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log the run's params.

        Args:
            params: Param name -> string value (see ``rluf_ray.tracking.metrics.config_params``).
        """
        ...

    def log_metrics(self, points: Sequence[tuple[str, float, int]]) -> None:
        """Log metric points.

        Args:
            points: ``(name, value, step)`` triples; stage metrics have step 0.
        """
        ...

    def log_artifacts(self, local_dir: str, path: str) -> None:
        """Log the files of a local directory as artifacts.

        Args:
            local_dir: The local directory whose files are logged.
            path: Where they go in the run's artifacts (the artifact's name for W&B).
        """
        ...

    def finish(self, ok: bool) -> None:
        """End the run.

        Args:
            ok: True to end it as finished, False as failed.
        """
        ...

    def worker_run(self, name: str) -> AbstractContextManager[WorkerReport]:
        """A run for one Ray Train run's workers, open while the block runs.

        Args:
            name: The Ray Train run's name (``sft``, ``train-<arm>-seed<seed>``).

        Returns:
            A context manager yielding how the workers report.
        """
        ...


def default_mlflow_uri(output_dir: str) -> str:
    """``sqlite:///<output_dir>/mlflow.db`` (``~/.cache/rluf`` when output_dir is a remote URI).

    Args:
        output_dir: The configured output directory (a path or a URI).

    Returns:
        The SQLite tracking URI (an absolute path).
    """
    root = os.path.expanduser("~/.cache/rluf") if is_uri(output_dir) else os.path.abspath(output_dir)
    return f"sqlite:///{os.path.join(root, 'mlflow.db')}"


def worker_backend(cfg: RlufConfig) -> tuple[str, str]:
    """What the Ray Train workers report to, and why they keep ``none`` when a backend is on.

    Args:
        cfg: The run's config (``tracking`` and ``output_dir`` are read).

    Returns:
        ``(backend, why)``: ``none``, ``mlflow`` or ``wandb``, and a one-line reason when tracking is
        on but the workers keep ``none`` (MLflow's default store on the driver's disk with a remote
        ``output_dir``); ``why`` is empty otherwise.
    """
    t = cfg.tracking
    if t.backend == "mlflow" and t.uri is None and is_uri(cfg.output_dir):
        return "none", (
            f"output_dir {cfg.output_dir} is remote and tracking.uri is unset: the MLflow store "
            f"({default_mlflow_uri(cfg.output_dir)}) is on the driver's disk, out of the Train workers' "
            "reach, so they keep report_to none (set tracking.uri to a server every node reaches)"
        )
    return t.backend, ""


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
        self.experiment_id: str = exp_id
        self.run_id: str = self.client.create_run(exp_id, run_name=run_name).info.run_id
        self.uri = uri

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log the run's params, at most ``BATCH`` per call.

        Args:
            params: Param name -> string value.
        """
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for chunk in _chunks(items):
            self.client.log_batch(self.run_id, params=list(chunk))

    def log_metrics(self, points: Sequence[tuple[str, float, int]]) -> None:
        """Log metric points, all with the current time, at most 1000 per call.

        Args:
            points: ``(name, value, step)`` triples.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v, step in points]
        for chunk in _chunks(items, 1000):
            self.client.log_batch(self.run_id, metrics=list(chunk))

    def log_artifacts(self, local_dir: str, path: str) -> None:
        """Log the files of a local directory as artifacts of the run.

        Args:
            local_dir: The local directory whose files are logged.
            path: Artifact path inside the run.
        """
        self.client.log_artifacts(self.run_id, local_dir, path)

    def finish(self, ok: bool) -> None:
        """End the run FINISHED or FAILED.

        Args:
            ok: True for FINISHED, False for FAILED.
        """
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")

    @contextlib.contextmanager
    def worker_run(self, name: str) -> Iterator[WorkerReport]:
        """A child run for one Ray Train run's workers, ended FINISHED or FAILED here once the block ends.

        The child is tagged with this run as parent; ``MLflowCallback`` on rank 0 reattaches to it through
        ``MLFLOW_RUN_ID``.

        Args:
            name: The Ray Train run's name, also the child run's name.

        Yields:
            ``report_to=["mlflow"]`` with ``MLFLOW_TRACKING_URI`` and ``MLFLOW_RUN_ID`` for the workers.
        """
        tags = {PARENT_TAG: self.run_id}
        child = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        log.info("tracking: MLflow child run %s (%s) for the Train workers", child, name)
        env = {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_RUN_ID": child}
        ok = False
        try:
            yield WorkerReport(["mlflow"], name, env)
            ok = True
        finally:
            self.client.set_terminated(child, "FINISHED" if ok else "FAILED")


def wandb_dir(output_dir: str) -> str | None:
    """Where W&B writes its run files: ``WANDB_DIR`` when set, else the local ``output_dir``.

    W&B puts them in a ``wandb/`` folder inside this directory (``offline-run-*`` folders with
    ``WANDB_MODE=offline``, ready for ``wandb sync``).

    Args:
        output_dir: The configured output directory (a path or a URI).

    Returns:
        An absolute directory; None (W&B's own default, ``./wandb``) when ``WANDB_DIR`` is unset and
        ``output_dir`` is a remote URI.
    """
    if os.environ.get("WANDB_DIR"):
        return os.path.abspath(os.environ["WANDB_DIR"])
    return None if is_uri(output_dir) else os.path.abspath(output_dir)


class WandbTracker:
    """One W&B run, in a group of its own name that its Ray Train runs join.

    Needs the ``wandb`` package (the ``wandb`` extra) and, unless ``WANDB_MODE=offline``, its login.
    ``WANDB_MODE`` and every other W&B setting come from the environment, as W&B reads them.

    Args:
        project: The W&B project (``tracking.experiment``).
        run_name: The run's name, also its group's name.
        out_dir: The directory W&B writes its run files into (``wandb_dir``); None for W&B's default.
    """

    def __init__(self, project: str, run_name: str, out_dir: str | None) -> None:
        import wandb

        self.wandb = wandb
        self.project, self.run_name, self.dir = project, run_name, out_dir
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
        # create_new: the run leaves wandb.run alone, so a training callback in this process opens its own.
        self.run = wandb.init(
            project=project,
            name=run_name,
            group=run_name,
            job_type="pipeline",
            dir=out_dir,
            reinit="create_new",
        )
        self.run_id: str = self.run.id

    def log_params(self, params: Mapping[str, str]) -> None:
        """Merge params into the run's config (a changed value replaces the old one).

        Args:
            params: Param name -> string value.
        """
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, points: Sequence[tuple[str, float, int]]) -> None:
        """Log metric points, each with its own ``<name>/step`` axis.

        Args:
            points: ``(name, value, step)`` triples.
        """
        for key, value, step in points:  # stage metrics (step 0) and curves each keep their own axis
            self.run.log({key: value, f"{key}/step": step})

    def log_artifacts(self, local_dir: str, path: str) -> None:
        """Log the files of a local directory as one artifact of type ``report``.

        Args:
            local_dir: The local directory whose files are logged.
            path: The artifact's name.
        """
        art = self.wandb.Artifact(path, type="report")
        art.add_dir(local_dir)
        self.run.log_artifact(art)

    def finish(self, ok: bool) -> None:
        """End the run with exit code 0 or 1.

        Args:
            ok: True for exit code 0, False for 1.
        """
        self.run.finish(exit_code=0 if ok else 1)

    @contextlib.contextmanager
    def worker_run(self, name: str) -> Iterator[WorkerReport]:
        """The W&B run of one Ray Train run's workers: ``WandbCallback`` opens it on rank 0.

        It is named ``name`` (as MLflow's child run), has job type ``train`` and joins this run's group;
        its id is chosen here, so a worker group that ``FailureConfig`` restarts resumes the same run
        (``WANDB_RESUME=allow``). ``WANDB_MODE`` (offline) and the run files' directory go along, so
        offline workers write their run beside this one; no key or other credential does.

        Args:
            name: The Ray Train run's name, the workers' W&B run name.

        Yields:
            ``report_to=["wandb"]`` with the ``WANDB_*`` environment for the workers.
        """
        yield WorkerReport(["wandb"], name, self.worker_env(name))

    def worker_env(self, name: str) -> dict[str, str]:
        """The environment of one Ray Train run's workers (see ``worker_run``).

        Args:
            name: The Ray Train run's name.

        Returns:
            ``WANDB_PROJECT``, ``WANDB_RUN_GROUP``, ``WANDB_JOB_TYPE``, ``WANDB_RUN_ID``,
            ``WANDB_RESUME``, an empty ``WANDB_SERVICE``, and ``WANDB_MODE`` and ``WANDB_DIR`` where
            they are set here.
        """
        env = {
            "WANDB_PROJECT": self.project,
            "WANDB_RUN_GROUP": self.run_name,
            "WANDB_JOB_TYPE": "train",
            "WANDB_RUN_ID": f"{self.run_id}-{run_id_part(name)}",
            "WANDB_RESUME": "allow",
            # Empty: each worker starts its own wandb-core service, never this process's (its socket
            # is on this node, and a run of a service not its own would only be written when it ends).
            "WANDB_SERVICE": "",
        }
        if os.environ.get("WANDB_MODE"):
            env["WANDB_MODE"] = os.environ["WANDB_MODE"]
        if self.dir is not None:
            env["WANDB_DIR"] = self.dir
        return env


def run_id_part(name: str) -> str:
    """``name`` with the characters a W&B run id refuses replaced by ``-``.

    Args:
        name: A Ray Train run's name (``sft``, ``train-cfa-seed42``).

    Returns:
        Letters, digits, ``-`` and ``_`` only.
    """
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def open_tracker(cfg: RlufConfig, run_name: str) -> Tracker | None:
    """The configured tracker with a new run open (None for ``tracking.backend: none``).

    For MLflow without ``tracking.uri`` the store is ``default_mlflow_uri`` and, on a local
    ``output_dir``, artifacts go to ``<output_dir>/mlartifacts``.

    Args:
        cfg: The run's config (``tracking`` and ``output_dir`` are read).
        run_name: Name of the new run.

    Returns:
        The tracker, or ``None`` when tracking is off.

    Raises:
        RlufError: The backend's package (mlflow or wandb) is not installed.
    """
    t = cfg.tracking
    if t.backend == "none":
        return None
    if t.backend == "wandb":
        if importlib.util.find_spec("wandb") is None:
            raise RlufError(
                "tracking.backend=wandb: the wandb package is not installed (pip install -e '.[wandb]')"
            )
        wb = WandbTracker(t.experiment, run_name, wandb_dir(cfg.output_dir))
        log.info("tracking: W&B run %s (%s) in project %s", wb.run_id, run_name, t.experiment)
        return wb
    if importlib.util.find_spec("mlflow") is None:
        raise RlufError("tracking.backend=mlflow: MLflow is not installed (pip install -e '.[tracking]')")
    uri = t.uri or default_mlflow_uri(cfg.output_dir)
    artifacts = None
    if t.uri is None and not is_uri(cfg.output_dir):  # keep artifacts beside the database, not in CWD
        artifacts = Path(os.path.abspath(cfg.output_dir), "mlartifacts").as_uri()
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)
    tracker = MlflowTracker(uri, t.experiment, artifacts, run_name)
    log.info("tracking: MLflow run %s in %s", tracker.run_id, uri)
    return tracker


def stage_points(store: ArtifactStore, stage: str, artifact_dir: str) -> list[tuple[str, float, int]]:
    """A complete stage's metrics (step 0) and its per-step curves (SFT, every DPO unit).

    Args:
        store: The artifact store.
        stage: The stage name (metric names start with it).
        artifact_dir: The stage's artifact directory in the store.

    Returns:
        ``(name, value, step)`` triples; empty when the stage has no complete manifest.
    """
    man = store.manifest(artifact_dir)
    if man is None or man.status != "complete":
        return []
    points = [(k, v, 0) for k, v in stage_metrics(stage, man.metrics).items()]
    curves: list[tuple[str, str]] = []
    if stage == "sft":
        curves.append(("sft/curve", CURVES_ARTIFACT))
    if stage == "train":
        for unit in man.metrics.get("units") or []:
            if unit.get("curves"):
                curves.append((f"train/{unit['arm']}/seed-{unit['seed']}/curve", str(unit["curves"])))
    for prefix, name in curves:
        if store.exists(artifact_dir, name):
            points += curve_metrics(prefix, store.iter_jsonl(artifact_dir, name))
    return points


def log_folder(tracker: Tracker, store: ArtifactStore, artifact_dir: str) -> None:
    """Copy a store folder (local or remote) to a temporary directory and log it as artifacts.

    Nothing is logged when the folder has no files.

    Args:
        tracker: The tracker to log to.
        store: The artifact store.
        artifact_dir: The folder in the store, also the artifact path in the run.
    """
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
    """The tracked run of one pipeline run; every method is a no-op without a tracker.

    Args:
        tracker: The open tracker, or ``None`` when tracking is off.
        store: The artifact store the stages write to.
        workers: What the Ray Train workers report to (``worker_backend``).
    """

    def __init__(self, tracker: Tracker | None, store: ArtifactStore, workers: str = "none") -> None:
        self.tracker = tracker
        self.store = store
        self.workers = workers

    def stage(self, stage: str, artifact_dir: str) -> None:
        """Log a complete stage's metrics and curves.

        Args:
            stage: The stage name.
            artifact_dir: The stage's artifact directory in the store.
        """
        if self.tracker is not None:
            self.tracker.log_metrics(stage_points(self.store, stage, artifact_dir))

    def report(self, artifact_dir: str = "report") -> None:
        """Log the report folder as artifacts.

        Args:
            artifact_dir: The report's folder in the store.
        """
        if self.tracker is not None:
            log_folder(self.tracker, self.store, artifact_dir)


@contextlib.contextmanager
def train_run(run: PipelineRun | None, name: str) -> Iterator[WorkerReport]:
    """How the workers of the Ray Train run ``name`` report, valid while the block runs.

    The child run is ended with the block.

    Args:
        run: The command's tracked run, or ``None`` outside one.
        name: The Ray Train run's name (``sft``, ``train-<arm>-seed<seed>``).

    Yields:
        The workers' report settings: ``NO_REPORT`` without a pipeline run, a tracker, or a store the
        workers reach.
    """
    if run is None or run.tracker is None or run.workers == "none":
        yield NO_REPORT
        return
    with run.tracker.worker_run(name) as report:
        yield report


@contextlib.contextmanager
def pipeline_run(cfg: RlufConfig, store: ArtifactStore, command: str = "run-all") -> Iterator[PipelineRun]:
    """Open one tracked run (config as params), yield it, and close it FINISHED or FAILED.

    The run is named ``<command>-YYYYmmdd-HHMMSS`` (local time): ``run-all-...`` for run-all,
    ``sft-...`` for ``rluf sft``; without a configured backend the yielded run does nothing.

    Args:
        cfg: The run's config.
        store: The artifact store the stages write to.
        command: The command being run (``run-all`` or a stage's name).

    Yields:
        The pipeline run; it is closed FAILED when the block raises.
    """
    tracker = open_tracker(cfg, run_name=time.strftime(f"{command}-%Y%m%d-%H%M%S"))
    workers, why = worker_backend(cfg)
    if tracker is not None:
        tracker.log_params(config_params(cfg.model_dump(mode="json")))
        if why:
            log.info("tracking: %s", why)
    ok = False
    try:
        yield PipelineRun(tracker, store, workers)
        ok = True
    finally:
        if tracker is not None:
            tracker.finish(ok)
