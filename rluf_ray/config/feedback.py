"""The ``feedback`` and ``weights`` sections: pairwise AI feedback and the uncertainty weights of its pairs."""

from __future__ import annotations

from pydantic import Field

from rluf_ray.config.section import Section


class FeedbackConfig(Section):
    max_pairs_per_prompt: int | None = Field(
        None, ge=1, description="Cap on annotated pairs per prompt (None: all pairs of unique answers)."
    )
    debias_order: bool = Field(True, description="Randomise answer order per pair to remove position bias.")
    seed: int = Field(42, description="Seed of the order randomisation.")
    use_batch_api: bool = Field(False, description="Use the OpenAI Batch API (half price, hours latency).")


class WeightsConfig(Section):
    in_small_set: float = Field(
        0.5, description="Weight of an answer only in the 50% set (1 - largest alpha)."
    )
    in_large_set_only: float = Field(0.8, description="Weight of an answer only in the 80% set.")
    in_both: float = Field(0.65, description="Weight of an answer in both sets.")
    in_neither: float = Field(0.0, description="Weight of an answer in neither set.")
