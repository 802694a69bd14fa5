"""The ``sft`` and ``dpo`` sections: what every Ray Train run shares, LoRA, and each run's own fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from rluf_ray.arms import TRAIN_ARMS, TrainArm
from rluf_ray.config.section import Section


class LoraConfig(Section):
    enabled: bool = Field(False, description="Train LoRA adapters instead of all weights.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scaling numerator).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names that receive adapters.",
    )


class TrainingSection(Section):
    """Fields every Ray Train run shares (``sft`` and ``dpo``); each section sets its own defaults.

    ``rluf_ray.training.ray_train.common_trainer_args`` turns these into HF TrainingArguments.
    """

    learning_rate: float = Field(gt=0, description="Peak learning rate.")
    num_epochs: float = Field(gt=0, description="Training epochs.")
    max_length: int = Field(
        1024, ge=16, description="Max tokens per example: prompt+completion (original: 1024)."
    )
    per_device_batch_size: int = Field(4, ge=1, description="Batch size per Train worker.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Gradient accumulation steps.")
    bf16: bool = Field(False, description="bf16 mixed precision (GPUs).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    fsdp: str = Field("", description="transformers FSDP option string, e.g. 'full_shard auto_wrap'.")
    fsdp_state_dict: Literal["full", "sharded"] = Field(
        "full",
        description=(
            "FSDP checkpoints: 'sharded' (each worker writes its own shard of the model and optimiser, "
            "torch DCP) or 'full' (gathered and written by rank 0). The final model is always full."
        ),
    )
    deepspeed: str | None = Field(None, description="Path to a DeepSpeed JSON config (e.g. ZeRO-3).")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA settings.")
    save_steps: int = Field(200, ge=1, description="Checkpoint every N optimiser steps.")
    logging_steps: int = Field(ge=1, description="Log every N steps.")
    seed: int = Field(42, description="Training seed.")
    max_failures: int = Field(
        2, ge=-1, description="Ray Train FailureConfig: worker failures to recover from the last checkpoint."
    )
    max_steps: int = Field(-1, ge=-1, description="Stop after N optimiser steps (-1: run num_epochs).")


class SftConfig(TrainingSection):
    learning_rate: float = Field(2e-5, gt=0, description="SFT learning rate (original: 2e-5).")
    num_epochs: float = Field(5, gt=0, description="SFT epochs (original: 5).")
    logging_steps: int = Field(10, ge=1, description="Log every N steps.")
    warmup_ratio: float = Field(0.03, ge=0, le=1, description="Share of steps for LR warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")


class DpoConfig(TrainingSection):
    learning_rate: float = Field(1.5e-6, gt=0, description="DPO learning rate (original: 1.5e-6).")
    num_epochs: float = Field(1, gt=0, description="DPO epochs.")
    logging_steps: int = Field(1, ge=1, description="Log every N steps.")
    beta: float = Field(0.1, gt=0, description="DPO beta.")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="TRL DPO loss type.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="cDPO label smoothing.")
    rpo_alpha: float = Field(
        0.0,
        ge=0,
        description="Weight of the chosen answer's per-token NLL added to each pair's DPO loss (RPO; "
        "0: plain DPO, the original). Both arms use it alike.",
    )
    reduction: Literal["mean", "normalized"] = Field(
        "mean", description="mean: sum(w*l)/B (original); normalized: sum(w*l)/sum(w)."
    )
    drop_zero_weight: bool | None = Field(
        None, description="Filter zero-weight pairs before training (None: on with normalized)."
    )
    max_prompt_length: int = Field(896, ge=8, description="Max prompt tokens (post body cut beyond).")
    precompute_ref_log_probs: bool = Field(False, description="Precompute reference log-probs once.")
    pairs_path: str | None = Field(
        None, description="External weighted pairs JSONL (prompt, chosen, rejected, weight) to train on."
    )
    arms: list[TrainArm] = Field(
        default_factory=lambda: list(TRAIN_ARMS),
        description="Arms to train on the same pairs: cfa (the CFA weights) and dpo (every weight 1.0).",
    )
    seeds: list[int] | None = Field(
        None, description="Training seeds; each arm is trained once per seed (None: [dpo.seed])."
    )

    @field_validator("arms", "seeds")
    @classmethod
    def _non_empty_unique(cls, value: list[Any] | None) -> list[Any] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("must not be empty")
        if len(set(value)) != len(value):
            raise ValueError(f"must not repeat a value, got {value}")
        return value

    def run_seeds(self) -> list[int]:
        """The seeds every arm is trained with: ``seeds``, or ``[seed]`` when unset.

        Returns:
            A new list of the training seeds.
        """
        return list(self.seeds) if self.seeds is not None else [self.seed]

    def units(self) -> list[tuple[str, int]]:
        """Every (arm, seed) training unit, in training order (arm by arm, seed by seed).

        Returns:
            ``(arm, seed)`` pairs: for each arm in ``arms``, one per seed of ``run_seeds()``.
        """
        return [(arm, seed) for arm in self.arms for seed in self.run_seeds()]
