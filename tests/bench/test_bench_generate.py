"""`rluf bench generate` at tiny sizes: the real stage, the bare baseline and the loop, one JSON line."""

from __future__ import annotations

import json

import pytest

from rluf_ray.cli import main


@pytest.mark.ray
@pytest.mark.slow
def test_bench_generate_times_the_stage_against_bare_generate(capsys) -> None:
    argv = ["bench", "generate", "--prompts", "3", "--samples", "3", "--new-tokens", "2", "--batch", "1",
            "--loop-prompts", "1"]  # fmt: skip
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    r = json.loads(last)
    keys = {"engine", "model", "prompts", "stage_samples_per_s", "bare_samples_per_s", "ratio_vs_bare",
            "loop_samples_per_s", "engine_start_s"}  # fmt: skip
    assert keys <= set(r)
    assert (r["engine"], r["prompts"], r["samples_per_prompt"]) == ("hf", 3, 3)
    ph = r["phases"]
    # every prompt went through the timed engines of the stage: one call per batch of 1 prompt
    assert ph["samples"] == 9 and ph["engine_calls"] == 3
    assert ph["actors"] in (1, 2)  # the second actor may still be starting when 3 tiny batches are done
    parts = ph["before_engines_s"] + ph["engine_start_s"] + ph["after_last_call_s"]
    assert 0 < parts <= ph["wall_s"] + 0.01
    ratio = r["stage_samples_per_s"] / r["bare_samples_per_s"]
    assert r["ratio_vs_bare"] == pytest.approx(ratio, rel=0.01, abs=6e-4)  # rounded to 3 decimals
    assert r["stage_end_to_end_samples_per_s"] < r["stage_samples_per_s"]
    assert r["loop_samples_per_s"] > 0


def test_bench_generate_model_folder_is_checked(tmp_path) -> None:
    with pytest.raises(SystemExit, match="no model folder at .*config.json missing"):
        main(["bench", "generate", "--model", str(tmp_path / "nowhere"), "--samples", "2"])


def test_bench_generate_threads_must_split_over_the_actors() -> None:
    with pytest.raises(SystemExit, match="must split evenly"):
        main(["bench", "generate", "--threads", "3", "--actors", "2"])
