"""The ``tracking`` section: experiment tracking (MLflow, W&B) of run-all and of each stage command."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rluf_ray.config.section import Section


class TrackingConfig(Section):
    backend: Literal["none", "mlflow", "wandb"] = Field(
        "none",
        description="Experiment tracking of run-all and of each stage command (one run per command): none, "
        "mlflow (a local SQLite store, no server needed; pip install -e .[tracking]) or wandb (pip install "
        "-e .[wandb]; its login, or WANDB_MODE=offline: run files in <WANDB_DIR or output_dir>/wandb).",
    )
    uri: str | None = Field(
        None,
        description="MLflow tracking URI (None: sqlite:///<output_dir>/mlflow.db, artifacts beside it in "
        "<output_dir>/mlartifacts); ignored by wandb (WANDB_DIR sets its run files' directory).",
    )
    experiment: str = Field(
        "rluf-ray", min_length=1, description="MLflow experiment name, or W&B project name."
    )
