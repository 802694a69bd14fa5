"""The demo's console through the real CLI: a tiny ``rluf run-all`` in a subprocess prints under 150
lines, one start and one end line for every stage, and the full log under the output dir holds more."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rluf_ray.bench.local_cluster import TINY_RUN_ALL
from rluf_ray.stages.registry import ORDER

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 150
TINY_LOCAL = [s for s in TINY_RUN_ALL if not s.startswith("resources.custom_resources.")]  # no cluster


def _env() -> dict[str, str]:
    keep = ("PATH", "HOME", "TMPDIR", "LANG")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0")  # fmt: skip
    return env  # no RAY_ADDRESS, no RLUF_LOG: the default console of a local run


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)  # about 3 min on 2 idle cores
def test_run_all_console_is_short_and_names_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sets = [a for s in TINY_LOCAL for a in ("--set", s)]
    proc = subprocess.run(
        [sys.executable, "-m", "rluf_ray", "run-all", "--output-dir", str(out), *sets],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=880,
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    (tmp_path / "console.txt").write_text(proc.stdout)  # to read when it fails
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert len(lines) < MAX_LINES, f"{len(lines)} console lines:\n" + proc.stdout
    for name in ORDER:
        assert any(f" {name}: running" in line for line in lines), f"no start line for {name}"
        assert any(f" {name}: done in " in line for line in lines), f"no end line for {name}"
    assert not any("State API may be temporarily unavailable" in line for line in lines)
    full = (out / "logs" / "rluf.log").read_text().splitlines()
    assert len(full) > len([ln for ln in lines if " rluf" in ln]), (
        "the full log holds no more than the console"
    )
    assert any(" DEBUG " in ln for ln in full)
    sessions = list((out / "logs" / "ray").glob("session_*"))
    assert sessions and any(p.is_file() for p in sessions[0].rglob("*")), "Ray's session logs not kept"
