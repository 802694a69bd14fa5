"""`rluf_ray/bench/cluster_scale.py` at a tiny size: a real local cluster of two worker nodes runs generate
and calibrate, the engine actors land on both worker nodes, and the last line is the JSON contract."""

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
@pytest.mark.timeout(900)
def test_cluster_scale_runs_on_two_worker_nodes() -> None:
    cmd = [
        sys.executable,
        "rluf_ray/bench/cluster_scale.py",
        "--prompts",
        "24",
        "--sizes",
        "2",
        "--random-count",
        "2",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    (run,) = summary["runs"]
    assert run["worker_nodes"] == 2 and run["engine_actors"] == 2
    assert run["engine_nodes"] == 2, "each worker node hosts one engine actor"
    assert run["generate_rows"] == {"calibration": 24, "test": 10}
    assert run["generate_prompts_per_s"] == pytest.approx((24 + 10) / run["generate_s"], rel=0.05)
    assert run["driver_peak_rss_mib"] >= run["driver_peak_rss_before_mib"] > 0
