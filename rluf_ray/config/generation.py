"""The ``generation`` section: N-sample generation (engine, sampling, batching)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from rluf_ray.config.section import Section
from rluf_ray.engines import registry as engine_registry


class GenerationConfig(Section):
    engine: Annotated[engine_registry.EngineName, BeforeValidator(engine_registry.check_name)] = Field(
        "hf",
        description="Sampling engine by its registered name (rluf_ray.engines.registry; hf: transformers, "
        "vllm: vLLM).",
    )
    sampling_num: int = Field(
        60, ge=1, description="Samples per prompt, one engine request each (original: 60)."
    )
    temperature: float = Field(0.35, ge=0, description="Sampling temperature (original: 0.35).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(128, ge=1, description="New tokens per sample (original: 128).")
    seed: int = Field(42, description="Sampling seed (original: 42).")
    prompts_per_batch: int = Field(
        4,
        ge=1,
        description="Prompts per engine call (batch size; the sampling seed is per batch, so it counts).",
    )
    vllm_gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="vLLM memory share (on CPU builds: share of RAM; 0.3 on a shared box)."
    )
    vllm_enable_prefix_caching: bool = Field(True, description="vLLM prefix caching.")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor-parallel size.")
    score_calibration: bool = Field(
        True, description="Judge-score each unique calibration answer against its reference."
    )
    rows_per_file: int = Field(
        256, ge=1, description="Prompts per Parquet part file (the unit of resume after a kill)."
    )
