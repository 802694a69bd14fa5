"""The vllm engine where vllm is not installed: its lazy import, and close() around a stand-in ``LLM``.

(``test_vllm.py`` and ``test_vllm_close.py`` run the real engine in the vllm environment.)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rluf_ray.engines.registry import make_engine
from rluf_ray.engines.vllm import VllmOptions
from rluf_ray.errors import RlufError


def _model_folder(tmp_path: Path) -> Path:
    """A folder that passes the model check (config.json present); vllm's import fails before loading it."""
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_engine_imports_lazily(tmp_path: Path) -> None:
    import rluf_ray.engines.vllm as engines  # importing the module never imports vllm

    assert engines.VLLMEngine.name == "vllm"
    assert "vllm" not in sys.modules
    with pytest.raises(RlufError, match="needs vllm"):
        make_engine("vllm", str(_model_folder(tmp_path)), VllmOptions(gpu_memory_utilization=0.3))


class _Core:
    def __init__(self) -> None:
        self.shutdowns = 0

    def shutdown(self) -> None:
        self.shutdowns += 1


class _LLMWithShutdown:
    def __init__(self) -> None:
        self.shutdowns = 0
        self.llm_engine = type("E", (), {"engine_core": _Core()})()

    def shutdown(self) -> None:
        self.shutdowns += 1


class _LLMWithoutShutdown:
    def __init__(self) -> None:
        self.llm_engine = type("E", (), {"engine_core": _Core()})()


def _vllm_engine_around(llm: object) -> object:
    from rluf_ray.engines.vllm import VLLMEngine

    eng = object.__new__(VLLMEngine)  # no vllm needed: the adapter around a stand-in LLM
    eng.llm = llm
    return eng


def test_vllm_close_uses_the_public_shutdown_once() -> None:
    llm = _LLMWithShutdown()
    eng = _vllm_engine_around(llm)
    eng.close()
    eng.close()
    assert llm.shutdowns == 1 and llm.llm_engine.engine_core.shutdowns == 0
    assert eng.llm is None


def test_vllm_close_without_public_shutdown_drops_the_llm_once() -> None:
    """No private engine-core call: the LLM is dropped and collected (vLLM's engine core client shuts its
    process down when collected; ``tests/engines/test_vllm_close.py`` checks that on the real engine)."""
    import weakref

    llm = _LLMWithoutShutdown()
    eng = _vllm_engine_around(llm)
    core, ref = llm.llm_engine.engine_core, weakref.ref(llm)
    del llm
    eng.close()
    eng.close()
    assert eng.llm is None and ref() is None
    assert core.shutdowns == 0
