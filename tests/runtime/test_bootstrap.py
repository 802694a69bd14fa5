"""Ray bootstrap: join a cluster when RAY_ADDRESS is set, else a local Ray sized to the machine."""

from __future__ import annotations

import os

import pytest

from rluf_ray.runtime.bootstrap import (
    CONSOLE_ENV,
    cluster_address,
    driver_runtime_env,
    ensure_ray,
    local_init_kwargs,
    quiet_worker,
    releases_on_error,
)


def test_cluster_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address() is None
    monkeypatch.setenv("RAY_ADDRESS", "  ")
    assert cluster_address() is None
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert cluster_address() == "ray://head:10001"


def test_local_kwargs_sized_to_machine() -> None:
    kw = local_init_kwargs()
    assert kw["num_cpus"] == (os.cpu_count() or 1)
    assert kw["include_dashboard"] is False
    assert local_init_kwargs(3)["num_cpus"] == 3


@pytest.mark.ray
def test_session_ray_is_local_and_reused(ray_session) -> None:
    ensure_ray()  # already initialised: a no-op, no second Ray
    assert ray_session.is_initialized()
    assert ray_session.cluster_resources()["CPU"] == 2
    env = ray_session.get(ray_session.remote(lambda: os.environ.get("HF_HUB_OFFLINE")).remote())
    assert env == "1"


def test_driver_passes_no_runtime_env_inside_a_submitted_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.setenv("RLUF_LOG", "warning")  # the console's level reaches the workers too
    assert "RLUF_LOG" in CONSOLE_ENV and "HF_DATASETS_DISABLE_PROGRESS_BARS" in CONSOLE_ENV
    assert driver_runtime_env() == {"env_vars": {k: v for k, v in os.environ.items() if k in (
        "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONHASHSEED",
        "TOKENIZERS_PARALLELISM", *CONSOLE_ENV)}, "worker_process_setup_hook": quiet_worker}  # fmt: skip
    monkeypatch.setenv("RLUF_LOG", "debug")  # everything on the console: no hook quiets the workers
    assert "worker_process_setup_hook" not in (driver_runtime_env() or {})
    monkeypatch.setenv(
        "RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {"env_vars": {"PYTHONHASHSEED": "0"}}}'
    )
    assert driver_runtime_env() is None  # Ray refuses env vars set by both the job and ray.init


class _Held:
    """Stands in for a dataset whose executor holds actor handles."""


def test_releases_on_error_frees_what_the_failed_frames_held() -> None:
    import weakref

    refs: list[weakref.ref[_Held]] = []

    def run(decorated: bool) -> BaseException:
        def pipeline() -> None:
            held = _Held()
            refs.append(weakref.ref(held))
            raise RuntimeError("pipeline failed")

        fn = releases_on_error(pipeline) if decorated else pipeline
        try:
            fn()
        except RuntimeError as exc:
            return exc  # the caller keeps the exception, as pytest or a long-lived driver does
        raise AssertionError("no error")

    kept = run(decorated=False)
    assert refs[-1]() is not None  # the cause: the traceback's frame keeps its locals alive
    kept = run(decorated=True)
    assert refs[-1]() is None and str(kept) == "pipeline failed"
