"""The ``resources`` section: Ray resources of the engine actors, judge actors, tasks and Train workers."""

from __future__ import annotations

from pydantic import Field, PositiveFloat, field_validator

from rluf_ray.config.section import Section


class ResourcesConfig(Section):
    engine_actors: int = Field(1, ge=1, description="Sampling engine actors.")
    gpus_per_actor: float = Field(0, ge=0, description="GPUs per engine actor (0 on CPU).")
    cpus_per_actor: float = Field(1, gt=0, description="CPUs per engine actor.")
    cpus_per_task: float = Field(1, gt=0, description="CPUs per calibration task.")
    judge_actors: int = Field(2, ge=1, description="Async judge actors.")
    train_workers: int = Field(1, ge=1, description="Ray Train workers.")
    use_gpu: bool = Field(False, description="Ray Train workers use GPUs.")
    cpus_per_train_worker: float = Field(1, gt=0, description="CPUs per Train worker.")
    custom_resources: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description=(
            "Custom Ray resources each engine actor and each Train worker requires (e.g. "
            "{rluf_worker: 1}): start worker nodes with `ray start --resources` to pin that work to them."
        ),
    )

    @field_validator("custom_resources")
    @classmethod
    def _custom_names(cls, v: dict[str, float]) -> dict[str, float]:
        builtin = {"CPU", "GPU", "memory", "object_store_memory"} & set(v)
        if builtin:
            raise ValueError(f"{sorted(builtin)} are Ray's own resources; set them with the other keys")
        return v
