"""Req 3 of issue 11 on CPU: two Train workers with FSDP-sharded model and optimiser state (torch FSDP2
over gloo), checkpointed from every rank through the project's Ray Train wiring, resume from the last
checkpoint after a failure and end exactly where an uninterrupted run ends.

The HF loops' own FSDP path needs GPUs (accelerate enables FSDP only for GPU-like devices); it is
tested in ``tests/gpu/test_fsdp_resume.py``. Here the loop is torch's FSDP2 directly
(``tests.support.fsdp_loop``); everything around it is the code the HF loops use: ``fit_and_export``
(checkpoints in the artifact store, ``FailureConfig``, export, checkpoints dropped),
``resume_checkpoint`` and ``scratch_dir``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.training.ray_train import TrainRun, TrainScaling, fit_and_export
from tests.support.checkpoints import hf_checkpoint_files, record_checkpoints_before_delete
from tests.support.fsdp_loop import FINAL_WEIGHTS, STEP_FILE, fsdp_train_loop

STEPS, SAVE_EVERY, FAIL_AFTER = 6, 2, 5  # fails after step 5: resumes from the step-4 checkpoint


def _run(store: ArtifactStore, name: str, fail_at_step: int) -> dict:
    run = TrainRun(
        name=name, scaling=TrainScaling(workers=2, use_gpu=False, cpus_per_worker=1), max_failures=1
    )
    config = {"steps": STEPS, "save_every": SAVE_EVERY, "fail_at_step": fail_at_step, "trainer_args": {}}
    return fit_and_export(fsdp_train_loop, config, run, store, name, "", f"FSDP test run {name}")


@pytest.mark.ray
@pytest.mark.slow
def test_two_worker_fsdp_on_cpu_resumes_from_its_sharded_checkpoint(
    ray_idle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    store = ArtifactStore(tmp_path / "out")
    seen = record_checkpoints_before_delete(monkeypatch)

    failed = _run(store, "resumed", fail_at_step=FAIL_AFTER)
    assert failed["resumed"] is True and failed["start"] == 4 and failed["step"] == STEPS
    checkpoints = hf_checkpoint_files(seen["checkpoints"])
    assert checkpoints, sorted(seen["checkpoints"])[:20]
    for files in checkpoints.values():  # every rank's shard reached Ray Train's storage in the store
        assert {"__0_0.distcp", "__1_0.distcp", STEP_FILE} <= files, sorted(files)
    assert not (tmp_path / "out" / "resumed" / "checkpoints").exists()  # dropped after the export

    straight = _run(store, "straight", fail_at_step=0)
    assert straight["resumed"] is False and straight["start"] == 0

    def weights(stage: str) -> dict[str, torch.Tensor]:
        return torch.load(tmp_path / "out" / stage / "model" / FINAL_WEIGHTS, weights_only=True)

    resumed, reference = weights("resumed"), weights("straight")
    assert resumed.keys() == reference.keys() and len(resumed) == 4
    for key, value in reference.items():  # both ranks' model and AdamW shards were restored exactly
        assert torch.equal(resumed[key], value), key
    assert not all(torch.equal(v, torch.zeros_like(v)) for v in resumed.values())
