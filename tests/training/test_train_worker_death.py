"""Fault (d): a Train worker process dies mid-run; Ray Train restarts it and SFT resumes from the
last checkpoint (fired at a chosen step by a fault point, never by a timed kill)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rluf_ray.config import load
from rluf_ray.pipeline import run_stage
from rluf_ray.store.artifacts import ArtifactStore


@pytest.mark.ray
@pytest.mark.slow
def test_sft_resumes_after_its_worker_dies(ray_idle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "worker-died"
    monkeypatch.setenv("RLUF_FAULT_TRAIN_STEP", f"3:exit:{marker}")  # rank 0 dies after step 3 ...
    cfg = load(None, [
        f"output_dir={tmp_path / 'out'}", "data.sft_size=16", "sft.max_steps=4", "sft.save_steps=2",  # ... after the step-2 checkpoint
        "sft.logging_steps=1", "sft.max_length=128", "sft.per_device_batch_size=4", "sft.max_failures=1",
        "resources.train_workers=1", "resources.cpus_per_train_worker=1",
    ])  # fmt: skip
    man = run_stage(cfg, ArtifactStore(cfg.output_dir), "sft")
    assert marker.is_file()  # the worker really died at step 3
    assert man is not None and man.status == "complete"
    summary = json.loads((tmp_path / "out" / "sft" / "sft_summary.json").read_text())
    assert summary["resumed"] is True and summary["global_step"] == 4
    curves = [json.loads(x) for x in (tmp_path / "out" / "sft" / "curves.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curves] == [1, 2, 3, 4]  # step 3 redone from the step-2 checkpoint, once
