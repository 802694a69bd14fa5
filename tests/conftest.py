"""Shared test fixtures: one local Ray per test session, offline Hugging Face, shared data paths."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("PYTHONHASHSEED", "0")
# Judge actors read the API key from their node's environment (never from arguments): like a cluster
# node, the session Ray must see the test keys when it starts, so they are set before any Ray starts.
os.environ.setdefault("RLUF_JUDGE_TEST_KEY", "sk-ray-test")
os.environ.setdefault("RLUF_TEST_KEY", "sk-test")
os.environ.setdefault("RLUF_BENCH_JUDGE_KEY", "bench-key-not-secret")
os.environ.setdefault("RLUF_SECRET_TEST_KEY", f"sk-secret-{os.urandom(12).hex()}")  # unique per run

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
WEIGHTED_SAMPLE = SHARED_DATA / "cfa_weighted_dpo_sample.jsonl"


def _has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch missing
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU tests cleanly where no CUDA device exists."""
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def weighted_sample_path() -> Path:
    """The released weighted DPO sample in ../shared/data (skips only where it is absent)."""
    if not WEIGHTED_SAMPLE.is_file():
        pytest.skip(f"{WEIGHTED_SAMPLE} is absent (CI always has ../shared beside the clone)")
    return WEIGHTED_SAMPLE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_session(ray_temp_dir: Path):
    """One local Ray for the whole test session: explicit local start, own temp dir, auth off.

    ``address="local"`` never attaches to a leftover cluster; RAY_ADDRESS is cleared for the same
    reason. Tests that need Ray take this fixture and are marked ``ray``.
    """
    import ray

    from rluf_ray.runtime.bootstrap import ensure_ray

    os.environ.pop("RAY_ADDRESS", None)
    ensure_ray(num_cpus=2, address="local", _temp_dir=str(ray_temp_dir))
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def ray_temp_dir() -> Iterator[Path]:
    """The session Ray's temp dir (its session dir, with every log, lies below)."""
    tmp = tempfile.mkdtemp(prefix="rluf-ray-test-")
    yield Path(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return _free_port()


@pytest.fixture
def ray_idle(ray_session):
    """The session Ray with every CPU free (leftover actors from an earlier test would starve a Train run)."""
    import gc
    import time

    gc.collect()
    total = ray_session.cluster_resources().get("CPU", 0)
    deadline = time.monotonic() + 120
    while ray_session.available_resources().get("CPU", 0) < total:
        if time.monotonic() > deadline:
            raise AssertionError(f"Ray CPUs still held by earlier tests: {ray_session.available_resources()}")
        time.sleep(0.5)
    return ray_session


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory):
    """One tiny ``./dev demo`` run for the session (tests/support/demo_run.py); tests read it, and one
    that reruns stages works on its own copy."""
    from tests.support.demo_run import run_tiny_demo

    return run_tiny_demo(tmp_path_factory.mktemp("tiny-demo") / "out")


@pytest.fixture(scope="session")
def s3_server():
    """One S3-compatible server (moto) on 127.0.0.1 for the whole test session."""
    from tests.support.s3_server import S3Server

    with S3Server() as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch):
    """This process's AWS variables point at the session's S3 server (restored after the test)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server
