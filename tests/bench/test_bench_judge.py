"""Smoke test of ``rluf bench judge``: tiny sizes, the JSON keys on the last line."""

from __future__ import annotations

import json

import pytest

from rluf_ray.bench import judge as bench

KEYS = {"baseline_calls_per_min", "ours_calls_per_min", "cap_share", "over_cap_windows", "ratio"}


@pytest.mark.ray
@pytest.mark.slow
def test_bench_judge_smoke(ray_session, capsys):
    assert bench.main(["--smoke"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(last)
    assert KEYS <= set(data)
    assert data["over_cap_windows"] == 0
    assert data["ours_missing"] == 0 and data["ours_scored"] == data["ours_calls"]
    assert data["ours_calls_per_min"] > data["baseline_calls_per_min"] > 0
