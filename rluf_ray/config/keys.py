"""The stage-key policy: which config keys are operational (never change a result), and reading dotted
keys. A stage's key is the hash of its typed plan (``plan_keys``); ``tests/test_stale_keys.py`` checks
that no operational key reaches a hashed plan field and no other key only an operational one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from rluf_ray.config.schema import RlufConfig

OPERATIONAL_KEYS: tuple[str, ...] = (
    # Placement that leaves every computation as it is. Engine actors: each batch of prompts (Ray
    # Data's batches of generation.prompts_per_batch over the blocks rows_per_file cuts) is sampled
    # with a seed drawn from its prompt ids, whichever actor runs it and whenever. Judge actors and
    # custom resources only say where work runs. Calibration tasks' CPUs set their thread count, but
    # the grid search is numpy without BLAS (single-threaded reductions) and each grid point is
    # computed alone. Not here, since they change results: resources.train_workers (the global
    # batch), use_gpu and gpus_per_actor (CPU and GPU numerics differ), cpus_per_actor and
    # cpus_per_train_worker (torch's thread count: Ray sets OMP_NUM_THREADS to an actor's CPUs, and
    # torch's CPU kernels are not thread-count invariant; the engine's log-probs differ in the last
    # bits between 1 and 2 threads on the tiny default, tests/integration/test_operational_keys.py).
    "resources.engine_actors",
    "resources.cpus_per_task",
    "resources.judge_actors",
    "resources.custom_resources",
    # Where things live and what is logged about them: no stage reads its data through them.
    "tracking",
    "output_dir",
    "shared_output_dir",
    "judge.cache_path",  # a cold cache asks again what the other one held (as deleting the cache does)
    "judge.api_key_env",  # which variable holds the key, not which endpoint answers
    # Judge throughput: when calls go out and how many at once, never what they ask (the reply is a
    # function of the request, which the judge result keys fix). The Batch API asks the same requests
    # at another price and latency; its replies share the one judge cache with real-time calls.
    "judge.requests_per_minute",
    "judge.max_in_flight_per_actor",
    "judge.rate_window_s",
    "judge.rate_safety",
    "judge.budget_name",
    "judge.batch_poll_s",
    "feedback.use_batch_api",
    "evaluation.use_batch_api",
    # Judge limits that change a result only through calls recorded missing (a timeout, retries
    # spent, a request over tokens_per_minute, the dollar cap that prices and the batch discount
    # move): only replies that parsed enter the judge cache, so a rerun of the stage asks exactly the
    # missing calls again. The dollar cap and the batch timeout stop the stage without a manifest,
    # so the next run-all does; a stage finished with some calls missing is complete and records
    # them (missing counts in its manifest), so it is asked again by `rluf <stage> --force`.
    "judge.max_retries",
    "judge.timeout_s",
    "judge.tokens_per_minute",
    "judge.backoff_base_s",
    "judge.backoff_max_s",
    "judge.max_dollars",
    "judge.prices",
    "judge.batch_price_factor",
    "judge.batch_timeout_s",
    # How the conformal grid search fans out: every grid point is computed alone, and the chunks'
    # results are put back in grid order (rluf_ray.conformal.grid_tasks).
    "conformal.grid_chunks",
    "conformal.min_cells_per_task",
    # Training checkpoints and the failure budget: a run that resumes from a checkpoint ends bit
    # identical to one that never stopped (tests/training), whichever checkpoint and format it used.
    "sft.save_steps",
    "sft.max_failures",
    "sft.fsdp_state_dict",
    "dpo.save_steps",
    "dpo.max_failures",
    "dpo.fsdp_state_dict",
)
"""Keys (and sections) that change how fast, how much at once, within which limits or where things
live, never what a stage computes: no stage's hash includes them, so changing one re-runs nothing.
Keys that change results are never here: ``generation.rows_per_file`` (which prompts share a batch,
so each batch's seed), the vLLM settings (``vllm_*``, ``tensor_parallel_size``: vLLM's outputs depend on
how requests are batched and sharded), ``judge.max_parse_retries`` (the judgement is the first of
up to 1 + max_parse_retries replies that parses: a judge that samples gives the same replies to a
rerun, so the count, not the rerun, decides) and the resources named above."""


def is_operational(key: str) -> bool:
    """Whether a dotted key is (or lies in) one of ``OPERATIONAL_KEYS``.

    Args:
        key: A dotted config key (``a.b.c``).

    Returns:
        True when ``key`` equals an operational key or lies in an operational section.
    """
    return any(key == k or key.startswith(k + ".") for k in OPERATIONAL_KEYS)


def select(cfg: RlufConfig, keys: Iterable[str]) -> dict[str, Any]:
    """The values of the given dotted keys (sections or leaves), as plain JSON-able data.

    Args:
        cfg: The config to read.
        keys: Dotted keys (``a.b.c``); repeats are read once.

    Returns:
        Each key mapped to its value (a section as a nested dict), in sorted key order.

    Raises:
        KeyError: A key is not in the config.
    """
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
    """The value of one dotted key (a section comes back as plain data).

    Args:
        cfg: The config to read.
        key: A dotted key (``a.b.c``).

    Returns:
        The key's JSON-able value (a section as a nested dict).

    Raises:
        KeyError: The key is not in the config.
    """
    return select(cfg, [key])[key]


def leaf_keys(section: BaseModel, prefix: str = "") -> list[str]:
    """Every dotted leaf key under a config section (nested sections walked; lists are leaves).

    Args:
        section: The config (or config section) to walk.
        prefix: Prepended to every key, e.g. ``"judge."``.

    Returns:
        The prefixed dotted leaf keys, in field declaration order.
    """
    keys: list[str] = []
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            keys += leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys
