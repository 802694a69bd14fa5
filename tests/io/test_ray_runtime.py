"""Ray bootstrap: join a cluster when RAY_ADDRESS is set, else a local Ray sized to the machine."""

from __future__ import annotations

import os

import pytest

from rluf_ray.io.ray_runtime import cluster_address, ensure_ray, local_init_kwargs


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
