"""Ray bootstrap in one place: join the job's cluster when there is one, else start a local Ray."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("rluf.ray")

# Environment that every worker must share with the driver (offline hub, FastText determinism).
PROPAGATED_ENV = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "PYTHONHASHSEED",
    "TOKENIZERS_PARALLELISM",
    "RAY_AUTH_MODE",
)


def cluster_address() -> str | None:
    """The cluster to join: RAY_ADDRESS (set by ``ray job submit`` for drivers), else None."""
    addr = os.environ.get("RAY_ADDRESS", "").strip()
    return addr or None


def local_init_kwargs(num_cpus: int | None = None) -> dict[str, Any]:
    """Arguments for a local Ray sized to this machine, with no dashboard and quiet logs."""
    return {
        "num_cpus": num_cpus or os.cpu_count() or 1,
        "include_dashboard": False,
        "log_to_driver": True,
        "configure_logging": False,
    }


def ensure_ray(num_cpus: int | None = None, **overrides: Any) -> None:
    """Initialise Ray once per process: the cluster when RAY_ADDRESS is set, else a local one."""
    import ray

    if ray.is_initialized():
        return
    addr = cluster_address()
    env_vars = {
        k: os.environ[k]
        for k in ("HF_HUB_OFFLINE", "PYTHONHASHSEED", "TOKENIZERS_PARALLELISM")
        if k in os.environ
    }
    runtime_env = {"env_vars": env_vars} if env_vars else None
    if addr:
        log.info("joining Ray cluster at %s", addr)
        ray.init(address=addr, runtime_env=runtime_env, **overrides)
    else:
        kwargs = local_init_kwargs(num_cpus)
        kwargs.update(overrides)
        log.info("starting a local Ray with %s CPUs", kwargs["num_cpus"])
        ray.init(runtime_env=runtime_env, **kwargs)


def release_on_error(exc: BaseException) -> None:
    """Free the Ray resources a failed Ray Data pipeline still holds, before re-raising ``exc``.

    A failed streaming execution keeps its actor pool alive through the traceback's frames until the
    garbage collector runs; in a long-lived driver (a notebook, a test session, run-all) those actors
    would hold CPUs or GPUs that later stages then wait for. Clearing the frames and collecting
    releases them at once; the exception and its message are kept.
    """
    import gc
    import traceback

    traceback.clear_frames(exc.__traceback__)
    gc.collect()
