"""Shared Ray Train wiring for the HF/TRL trainers (SFT and weighted DPO).

- ``TrainScaling`` (plain data in a stage's plan; ``ray_config()`` builds Ray's ScalingConfig) /
  ``run_config``: TorchTrainer arguments from the config (gloo on CPU, NCCL on GPU:
  Ray's TorchConfig picks the backend from ``use_gpu``; the HF args get the matching ``ddp_backend``).
- Checkpoints: the loops use Ray's ``RayTrainReportCallback``: after each HF ``save`` every rank
  reports its latest HF checkpoint (model, optimiser, scheduler, RNG, trainer state; sharded state
  included) as ``checkpoint/`` of a Ray Train checkpoint in ``storage_path/<run name>/``: the
  artifact store's ``<stage>/<unit>/checkpoints`` (a path, or a path in the store's S3 filesystem);
  ``scratch_dir`` is each worker's HF ``output_dir``, removed when the loop ends. With FSDP,
  ``fsdp_state_dict: sharded`` makes each rank write its own shard (torch DCP) into every checkpoint;
  ``report_final`` switches to a full state dict for the final model only.
- ``resume_checkpoint``: inside the loop, the HF checkpoint directory of the latest Ray Train
  checkpoint (after a worker failure with ``FailureConfig``, or a rerun with the same run name).
- Tracking: ``report_to`` follows ``tracking.backend``. The stage hands ``fit_and_export`` the run's
  ``WorkerReport`` (``rluf_ray.tracking.runs.train_run``: ``report_to``, ``run_name`` and the
  environment transformers' tracking callback reads); it goes into the trainer args and the run's
  ``worker_runtime_env`` (beside ``WORKER_ENV``). Without one the workers report to nothing. The
  loops train inside ``worker_tracking_ends``, which ends rank 0's W&B run (W&B only).
- ``report_final``: rank 0 saves the final model + tokenizer (``save_pretrained``) and the curves
  as the last Ray Train checkpoint; the driver copies it into the store with ``export_final``.
- Models reach the workers as locations (``ArtifactStore.uri``); the loops open them with
  ``rluf_ray.store.model_cache.local_model`` (a per-node copy when the store is remote).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from rluf_ray.config import LoraConfig, ResourcesConfig, operational, plan_type
from rluf_ray.runtime.faults import FaultSpec, fault_spec
from rluf_ray.schema import CURVES_ARTIFACT, MODEL_DIR
from rluf_ray.tracking.runs import NO_REPORT, WorkerReport

if TYPE_CHECKING:
    from rluf_ray.config import TrainingSection
    from rluf_ray.store.artifacts import ArtifactStore

HF_CHECKPOINT = "checkpoint"  # the HF Trainer checkpoint inside a Ray Train checkpoint
# The last Ray Train checkpoint holds the final model (MODEL_DIR) and curves (CURVES_ARTIFACT) under the
# names the store keeps them by.
CHECKPOINTS = "checkpoints"  # a run's Ray Train checkpoints in the store, removed once exported


def scaling_config(
    workers: int, use_gpu: bool, cpus_per_worker: float, custom: Mapping[str, float] | None = None
) -> Any:
    """Ray Train ScalingConfig: ``workers`` workers, each with its CPUs (and one GPU when ``use_gpu``)
    and the ``custom`` Ray resources (``resources.custom_resources``) that pin them to some nodes.

    Args:
        workers: The number of Train workers.
        use_gpu: Whether each worker holds one GPU.
        cpus_per_worker: The CPUs each worker reserves.
        custom: Custom Ray resources each worker reserves (name to amount), or None for none.

    Returns:
        A ``ray.train.ScalingConfig``.
    """
    from ray.train import ScalingConfig

    resources: dict[str, float] = {**(custom or {}), "CPU": float(cpus_per_worker)}
    if use_gpu:
        resources["GPU"] = 1.0
    return ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources)


@plan_type
class TrainScaling:
    """The Ray Train workers of a run: how many and what each holds (plain data; see ``ray_config``).

    ``workers`` sets the global batch (workers x per-device batch x accumulation), ``use_gpu`` the
    device (CPU and GPU numerics differ) and ``cpus_per_worker`` torch's thread count (Ray's
    OMP_NUM_THREADS): all count; custom resources only place the work.
    """

    workers: int
    use_gpu: bool
    cpus_per_worker: float
    custom_resources: tuple[tuple[str, float], ...] = operational(default=())  # sorted by name

    def ray_config(self) -> Any:
        """Ray Train's ScalingConfig for these workers (imports Ray).

        Returns:
            A ``ray.train.ScalingConfig``.
        """
        return scaling_config(self.workers, self.use_gpu, self.cpus_per_worker, dict(self.custom_resources))


def train_scaling(resources: ResourcesConfig) -> TrainScaling:
    """The Train workers the ``resources`` section asks for.

    Args:
        resources: The config's ``resources`` section.

    Returns:
        The workers' plan.
    """
    r = resources
    return TrainScaling(workers=r.train_workers, use_gpu=r.use_gpu, cpus_per_worker=r.cpus_per_train_worker,
                        custom_resources=tuple(sorted(r.custom_resources.items())))  # fmt: skip


@dataclass(frozen=True)
class TrainRun:
    """One Ray Train run: its name (a rerun of the same name resumes), workers and failure budget."""

    name: str
    scaling: TrainScaling
    max_failures: int


@plan_type
class LoraPlan:
    """peft ``LoraConfig`` arguments (``kwargs()``)."""

    r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: tuple[str, ...]

    def kwargs(self) -> dict[str, Any]:
        """The ``LoraConfig`` keyword arguments.

        Returns:
            A dict of argument name to value.
        """
        return {"r": self.r, "lora_alpha": self.lora_alpha, "lora_dropout": self.lora_dropout,
                "target_modules": list(self.target_modules)}  # fmt: skip


def lora_plan(lora: LoraConfig) -> LoraPlan | None:
    """The LoRA adapters a training section asks for.

    Args:
        lora: The section's ``lora`` settings.

    Returns:
        The adapters' plan, or None when LoRA is off.
    """
    if not lora.enabled:
        return None
    return LoraPlan(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                    target_modules=tuple(lora.target_modules))  # fmt: skip


def hf_distributed_args(use_gpu: bool) -> dict[str, Any]:
    """HF TrainingArguments that agree with the Ray Train process group (gloo on CPU, NCCL on GPU).

    Args:
        use_gpu: Whether the Train workers hold GPUs.

    Returns:
        ``use_cpu`` and ``ddp_backend`` (``"nccl"`` or ``"gloo"``) as TrainingArguments kwargs.
    """
    return {"use_cpu": not use_gpu, "ddp_backend": "nccl" if use_gpu else "gloo"}


FSDP_STATE_DICT_TYPES = {"full": "FULL_STATE_DICT", "sharded": "SHARDED_STATE_DICT"}
"""``fsdp_state_dict`` -> the FSDP state dict type transformers' ``fsdp_config`` takes for checkpoints."""

FIXED_TRAINER_ARGS: dict[str, Any] = {
    "save_strategy": "steps",
    "save_total_limit": 2,
    "dataset_num_proc": None,
    "disable_tqdm": True,
}
"""TrainingArguments every run takes as they are (checkpoint retention, no progress bars)."""


@plan_type
class TrainerArgs:
    """The TrainingArguments SFT and DPO share, from an ``sft``/``dpo`` section (``kwargs()``: HF names)."""

    learning_rate: float
    num_train_epochs: float
    max_steps: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    bf16: bool
    gradient_checkpointing: bool
    logging_steps: int
    seed: int
    use_cpu: bool
    ddp_backend: str
    fsdp: str = ""
    deepspeed: str | None = None
    save_steps: int = operational()
    fsdp_state_dict_type: str | None = operational(default=None)  # FSDP checkpoints: sharded or full

    def kwargs(self) -> dict[str, Any]:
        """The arguments by their HF names (FSDP and DeepSpeed only when set).

        Returns:
            TrainingArguments keyword arguments.
        """
        args: dict[str, Any] = {
            "learning_rate": self.learning_rate,
            "num_train_epochs": self.num_train_epochs,
            "max_steps": self.max_steps,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "bf16": self.bf16,
            "gradient_checkpointing": self.gradient_checkpointing,
            "save_steps": self.save_steps,
            "logging_steps": self.logging_steps,
            "seed": self.seed,
            "use_cpu": self.use_cpu,
            "ddp_backend": self.ddp_backend,
            **FIXED_TRAINER_ARGS,
        }
        if self.fsdp:
            args["fsdp"] = self.fsdp
            args["fsdp_config"] = {"state_dict_type": self.fsdp_state_dict_type}
        if self.deepspeed:
            args["deepspeed"] = self.deepspeed
        return args


def common_trainer_args(section: TrainingSection, use_gpu: bool, name: str) -> TrainerArgs:
    """TrainingArguments shared by SFT and DPO, from an ``sft``/``dpo`` config section.

    Args:
        section: The ``sft`` or ``dpo`` section (a TrainingSection).
        use_gpu: Whether the Train workers hold GPUs (``resources.use_gpu``).
        name: The section's name, for the error message.

    Returns:
        The shared arguments.

    Raises:
        RlufError: GPU-only options (bf16, FSDP, DeepSpeed) on CPU workers.
    """
    from rluf_ray.errors import RlufError

    if (section.bf16 or section.fsdp or section.deepspeed) and not use_gpu:
        raise RlufError(
            f"{name}.bf16/fsdp/deepspeed need GPUs: set resources.use_gpu=true (or turn them off)"
        )
    dist = hf_distributed_args(use_gpu)
    return TrainerArgs(
        learning_rate=section.learning_rate,
        num_train_epochs=section.num_epochs,
        max_steps=section.max_steps,
        per_device_train_batch_size=section.per_device_batch_size,
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        bf16=section.bf16,
        gradient_checkpointing=section.gradient_checkpointing,
        logging_steps=section.logging_steps,
        seed=section.seed,
        fsdp=section.fsdp,
        deepspeed=section.deepspeed,
        save_steps=section.save_steps,
        fsdp_state_dict_type=FSDP_STATE_DICT_TYPES[section.fsdp_state_dict] if section.fsdp else None,
        use_cpu=dist["use_cpu"],
        ddp_backend=dist["ddp_backend"],
    )


WORKER_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
"""Environment of every Train worker: Ray Train's print patch off.

Ray Train 2.60 replaces ``builtins.print`` in its workers with a function that sends every print to
the root logger, and also to the original print when ``sys.stdout`` has been swapped
(``ray/train/v2/_internal/logging/patch_print.py``, on by default). datasets fingerprints the
tokenising functions with dill, and ``dill.detect.nestedglobals`` finds a function's globals by
swapping ``sys.stdout`` for a buffer and calling ``dis.dis``: under the patch every line of that
bytecode listing also goes to the logger, so it lands in the worker's log, and every ordinary print
shows up twice. With the patch off, print is print again. ``tests/training/test_worker_logs.py``
fails if the listing comes back."""


def train_logging_config() -> Any:
    """Ray Train's LoggingConfig: console at WARNING, or INFO when the console shows everything.

    Returns:
        A ``ray.train.LoggingConfig``.
    """
    from ray.train import LoggingConfig  # type: ignore[attr-defined]

    from rluf_ray.common import console

    return LoggingConfig(log_level="INFO" if console.is_verbose() else "WARNING")


def run_config(
    name: str,
    storage_path: str,
    max_failures: int,
    num_to_keep: int = 2,
    storage_filesystem: Any = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """Ray Train RunConfig: a named run (resumable by name) under ``storage_path`` (a local path, or a
    path inside ``storage_filesystem``: the artifact store's own, e.g. S3), FailureConfig, checkpoint
    retention, and the workers' environment (``WORKER_ENV`` and ``env``, e.g. the tracking run's).

    Args:
        name: The run's name; a rerun with the same name resumes from its checkpoints.
        storage_path: Where the run's checkpoints go (a local path, or a path in ``storage_filesystem``).
        max_failures: How many worker-group failures FailureConfig retries.
        num_to_keep: How many Ray Train checkpoints to keep.
        storage_filesystem: The pyarrow filesystem of ``storage_path``, or None for the local disk.
        env: Extra environment variables for the workers (over ``WORKER_ENV``), or None.

    Returns:
        A ``ray.train.RunConfig``.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    return RunConfig(
        # Ray Train's own INFO lines (worker group started, each report and checkpoint) stay in its
        # session log files; the console gets them only when it shows everything (``RLUF_LOG=debug``).
        logging_config=train_logging_config(),  # type: ignore[call-arg]
        name=name,
        storage_path=storage_path,
        storage_filesystem=storage_filesystem,
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=num_to_keep),
        # Ray Train v2's RunConfig (what ray.train exports at runtime in Ray 2.60) takes it; mypy sees
        # the v1 ray.air RunConfig, which does not.
        worker_runtime_env={"env_vars": {**WORKER_ENV, **(env or {})}},  # type: ignore[call-arg]
    )


def quiet_params_on_resume(resumed: bool) -> None:
    """In a worker that resumes from a checkpoint, tell ``MLflowCallback`` to log no params again.

    A worker group that FailureConfig restarts reattaches to the same MLflow run (``MLFLOW_RUN_ID``)
    and would log the trainer's arguments once more: its fresh scratch ``output_dir`` differs from
    the logged one and MLflow refuses a changed param (the callback logs that batch asynchronously,
    so it would fail with an error line). ``MLFLOW_MAX_LOG_PARAMS=0`` makes the callback log none.

    Args:
        resumed: Whether this worker resumes from a checkpoint; nothing changes when False.
    """
    if resumed and os.environ.get("MLFLOW_RUN_ID"):
        os.environ["MLFLOW_MAX_LOG_PARAMS"] = "0"


@contextlib.contextmanager
def worker_tracking_ends() -> Iterator[None]:
    """End this worker's W&B run, when ``WandbCallback`` opened one (rank 0), as the block ends.

    ``WandbCallback`` never finishes its run and leaves that to the process's exit hook, which a Ray
    Train worker that Ray ends does not run: W&B then never writes the run's records out (with
    ``WANDB_MODE=offline`` its ``.wandb`` file stays empty; ``tests/training/test_worker_tracking.py``).
    The run ends with exit code 0, or 1 when the block raises. Nothing happens without a W&B run
    (MLflow's callback ends its own run at train end).

    Yields:
        Nothing; the training call runs inside the block.
    """
    ok = False
    try:
        yield
        ok = True
    finally:
        wandb = sys.modules.get("wandb")  # imported by WandbCallback only; never imported here
        run = getattr(wandb, "run", None) if wandb is not None else None
        if run is not None:
            run.finish(exit_code=0 if ok else 1)


class FailAtStep(TrainerCallback):
    """Test hook: raise once at a given step on a fresh (not resumed) run, to exercise FailureConfig."""

    def __init__(self, step: int, resumed: bool):
        self.step, self.resumed = step, resumed

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Raise ``RuntimeError`` when a fresh run finishes the chosen step.

        Args:
            args: The trainer's TrainingArguments (unused).
            state: The trainer's TrainerState (its ``global_step`` is checked).
            control: The trainer's TrainerControl (unused).
            **kwargs: The callback's other arguments (unused).
        """
        if not self.resumed and state.global_step == self.step:
            raise RuntimeError(f"injected failure at step {self.step}")


class FaultAtStep(TrainerCallback):
    """Test hook (``rluf_ray.runtime.faults``, point ``TRAIN_STEP``): rank 0's process dies (or hangs) once
    when it finishes the chosen global step, as a Train worker lost to a crash.

    It waits ``grace_s`` first: Ray Train's controller collects the workers' reports (checkpoints
    included) when it polls them, every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (2 s); a worker that dies
    sooner after a report loses that report, and the run resumes from the checkpoint before it. The
    wait makes "dies after its step-k checkpoint was taken" a deterministic event."""

    def __init__(self, spec: FaultSpec, grace_s: float | None = None):
        self.spec = spec
        poll = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2.0"))
        self.grace_s = 2 * poll + 1 if grace_s is None else grace_s

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """On rank 0, when the fault's step is done: wait ``grace_s`` seconds, then fire the fault.

        Args:
            args: The trainer's TrainingArguments (unused).
            state: The trainer's TrainerState (its ``global_step`` and rank are checked).
            control: The trainer's TrainerControl (unused).
            **kwargs: The callback's other arguments (unused).
        """
        if state.is_world_process_zero and self.spec.fires_at(int(state.global_step)):
            time.sleep(self.grace_s)
            self.spec.fire()


def add_fault_hooks(trainer: Any, config: Mapping[str, Any], resumed: bool) -> None:
    """The loops' test hooks: ``fail_at_step`` (an exception) and ``fault`` (a process death).

    Args:
        trainer: The HF Trainer to add the callbacks to.
        config: The loop's config: ``fail_at_step`` (a step, or absent/0 for none) and ``fault``
            (a FaultSpec, or None).
        resumed: Whether the run resumes from a checkpoint (``fail_at_step`` fires on fresh runs only).
    """
    if config.get("fail_at_step"):
        trainer.add_callback(FailAtStep(int(config["fail_at_step"]), resumed=resumed))
    if config.get("fault") is not None:
        trainer.add_callback(FaultAtStep(config["fault"]))


def load_model(config: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """The tokenizer, model and LoRA config a training loop (SFT or DPO) starts from.

    Args:
        config: The loop's config: ``model_path`` (a path, hub id, ``embedded:`` name or store URI,
            copied to this node's cache when remote), ``dtype`` (a torch dtype name) and ``lora``
            (peft ``LoraConfig`` kwargs, or None when LoRA is off).

    Returns:
        ``(tokenizer, model, peft_config)``: the HF tokenizer, the causal LM in ``dtype`` and the
        peft ``LoraConfig`` for the trainer (None without LoRA).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rluf_ray.store.model_cache import local_model

    model_path = local_model(config["model_path"])  # a store URI is copied to this node's cache
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, config["dtype"]))
    peft_config = None
    if config.get("lora"):
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **config["lora"])
    return tokenizer, model, peft_config


@contextlib.contextmanager
def resume_checkpoint() -> Iterator[str | None]:
    """The HF checkpoint directory to resume from (None on a fresh start), valid inside the block.

    Yields:
        The path of the latest Ray Train checkpoint's HF checkpoint directory, or None when there is
        no checkpoint (or it holds no such directory).
    """
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        yield None
        return
    with ckpt.as_directory() as d:
        path = Path(d, HF_CHECKPOINT)
        yield str(path) if path.is_dir() else None


def full_state_for_final_save(trainer: Any) -> bool:
    """Under FSDP with sharded checkpoints, switch the FSDP plugin to a full state dict, so that
    ``save_model`` gathers the shards and rank 0 writes an HF model (for a sharded state dict it writes
    no weights at all). Call it only after the last checkpoint.

    Args:
        trainer: The HF Trainer (after training).

    Returns:
        Whether it switched (False without FSDP or when the state dict is already full).
    """
    if not getattr(trainer, "is_fsdp_enabled", False):
        return False
    plugin = trainer.accelerator.state.fsdp_plugin
    if "SHARDED_STATE_DICT" not in str(plugin.state_dict_type):
        return False
    # accelerate keeps existing state dict configs: drop them so FULL_STATE_DICT gets its own
    plugin.state_dict_config = plugin.optim_state_dict_config = None
    plugin.set_state_dict_type("FULL_STATE_DICT")
    return True


def report_final(trainer: Any, tokenizer: Any, metrics: dict[str, Any], curves: str | None = None) -> None:
    """Save the final model and tokenizer (HF format) and report them as the last Ray Train checkpoint.

    Every rank calls it (the save gathers sharded weights); rank 0 writes the model (merged when
    LoRA), the tokenizer and the curves, and reports them with ``metrics``; the others report
    ``metrics`` only.

    Args:
        trainer: The HF Trainer (after training).
        tokenizer: The HF tokenizer to save beside the model.
        metrics: The run's final metrics to report.
        curves: A local curves JSONL file to ship in the checkpoint, or None (skipped when missing).
    """
    import ray.train
    from ray.train import Checkpoint

    rank = ray.train.get_context().get_world_rank()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, MODEL_DIR)
        model = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(model, "merge_and_unload"):  # LoRA: ship a plain merged model that vLLM can load
            if rank == 0:
                model.merge_and_unload().save_pretrained(out)
        else:
            full_state_for_final_save(trainer)
            trainer.save_model(str(out))  # every rank: gathers FSDP/ZeRO-3 shards, writes on rank 0
        if rank != 0:
            ray.train.report(metrics=metrics)
            return
        tokenizer.save_pretrained(out)
        if curves and os.path.exists(curves):
            shutil.copy(curves, Path(tmp, CURVES_ARTIFACT))
        ray.train.report(metrics=metrics, checkpoint=Checkpoint.from_directory(tmp))


def export_final(result: Any, store: ArtifactStore, stage: str, model_name: str, curves_name: str) -> None:
    """Driver side: copy the final model (and curves) from the run's last checkpoint into the store.

    The copy goes from the checkpoint's filesystem to the store's (S3 to S3, or disk to disk): nothing
    passes through the driver's disk.

    Args:
        result: The ``ray.train.Result`` of the finished run.
        store: The artifact store to copy into.
        stage: The stage's artifact directory in the store.
        model_name: The model directory's name in the stage (e.g. ``<prefix>model``).
        curves_name: The curves file's name in the stage (copied only when the checkpoint has one).

    Raises:
        RuntimeError: The run reported no checkpoint, or its last one holds no model directory.
    """
    import pyarrow.fs as pafs

    ckpt = result.checkpoint
    if ckpt is None:
        raise RuntimeError("the training run reported no final checkpoint")
    src = f"{ckpt.path}/{MODEL_DIR}"
    if ckpt.filesystem.get_file_info(src).type != pafs.FileType.Directory:
        raise RuntimeError(f"the last checkpoint has no {MODEL_DIR}/ directory")
    store.put_dir(stage, model_name, src, ckpt.filesystem)
    curves = f"{ckpt.path}/{CURVES_ARTIFACT}"
    if ckpt.filesystem.get_file_info(curves).type == pafs.FileType.File:
        with ckpt.filesystem.open_input_stream(curves) as f:
            store.write_bytes(stage, curves_name, bytes(f.read()))


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[str]:
    """A per-worker scratch directory for the HF Trainer's own checkpoints, removed on exit.

    Ray's ``RayTrainReportCallback`` copies each HF checkpoint into Ray Train's storage from every
    rank (sharded FSDP / ZeRO-3 state included), so nothing here is needed after the loop.

    Args:
        prefix: A name part for the directory (``rluf-<prefix>-...``), e.g. ``"sft"``.

    Yields:
        The directory's path.
    """
    path = tempfile.mkdtemp(prefix=f"rluf-{prefix}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fit_and_export(
    loop: Any,
    loop_config: dict[str, Any],
    run: TrainRun,
    store: ArtifactStore,
    stage: str,
    prefix: str,
    what: str,
    report: WorkerReport = NO_REPORT,
) -> dict[str, Any]:
    """Run ``loop`` under a TorchTrainer with its checkpoints in the store (``<stage>/<prefix>checkpoints``,
    where a rerun resumes), export the final model (``<prefix>model``) and curves (``<prefix>curves.jsonl``)
    into the store, drop the checkpoints, and return the run's last metrics.

    A failed run is one ``RlufError`` line naming ``what`` (the checkpoints stay for the next try).

    Args:
        loop: The train loop (runs in every worker).
        loop_config: The loop's config (Ray Train's ``train_loop_config``).
        run: The run's name (a rerun of the same name resumes), workers and failure budget.
        store: The artifact store.
        stage: The stage's artifact directory.
        prefix: The unit's folder inside it (``""`` or ``<arm>/seed-<seed>/``).
        what: The run's name in messages.
        report: Where the workers report (``tracking.train_run``), applied to the trainer args and the
            workers' environment.

    Returns:
        The run's last metrics.
    """
    from ray.train.torch import TorchTrainer

    from rluf_ray.errors import RlufError

    storage_path, storage_fs = store.train_storage(stage, f"{prefix}{CHECKPOINTS}")
    trainer = TorchTrainer(
        loop,
        train_loop_config={
            **loop_config,
            "trainer_args": {**loop_config["trainer_args"], **report.trainer_args()},
            "fault": fault_spec("train_step"),  # None but in tests
        },
        scaling_config=run.scaling.ray_config(),
        run_config=run_config(
            run.name,
            storage_path,
            run.max_failures,
            storage_filesystem=storage_fs,
            env=report.env,
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray Train's TrainingFailedError wraps the worker's exception
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RlufError(f"{what} failed: {first}") from exc
    export_final(result, store, stage, f"{prefix}{MODEL_DIR}", f"{prefix}{CURVES_ARTIFACT}")
    store.delete_subdir(stage, f"{prefix}{CHECKPOINTS}")
    return dict(result.metrics or {})
