"""The ``data`` section: datasets, the embedded demo, splits and the prompt template."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rluf_ray.config.section import Section


class DemoDataConfig(Section):
    train_docs: int = Field(1200, ge=1, description="Documents in the SFT split of the embedded demo.")
    calibration_docs: int = Field(60, ge=1, description="Documents in the calibration split.")
    test_docs: int = Field(40, ge=1, description="Documents in the test split.")
    eval_docs: int = Field(30, ge=1, description="Documents in the held-out eval split (infer/evaluate).")
    seed: int = Field(1234, description="Seed of the deterministic demo generator.")
    vague_count_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of SFT references that say 'a crowd came' instead of the count (imperfect "
        "human summaries: the flaw the preference feedback can correct); other splits stay exact.",
    )


class TldrConfig(Section):
    hub_id: str = Field("openai/summarize_from_feedback", description="Hub dataset id.")
    subset: str = Field("axis", description="Dataset configuration name.")
    split: str = Field("validation", description="Dataset split to read.")
    max_post_words: int = Field(300, ge=1, description="Posts with more words are dropped.")


class DataConfig(Section):
    source: Literal["demo", "tldr", "files"] = Field(
        "demo", description="demo: embedded generated dataset; tldr: summarize_from_feedback; files: local."
    )
    demo: DemoDataConfig = Field(default_factory=DemoDataConfig, description="Embedded demo settings.")
    tldr: TldrConfig = Field(default_factory=TldrConfig, description="summarize_from_feedback settings.")
    train_file: str | None = Field(None, description="JSONL/Parquet with prompt and reference (files).")
    calibration_file: str | None = Field(None, description="JSONL/Parquet for calibration (files).")
    test_file: str | None = Field(None, description="JSONL/Parquet for test prompts (files).")
    eval_file: str | None = Field(None, description="JSONL/Parquet for held-out eval prompts (files).")
    prompt_template: str = Field(
        "Please summarize this text:\n{post}\nSummary:",
        description="Prompt template; must contain {post} and end with the answer cue.",
    )
    calibration_size: int = Field(50, ge=1, description="Calibration prompts (original: 50).")
    test_size: int = Field(
        50, ge=1, description="Test prompts: they receive prediction sets and become the DPO pairs' prompts."
    )
    eval_size: int = Field(
        50, ge=1, description="Held-out prompts for infer/evaluate (never seen by SFT, calibration or DPO)."
    )
    sft_size: int | None = Field(None, ge=1, description="Cap on SFT examples (None: all).")
    seed: int = Field(42, description="Seed for shuffling and splitting loaded data.")

    @model_validator(mode="after")
    def _template(self) -> DataConfig:
        if "{post}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {post}")
        return self
