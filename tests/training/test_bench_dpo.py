"""Smoke test of `rluf bench dpo` at tiny sizes: runs both trainers and prints the JSON keys last."""

from __future__ import annotations

import json

from rluf_ray.bench.dpo import main, make_pairs


def test_make_pairs_zero_share():
    rows = make_pairs(100, 0.237, 5, 3, 0)
    assert sum(r["weight"] == 0 for r in rows) == 24
    assert all(r["prompt"].endswith("\nSummary:") for r in rows)


def test_bench_dpo_smoke(capsys):
    argv = ["--steps", "2", "--warmup", "1", "--batch", "2", "--layers", "1", "--prompt-words", "10",
            "--answer-words", "4", "--pairs", "8", "--epochs", "1", "--zero-share", "0.25"]  # fmt: skip
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(last)
    assert {"trl_step_s", "ours_step_s", "overhead_ratio", "drop_zero_speedup"} <= data.keys()
    assert data["trl_step_s"] > 0 and data["ours_step_s"] > 0 and data["drop_zero_speedup"] > 0
