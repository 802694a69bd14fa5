"""Smoke test of `rluf bench calibrate` at tiny sizes: identical sets and the JSON keys."""

from __future__ import annotations

import json

import pytest

from rluf_ray.bench import calibrate as bench
from rluf_ray.conformal.calibration import ConformalSettings
from rluf_ray.conformal.grid_search import make_permutations
from rluf_ray.conformal.grid_tasks import GridTasks


def test_baseline_loop_matches_ours_serially():
    cal, test = bench.synthetic(15, 6, 0), bench.synthetic(6, 6, 1)
    sims = {(a, r["answers"][0]): 0.1 * (len(a) % 7) for r in cal + test for a in r["answers"]}
    values = [0.0, 1.0, 2.0]
    perms = make_permutations(len(cal), 4, 0)
    base = bench.baseline(cal, test, sims, values, perms.tolist(), [0.2, 0.5], 0.7)
    settings = ConformalSettings(
        protocol="cfa", label_rule="top_answer", grid_values=tuple(values), random_count=4, seed=0
    )
    ours, _ = bench.ours(
        bench._table(cal, sims),
        bench._table(test, sims, judge=False),
        settings,
        GridTasks(chunks=3, min_cells_per_task=0),
    )
    assert ours == base
    assert any(len(s) for s in base[0.2])


@pytest.mark.ray
def test_bench_smoke_prints_json_last(ray_session, capsys):
    rc = bench.main(
        [
            "--prompts",
            "12",
            "--grid",
            "3",
            "--splits",
            "3",
            "--prompts-10k",
            "60",
            "--answers",
            "5",
            "--prompts-100k",
            "90",
        ]  # fmt: skip
    )
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["prompts_100k"] == 90
    for key in ("baseline_s", "ours_s", "ratio", "ours_s_10k", "ours_s_100k"):
        assert isinstance(result[key], float | int) and result[key] >= 0
    assert result["identical_sets"] is True
