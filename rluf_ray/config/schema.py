"""The whole config, :class:`RlufConfig`: one field per section (each section in its own module)."""

from __future__ import annotations

from pydantic import Field

from rluf_ray.config.conformal import ConformalConfig
from rluf_ray.config.data import DataConfig
from rluf_ray.config.evaluation import EvaluationConfig, InferenceConfig
from rluf_ray.config.feedback import FeedbackConfig, WeightsConfig
from rluf_ray.config.generation import GenerationConfig
from rluf_ray.config.judge import JudgeConfig
from rluf_ray.config.model import ModelConfig
from rluf_ray.config.resources import ResourcesConfig
from rluf_ray.config.section import Section
from rluf_ray.config.tracking import TrackingConfig
from rluf_ray.config.training import DpoConfig, SftConfig

__all__ = ["RlufConfig", "Section"]


class RlufConfig(Section):
    """The whole pipeline's configuration."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Datasets and splits.")
    sft: SftConfig = Field(default_factory=SftConfig, description="Supervised fine-tuning.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="N-sample generation.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="LLM judge client.")
    conformal: ConformalConfig = Field(default_factory=ConformalConfig, description="Conformal calibration.")
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig, description="Pairwise AI feedback.")
    weights: WeightsConfig = Field(default_factory=WeightsConfig, description="Uncertainty weights.")
    dpo: DpoConfig = Field(default_factory=DpoConfig, description="Weighted DPO.")
    inference: InferenceConfig = Field(default_factory=InferenceConfig, description="Test-set inference.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="Evaluation.")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="Ray resources.")
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="Experiment tracking (MLflow, W&B) of run-all."
    )
    output_dir: str = Field("outputs", description="Root of the artifact store (a path or pyarrow.fs URI).")
    shared_output_dir: bool = Field(
        False,
        description="output_dir is a path every node of the cluster sees (a shared mount); without it a "
        "plain path is refused on a cluster of more than one node.",
    )
