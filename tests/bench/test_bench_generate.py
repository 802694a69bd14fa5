"""Smoke test of `rluf bench generate` at tiny sizes: it runs and its last line is the JSON contract."""

from __future__ import annotations

import json

import pytest

from rluf_ray.cli import main


def test_bench_generate_smoke(capsys) -> None:
    argv = ["bench", "generate", "--samples", "3", "--prompts", "2", "--prompt-tokens", "30",
            "--new-tokens", "2", "--threads", "1", "--repeats", "2"]  # fmt: skip
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert {"engine", "baseline_samples_per_s", "ours_samples_per_s", "ratio"} <= set(result)
    assert result["engine"] == "hf" and result["samples_per_prompt"] == 3
    assert result["rounds"] == 2 and len(result["baseline_per_round"]) == len(result["ours_per_round"]) == 2
    assert result["baseline_samples_per_s"] > 0 and result["ours_samples_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["ours_samples_per_s"] / result["baseline_samples_per_s"], rel=0.02
    )


def test_bench_generate_model_folder_is_checked(tmp_path) -> None:
    with pytest.raises(SystemExit, match="no model folder at .*config.json missing"):
        main(["bench", "generate", "--model", str(tmp_path / "nowhere"), "--samples", "2"])
