"""The ``judge`` section: the LLM judge client, its limits, prices and templates, and the judge
settings a judgement depends on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rluf_ray.config.section import Section
from rluf_ray.judge.registry import ProviderName


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
    provider: ProviderName = Field(
        "openai",
        description="A judge provider of rluf_ray/judge/registry.py. offline: deterministic reference-based "
        "judge; openai: any OpenAI-compatible API, in real time; batch: the OpenAI Batch API (half price, "
        "hours latency).",
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
