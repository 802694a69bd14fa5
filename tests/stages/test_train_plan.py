"""The train stage's pure plan and pair fitting, without Ray."""

from __future__ import annotations

import pytest

from rluf_ray.config import load
from rluf_ray.core.text import DEFAULT_TEMPLATE
from rluf_ray.errors import RlufError
from rluf_ray.stages.train import plan
from rluf_ray.training.pairs import fit_pair_prompts, read_jsonl_pairs


def test_plan_cpu_defaults():
    cfg = load(None, ["resources.train_workers=2", "resources.cpus_per_train_worker=1"])
    p = plan(cfg)
    sc = p["scaling_config"]
    assert sc.num_workers == 2 and sc.use_gpu is False
    assert sc.resources_per_worker == {"CPU": 1.0}
    a = p["trainer_args"]
    assert a["use_cpu"] is True and a["ddp_backend"] == "gloo"
    assert a["weight_reduction"] == "mean" and a["drop_zero_weight"] is False
    assert a["loss_type"] == ["sigmoid"] and a["beta"] == cfg.dpo.beta
    assert a["per_device_train_batch_size"] == cfg.dpo.per_device_batch_size
    assert p["lora"] is None
    assert (p["max_prompt_length"], p["max_context"]) == (cfg.dpo.max_prompt_length, cfg.model.max_context)
    from rluf_ray.training.weighted_dpo import WeightedDPOConfig

    built = WeightedDPOConfig(output_dir="unused", **{**a, "ddp_backend": None})  # all real fields
    assert built.weight_reduction == "mean" and built.use_cpu


def test_plan_gpu_scale_knobs_and_lora():
    cfg = load(
        None,
        [
            "resources.use_gpu=true",
            "resources.train_workers=8",
            "dpo.bf16=true",
            "dpo.gradient_checkpointing=true",
            "dpo.fsdp=full_shard auto_wrap",
            "dpo.lora.enabled=true",
            "dpo.lora.r=8",
            "dpo.reduction=normalized",
        ],
    )
    p = plan(cfg)
    assert p["scaling_config"].use_gpu and p["scaling_config"].resources_per_worker["GPU"] == 1.0
    a = p["trainer_args"]
    assert a["ddp_backend"] == "nccl" and a["use_cpu"] is False
    assert a["bf16"] and a["gradient_checkpointing"] and a["fsdp"] == "full_shard auto_wrap"
    assert a["drop_zero_weight"] is True  # default on with normalized
    assert p["lora"]["r"] == 8 and "q_proj" in p["lora"]["target_modules"]


def test_plan_refuses_bf16_on_cpu():
    with pytest.raises(RlufError, match="need GPUs"):
        plan(load(None, ["dpo.bf16=true"]))


def test_run_name_changes_with_dpo_config(tmp_path):
    from rluf_ray.io.artifacts import ArtifactStore
    from rluf_ray.pipeline import stage_fingerprint
    from rluf_ray.stages import train
    from rluf_ray.stages.registry import StageContext

    def name(cfg):
        ctx = StageContext("train", ArtifactStore(tmp_path), fingerprint=stage_fingerprint(cfg, train.STAGE))
        return train.run_name(cfg, ctx)

    base, other = load(None, []), load(None, ["dpo.beta=0.2"])
    assert name(base).startswith("dpo-") and name(base) != name(other)
    assert name(base) == name(load(None, ["resources.train_workers=2"]))  # speed knobs keep the run


def test_off_template_prompt_keeps_its_end():
    rows = [{"prompt": "x" * 50 + " Answer:", "chosen": "a", "rejected": "b", "weight": 1.0}]
    out, stats = fit_pair_prompts(rows, 20, len, DEFAULT_TEMPLATE, lambda t, n: t[-n:])
    assert out[0]["prompt"].endswith("Answer:") and stats.off_template_prompts == 1
    with pytest.raises(RlufError, match="does not follow"):
        fit_pair_prompts(rows, 20, len, DEFAULT_TEMPLATE)


@pytest.mark.parametrize(
    ("line", "msg"),
    [
        ('{"prompt": "p", "chosen": "c", "rejected": "r"}', "missing weight"),
        ('{"prompt": "p", "chosen": "c", "rejected": "r", "weight": -1}', "bad weight"),
        ('{"prompt": "p", "chosen": "c", "rejected": "r", "weight": "NaN"}', "bad weight"),
        ("not json", "not valid JSON"),
    ],
)
def test_bad_pair_files_give_one_line_errors(tmp_path, line, msg):
    path = tmp_path / "pairs.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(RlufError, match=msg):
        read_jsonl_pairs(str(path))
    with pytest.raises(RlufError, match="not found"):
        read_jsonl_pairs(str(tmp_path / "absent.jsonl"))


def test_plan_7b_config_scale_knobs():
    from rluf_ray.config import CONFIG_DIR

    cfg = load(CONFIG_DIR / "llama2_7b_tldr.yaml")
    p = plan(cfg)
    a = p["trainer_args"]
    assert a["ddp_backend"] == "nccl" and a["bf16"] and a["gradient_checkpointing"]
    assert a.get("fsdp") or a.get("deepspeed")
    assert (
        a["per_device_train_batch_size"] * a["gradient_accumulation_steps"] * cfg.resources.train_workers
        == 128
    )
    assert a["precompute_ref_log_probs"] is True
    assert p["scaling_config"].use_gpu and p["scaling_config"].num_workers == cfg.resources.train_workers
