"""Fault points fire once, where told, and only when a test sets them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rluf_ray.runtime.faults import fault_spec

FIRE = "from rluf_ray.runtime.faults import fault_spec; s = fault_spec('engine_batch'); [s.check(i) for i in (1, 2, 3)]"


def test_unset_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLUF_FAULT_ENGINE_BATCH", raising=False)
    assert fault_spec("engine_batch") is None


def test_bad_action_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLUF_FAULT_ENGINE_BATCH", "2:explode:/tmp/x")
    with pytest.raises(ValueError, match="explode"):
        fault_spec("engine_batch")


def test_exit_fires_once_at_its_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "fired"
    monkeypatch.setenv("RLUF_FAULT_ENGINE_BATCH", f"2:exit:{marker}")
    first = subprocess.run([sys.executable, "-c", FIRE], capture_output=True)
    assert first.returncode == 1 and marker.is_file() and '"pid"' in marker.read_text()
    second = subprocess.run([sys.executable, "-c", FIRE], capture_output=True)  # the restarted process
    assert second.returncode == 0
    spec = fault_spec("engine_batch")
    assert spec is not None and not spec.fires_at(2) and not spec.fires_at(1)
