"""The train stage's pure plan and pair fitting, without Ray."""

from __future__ import annotations

import json

import pytest

from rluf_ray.common.text import DEFAULT_TEMPLATE
from rluf_ray.config import load
from rluf_ray.errors import RlufError
from rluf_ray.stages.train import plan
from rluf_ray.training.pairs import fit_pair_prompts, read_jsonl_pairs


def test_plan_cpu_defaults():
    cfg = load(None, ["resources.train_workers=2", "resources.cpus_per_train_worker=1"])
    p = plan(cfg)
    sc = p.scaling.ray_config()
    assert sc.num_workers == 2 and sc.use_gpu is False
    assert sc.resources_per_worker == {"CPU": 1.0}
    t = p.trainer_args
    assert t.common.use_cpu is True and t.common.ddp_backend == "gloo"
    assert t.weight_reduction == "mean" and p.drop_zero is False
    assert t.loss_type == "sigmoid" and t.beta == cfg.dpo.beta
    assert t.common.per_device_train_batch_size == cfg.dpo.per_device_batch_size
    assert p.lora is None
    assert (p.max_prompt_length, p.max_context) == (cfg.dpo.max_prompt_length, cfg.model.max_context)
    a = t.kwargs()
    assert a["loss_type"] == ["sigmoid"] and a["use_cpu"] is True and a["weight_reduction"] == "mean"
    assert "drop_zero_weight" not in a  # the stage drops zero-weight pairs; the trainer filters none
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
    sc = p.scaling.ray_config()
    assert sc.use_gpu and sc.resources_per_worker["GPU"] == 1.0
    a = p.trainer_args.kwargs()
    assert a["ddp_backend"] == "nccl" and a["use_cpu"] is False
    assert a["bf16"] and a["gradient_checkpointing"] and a["fsdp"] == "full_shard auto_wrap"
    assert p.drop_zero is True  # default on with normalized
    assert p.lora is not None and p.lora.r == 8 and "q_proj" in p.lora.target_modules
    assert p.lora.kwargs()["target_modules"] == list(p.lora.target_modules)


def test_plan_refuses_bf16_on_cpu():
    with pytest.raises(RlufError, match="need GPUs"):
        plan(load(None, ["dpo.bf16=true"]))


def test_unit_keys_and_run_names():
    from rluf_ray.stages.train import run_name, unit_key
    from rluf_ray.store.artifacts import manifest_digest

    def key(overrides, arm="cfa", seed=42, upstream=None):
        ups = {"sft": "s1", "assign-weights": "w1"} if upstream is None else upstream
        return unit_key(plan(load(None, overrides)), arm, seed, {}, ups)

    base = key([])
    assert base["arm"] == "cfa" and base["seed"] == 42
    assert key([]) == base  # stable
    assert key(["dpo.beta=0.2"]) != base  # a result key changes every unit
    assert key(["dpo.save_steps=5", "resources.judge_actors=4"]) == base  # operational keys keep the unit
    assert key(["resources.train_workers=2"]) != base  # the global batch is a result
    # adding a seed or an arm, or naming the default seed in the list, keeps the finished units
    assert key(["dpo.seeds=[42, 7]"]) == base and key(["dpo.arms=[cfa]"]) == base
    assert key(["dpo.seed=7", "dpo.seeds=[42]"]) == base
    assert key([], seed=7) != base and key([], arm="dpo") != base
    assert key([], upstream={"sft": "s1", "assign-weights": "w2"}) != base  # new weighted pairs
    names = {run_name(manifest_digest(key([], a, s)), a, s) for a in ("cfa", "dpo") for s in (1, 2)}
    assert len(names) == 4 and all(n.startswith("dpo-") for n in names)
    assert run_name("ab" * 32, "dpo", 3) == "dpo-abababababab-dpo-s3"


def test_plan_arms_seeds_and_unit_selection():
    from rluf_ray.stages.train import missing_message, select_units, unit_dir

    p = plan(load(None, []))
    assert p.arms == ("cfa", "dpo") and p.seeds == (42,)
    p = plan(load(None, ["dpo.seeds=[1, 2]", "dpo.arms=[dpo]"]))
    assert p.arms == ("dpo",) and p.seeds == (1, 2) and p.units() == [("dpo", 1), ("dpo", 2)]
    units = [("cfa", 1), ("cfa", 2), ("dpo", 1), ("dpo", 2)]
    assert select_units(units, None) == units
    assert select_units(units, "dpo") == [("dpo", 1), ("dpo", 2)]
    with pytest.raises(RlufError, match="add dpo to dpo.arms"):
        select_units([("cfa", 1)], "dpo")
    assert unit_dir("cfa", 42) == "cfa/seed-42"
    assert missing_message([("dpo", 1), ("dpo", 2)]) == (
        "units still missing: dpo/seed-1, dpo/seed-2; run `rluf train --arm dpo` to finish the stage"
    )
    assert missing_message([("cfa", 1), ("dpo", 1)]).endswith("run `rluf train` to finish the stage")


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
    a = p.trainer_args.kwargs()
    assert a["ddp_backend"] == "nccl" and a["bf16"] and a["gradient_checkpointing"]
    assert a.get("fsdp") or a.get("deepspeed")
    assert (
        a["per_device_train_batch_size"] * a["gradient_accumulation_steps"] * cfg.resources.train_workers
        == 128
    )
    assert a["precompute_ref_log_probs"] is True
    assert p.scaling.use_gpu and p.scaling.ray_config().num_workers == cfg.resources.train_workers


def test_external_pairs_are_read_through_the_store(s3_env, tmp_path) -> None:
    """`rluf train --pairs s3://...`: the driver reads (and hashes) the pairs through pyarrow's S3."""
    import uuid

    from rluf_ray.stages import train as train_stage
    from rluf_ray.store.artifacts import ArtifactStore

    bucket = s3_env.bucket(f"rluf-{uuid.uuid4().hex[:8]}")
    rows = [{"prompt": f"p{i}", "chosen": "c", "rejected": "r", "weight": 0.5 + i} for i in range(3)]
    store = ArtifactStore(f"{bucket}/ext")
    store.write_bytes("pairs", "w.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    uri = store.uri("pairs", "w.jsonl")
    got, source = train_stage.load_pairs(uri, None)  # type: ignore[arg-type]
    assert source == uri and [r["weight"] for r in got] == [0.5, 1.5, 2.5]
    plan = train_stage.plan(load(None, [f"dpo.pairs_path={uri}"]))
    assert train_stage.inputs(plan)["pairs_sha256"]  # hashed through the store too
    with pytest.raises(RlufError, match=f"file not found: {bucket}/ext/pairs/absent"):
        train_stage.load_pairs(f"{bucket}/ext/pairs/absent.jsonl", None)  # type: ignore[arg-type]
