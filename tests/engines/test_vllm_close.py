"""The vllm engine's close() through vLLM's public API: its engine core process ends, a second close is a no-op.

Runs in the vllm environment (``scripts/setup_vllm_env.sh --test``); skipped where vllm is absent.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vllm is not installed here: run scripts/setup_vllm_env.sh --test")

from rluf_ray.data.demo import corpus_texts  # noqa: E402
from rluf_ray.data.tiny_model import build_embedded  # noqa: E402
from rluf_ray.engines.registry import make_engine  # noqa: E402
from rluf_ray.engines.vllm import VllmOptions  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_close_ends_the_engine_core_process(tmp_path: Path) -> None:
    model = build_embedded(corpus_texts(1, 60), tmp_path / "model", max_positions=512)
    before = set(multiprocessing.active_children())
    eng = make_engine(
        "vllm", str(model), VllmOptions(dtype="float32", max_context=512, gpu_memory_utilization=0.3, seed=7)
    )
    started = set(multiprocessing.active_children()) - before
    assert started, "vLLM started no engine core process (VLLM_ENABLE_V1_MULTIPROCESSING off?)"
    eng.close()
    deadline = time.monotonic() + 10
    while any(p.is_alive() for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(p.is_alive() for p in started), [p.name for p in started if p.is_alive()]
    assert eng.llm is None
    eng.close()  # a second close does nothing
