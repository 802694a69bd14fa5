"""The ``conformal`` section: the calibration protocol, the (w1, w2) grid and its fan-out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rluf_ray.config.section import Section


class WeightsRange(Section):
    start: float = Field(0.0, description="First grid value (original: 0.0).")
    stop: float = Field(2.0, description="Last grid value, inclusive (original: 2.0).")
    step: float = Field(0.2, gt=0, description="Grid step (original: 0.2).")

    @model_validator(mode="after")
    def _ordered(self) -> WeightsRange:
        if self.stop < self.start:
            raise ValueError("stop must be >= start")
        return self

    def values(self) -> list[float]:
        """Grid values from start to stop inclusive.

        Returns:
            ``start + i * step`` for ``i`` from 0 to ``round((stop - start) / step)``, each rounded to
            10 decimals.
        """
        n = int(round((self.stop - self.start) / self.step))
        return [round(self.start + i * self.step, 10) for i in range(n + 1)]


class ConformalConfig(Section):
    protocol: Literal["split", "cfa"] = Field(
        "split",
        description="split: tuning/calibration split conformal; cfa: the original repeated-split procedure.",
    )
    label_rule: Literal["any_acceptable", "top_answer"] = Field(
        "any_acceptable", description="Which answer's score is a prompt's calibration score."
    )
    quantile_bars: list[float] = Field(
        default_factory=lambda: [0.2, 0.5], description="Miscoverage levels alpha (original: 0.2, 0.5)."
    )
    accuracy_threshold: float = Field(
        0.7, ge=0, le=1, description="Judge score at or above which an answer is acceptable (original: 0.7)."
    )
    weights_range: WeightsRange = Field(
        default_factory=WeightsRange, description="Grid for w1 and w2 (original: 0.0..2.0 step 0.2)."
    )
    random_count: int = Field(50, ge=1, description="Random splits in the grid search (original: 50).")
    split_num: int = Field(3, ge=2, description="Parts per random split (original: 3).")
    tuning_fraction: float = Field(
        0.5, gt=0, lt=1, description="split protocol: share of calibration prompts used to tune (w1, w2)."
    )
    similarity_vector_size: int = Field(200, ge=1, description="FastText vector size (original: 200).")
    similarity_epochs: int = Field(10, ge=1, description="FastText training epochs.")
    seed: int = Field(42, description="Seed for splits and the similarity model.")
    grid_chunks: int = Field(8, ge=1, description="Ray CPU tasks the grid search fans out over.")
    min_cells_per_task: int = Field(
        8_000_000,
        ge=0,
        description="Least work per grid task (grid points x splits x prompts x answers x alphas): small "
        "inputs use fewer tasks so task overhead does not dominate; results never depend on it. 0: off.",
    )

    @field_validator("quantile_bars")
    @classmethod
    def _alphas(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("must not be empty")
        for a in value:
            if not 0 < a < 1:
                raise ValueError(f"values must lie in (0, 1), got {a}")
        return value
