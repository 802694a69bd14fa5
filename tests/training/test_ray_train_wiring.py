"""Ray Train wiring: Ray's own report callback (every rank reports its checkpoint), scratch removed."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from rluf_ray.training import dpo_loop, ray_train, sft


def test_scratch_dir_is_removed_after_the_loop_even_on_failure() -> None:
    with ray_train.scratch_dir("t") as d:
        Path(d, "checkpoint-1").mkdir()
    assert not Path(d).exists()
    with pytest.raises(RuntimeError), ray_train.scratch_dir("t") as d2:
        raise RuntimeError("worker failed")
    assert not Path(d2).exists()


def test_loops_report_through_rays_callback_from_every_rank() -> None:
    from ray.train.huggingface.transformers import RayTrainReportCallback

    assert not hasattr(ray_train, "RankZeroReportCallback")  # the rank-0-only callback is gone
    # Ray's callback copies get_last_checkpoint(output_dir) into checkpoint/ on every rank: the name
    # resume_checkpoint() looks for.
    assert RayTrainReportCallback.CHECKPOINT_NAME == ray_train.HF_CHECKPOINT
    for loop in (sft.sft_train_loop, dpo_loop.dpo_train_loop):
        src = inspect.getsource(loop)
        assert "RayTrainReportCallback()" in src and "scratch_dir(" in src, loop.__name__
