"""The SFT stage's pure plan, without Ray."""

from __future__ import annotations

import pytest

from rluf_ray.config import load
from rluf_ray.errors import RlufError
from rluf_ray.stages.sft import plan


def test_sft_plan_cpu():
    cfg = load(None, ["resources.train_workers=2", "sft.per_device_batch_size=3"])
    p = plan(cfg)
    sc = p.scaling.ray_config()
    assert sc.num_workers == 2 and not sc.use_gpu
    t = p.trainer_args
    assert t.completion_only_loss is True and t.packing is False
    assert t.common.ddp_backend == "gloo" and t.common.use_cpu is True
    assert t.common.per_device_train_batch_size == 3
    assert t.max_length == min(cfg.sft.max_length, cfg.model.max_context)
    assert t.common.learning_rate == cfg.sft.learning_rate and t.common.num_train_epochs == cfg.sft.num_epochs
    assert p.lora is None and p.base_model == cfg.model.base_model
    a = t.kwargs()
    assert (
        a["completion_only_loss"] is True and a["per_device_train_batch_size"] == 3 and a["use_cpu"] is True
    )
    from trl import SFTConfig

    built = SFTConfig(output_dir="unused", **{**a, "ddp_backend": None})  # all real SFTConfig fields
    assert built.completion_only_loss is True and built.warmup_steps == pytest.approx(cfg.sft.warmup_ratio)


def test_sft_plan_7b_config_scale_knobs():
    from rluf_ray.config import CONFIG_DIR

    cfg = load(CONFIG_DIR / "llama2_7b_tldr.yaml")
    p = plan(cfg)
    a = p.trainer_args.kwargs()
    assert a["ddp_backend"] == "nccl" and a["bf16"] and a["gradient_checkpointing"]
    assert a.get("fsdp") or a.get("deepspeed")
    # each rank checkpoints its own shard
    assert a.get("fsdp_config") == {"state_dict_type": "SHARDED_STATE_DICT"}
    assert p.scaling.use_gpu and p.scaling.workers == cfg.resources.train_workers
    sc = p.scaling.ray_config()
    assert sc.use_gpu and sc.num_workers == cfg.resources.train_workers


def test_sft_plan_refuses_bf16_on_cpu():
    with pytest.raises(RlufError, match="need GPUs"):
        plan(load(None, ["sft.bf16=true"]))
