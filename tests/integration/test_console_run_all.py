"""The demo's console through the real CLI: the session's tiny ``./dev demo`` (tests/support/demo_run.py,
in a subprocess, default console) prints under 150 lines, one start and one end line for every stage,
and the full log under the output dir holds more."""

from __future__ import annotations

import pytest

from rluf_ray.stages.registry import ORDER
from tests.support.demo_run import DemoRun

MAX_LINES = 150


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)  # the shared run: about 3 min on 2 idle cores
def test_run_all_console_is_short_and_names_every_stage(tiny_demo: DemoRun) -> None:
    tiny_demo.check_ok()
    lines = tiny_demo.console.splitlines()
    assert len(lines) < MAX_LINES, f"{len(lines)} console lines:\n" + tiny_demo.console
    for name in ORDER:
        assert any(f" {name}: running" in line for line in lines), f"no start line for {name}"
        assert any(f" {name}: done in " in line for line in lines), f"no end line for {name}"
    assert not any("State API may be temporarily unavailable" in line for line in lines)
    full = (tiny_demo.out / "logs" / "rluf.log").read_text().splitlines()
    assert len(full) > len([ln for ln in lines if " rluf" in ln]), (
        "the full log holds no more than the console"
    )
    assert any(" DEBUG " in ln for ln in full)
    sessions = list((tiny_demo.out / "logs" / "ray").glob("session_*"))
    assert sessions and any(p.is_file() for p in sessions[0].rglob("*")), "Ray's session logs not kept"
