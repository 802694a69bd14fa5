"""Ray bootstrap in one place: join the job's cluster when there is one, else start a local Ray."""

from __future__ import annotations

import logging
import os
from typing import Any

from rluf_ray.errors import RlufError

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


def release_on_error(exc: BaseException, *datasets: Any) -> None:
    """Free the Ray resources a failed Ray Data pipeline still holds, before re-raising ``exc``.

    A failed streaming execution can keep its actor pool (and the CPUs/GPUs it holds) alive: the
    dataset that was iterated keeps its executor, and the traceback's frames keep the dataset. In a
    long-lived driver (run-all, a notebook, a test session) later stages would then wait for those
    resources. So: shut the iterated datasets' executors down (Ray 2.60 keeps it on the private
    ``_current_executor``; skipped if absent), clear the traceback's frames and collect.
    """
    import gc
    import traceback

    for ds in datasets:
        executor = getattr(ds, "_current_executor", None)
        if executor is not None:
            try:
                executor.shutdown(force=True)
            except Exception:  # noqa: BLE001 - best effort; the original error is what matters
                log.debug("executor shutdown after a failure raised", exc_info=True)
    traceback.clear_frames(exc.__traceback__)
    gc.collect()


def user_error(exc: BaseException) -> RlufError | None:
    """The RlufError inside a Ray task failure (its first line), if that is what it was."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, RlufError):
            return RlufError(str(cur).splitlines()[0])
        inner = getattr(cur, "cause", None)
        cur = inner if isinstance(inner, BaseException) else (cur.__cause__ or cur.__context__)
        seen += 1
    return None
