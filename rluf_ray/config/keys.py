"""The stage-key policy: which config keys are operational (never change a result) and the helpers
that turn a stage's ``reads`` into the keys its manifest hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from rluf_ray.config.schema import RlufConfig

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
