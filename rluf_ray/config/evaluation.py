"""The ``inference`` and ``evaluation`` sections: test-set inference and its judging."""

from __future__ import annotations

from pydantic import Field

from rluf_ray.config.section import Section


class InferenceConfig(Section):
    max_new_tokens: int = Field(128, ge=1, description="New tokens per test summary.")
    temperature: float = Field(0.0, ge=0, description="0: greedy decoding.")
    test_size: int | None = Field(None, ge=1, description="Held-out prompts to generate for (None: all).")


class EvaluationConfig(Section):
    model: str | None = Field(
        None,
        description="Judge model for the 4-axis rubric and the pairwise comparisons; None: judge.model "
        "(original: gpt-4o for both).",
    )
    axes: list[str] = Field(
        default_factory=lambda: ["accuracy", "relevance", "completeness", "expression"],
        description="Rubric axes, each scored 0-10.",
    )
    use_batch_api: bool = Field(False, description="Judge through the OpenAI Batch API (half price).")
    seed: int = Field(
        42,
        description="Seed of the evaluation: which arm each pairwise comparison shows first (drawn per "
        "item) and the bootstrap resampling of the intervals.",
    )
