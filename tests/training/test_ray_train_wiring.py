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


@pytest.mark.parametrize(("setting", "state_dict_type"), [("sharded", "SHARDED"), ("full", "FULL")])
def test_fsdp_checkpoints_follow_the_setting_and_the_final_model_is_full(
    setting: str, state_dict_type: str, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import FullStateDictConfig
    from transformers import TrainingArguments

    from rluf_ray.config import load

    cfg = load(None, ["sft.fsdp=full_shard auto_wrap", f"sft.fsdp_state_dict={setting}"])
    args = ray_train.common_trainer_args(cfg.sft, use_gpu=True, name="sft").kwargs()
    assert args["fsdp_config"] == {"state_dict_type": f"{state_dict_type}_STATE_DICT"}
    gpu_only = {"use_cpu", "ddp_backend", "dataset_num_proc"}  # built here on a CPU box
    built = TrainingArguments(
        str(tmp_path), use_cpu=True, **{k: v for k, v in args.items() if k not in gpu_only}
    )
    # the plugin exactly as transformers' Trainer makes it for the accelerator
    plugin = FullyShardedDataParallelPlugin(**built.fsdp_plugin_args)
    assert str(plugin.state_dict_type).endswith(f"{state_dict_type}_STATE_DICT")
    trainer = SimpleNamespace(
        is_fsdp_enabled=True, accelerator=SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin))
    )
    # checkpoints stay as configured; the final save_model gathers a full state dict on rank 0
    assert ray_train.full_state_for_final_save(trainer) is (setting == "sharded")
    assert str(plugin.state_dict_type).endswith("FULL_STATE_DICT")
    assert isinstance(plugin.state_dict_config, FullStateDictConfig) and plugin.state_dict_config.rank0_only
    assert ray_train.full_state_for_final_save(trainer) is False  # already full
    assert ray_train.full_state_for_final_save(SimpleNamespace(is_fsdp_enabled=False)) is False


def test_both_loops_load_their_model_and_lora_through_one_function(tiny_model_dir: Path) -> None:
    import torch

    for loop in (sft.sft_train_loop, dpo_loop.dpo_train_loop):
        src = inspect.getsource(loop)
        assert "load_model(config)" in src and "from_pretrained" not in src, loop.__name__
    tok, model, peft = ray_train.load_model(
        {"model_path": str(tiny_model_dir), "dtype": "float32", "lora": None}
    )
    assert peft is None and model.dtype == torch.float32 and tok("a cat")["input_ids"]
    lora = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    _, model, peft = ray_train.load_model(
        {"model_path": str(tiny_model_dir), "dtype": "bfloat16", "lora": lora}
    )
    assert model.dtype == torch.bfloat16
    assert peft.r == 4 and peft.task_type == "CAUSAL_LM" and set(peft.target_modules) == {"q_proj", "v_proj"}
