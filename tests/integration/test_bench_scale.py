"""`rluf bench scale` at a tiny size: a real local cluster of two worker nodes runs the generate stage over
two latency engines, one per node, and the last line is the JSON contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_scale_runs_the_stage_over_latency_engines_on_two_nodes() -> None:
    cmd = [sys.executable, "-m", "rluf_ray.cli", "bench", "scale", "--actors", "2", "--nodes", "2",
           "--min-batches", "8", "--prompts-largest", "0", "--samples", "4", "--new-tokens", "32",
           "--rows-per-file", "4", "--compression", "1"]  # fmt: skip  # ~1 s calls: both engines get work
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=570)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    (run,) = summary["runs"]
    print(run)  # shown when an assertion below fails
    assert (run["actors"], run["worker_nodes"]) == (2, 2)
    assert run["prompts"] == 2 * 8 * 4 + 4 and run["samples"] == run["prompts"] * 4
    assert run["engines_seen"] == 2, "each worker node's engine made calls"
    assert run["engine_calls"] == run["prompts"] / 4  # one call per batch of 4 prompts, none redone
    assert 0 < run["efficiency"] <= 1.05 and 0 < run["efficiency_end_to_end"] <= run["efficiency"]
    assert run["driver_peak_rss_mib"] >= run["driver_peak_rss_before_mib"] > 0
    assert run["spilled_bytes"] == 0  # `ray memory --stats-only` answered (None if not) and nothing spilled
    assert summary["assumptions"]["compression"] == 1
