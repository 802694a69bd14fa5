"""The typed config: shipped YAMLs load, defaults match the original, bad input names the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from rluf_ray.config import (
    CONFIG_DIR,
    ConfigError,
    DpoConfig,
    RlufConfig,
    SftConfig,
    TrainingSection,
    apply_overrides,
    load,
    select,
)
from rluf_ray.stages import evaluate

SHIPPED = sorted(CONFIG_DIR.glob("*.yaml"))


def test_configs_are_shipped() -> None:
    names = {p.name for p in SHIPPED}
    assert {"tiny_cpu.yaml", "llama2_7b_tldr.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path: Path) -> None:
    cfg = load(path)
    assert isinstance(cfg, RlufConfig)


def test_default_is_tiny_cpu() -> None:
    cfg = load()
    assert cfg.model.base_model.startswith("embedded:")
    assert cfg.judge.provider == "offline"
    assert cfg.data.source == "demo"


def test_paper_config() -> None:
    cfg = load(CONFIG_DIR / "llama2_7b_tldr.yaml")
    assert cfg.model.base_model == "meta-llama/Llama-2-7b-hf"
    assert cfg.data.source == "tldr"
    assert cfg.data.tldr.hub_id == "openai/summarize_from_feedback"
    assert (cfg.data.tldr.subset, cfg.data.tldr.split) == ("axis", "validation")
    assert cfg.judge.model == "gpt-4o" and cfg.judge.provider == "openai"
    assert cfg.generation.engine == "vllm"


def test_original_defaults() -> None:
    cfg = RlufConfig()
    assert cfg.data.calibration_size == 50
    assert cfg.generation.sampling_num == 60
    assert cfg.generation.temperature == 0.35
    assert cfg.generation.max_new_tokens == 128
    assert cfg.generation.seed == 42
    assert cfg.conformal.quantile_bars == [0.2, 0.5]
    assert cfg.conformal.accuracy_threshold == 0.7
    assert cfg.conformal.weights_range.values() == pytest.approx([round(0.2 * i, 1) for i in range(11)])
    assert cfg.conformal.random_count == 50
    assert cfg.conformal.split_num == 3
    assert cfg.conformal.similarity_vector_size == 200
    assert (cfg.sft.learning_rate, cfg.sft.num_epochs, cfg.sft.max_length) == (2e-5, 5, 1024)
    assert cfg.dpo.learning_rate == 1.5e-6
    assert cfg.evaluation.model is None  # the evaluation follows judge.model: gpt-4o, as the original
    assert evaluate.plan(cfg).judge.section.model == "gpt-4o"
    assert (cfg.weights.in_small_set, cfg.weights.in_large_set_only) == (0.5, 0.8)
    assert (cfg.weights.in_both, cfg.weights.in_neither) == (0.65, 0.0)


SHARED_TRAINING_DEFAULTS = {
    "max_length": 1024,
    "per_device_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "bf16": False,
    "gradient_checkpointing": False,
    "fsdp": "",
    "deepspeed": None,
    "save_steps": 200,
    "seed": 42,
    "max_failures": 2,
    "max_steps": -1,
}


def test_sft_and_dpo_share_one_training_section() -> None:
    assert issubclass(SftConfig, TrainingSection) and issubclass(DpoConfig, TrainingSection)
    shared = list(TrainingSection.model_fields)
    # the shared fields come first, in the base's order, then each section's own fields
    assert list(SftConfig.model_fields)[: len(shared)] == shared
    assert list(DpoConfig.model_fields)[: len(shared)] == shared
    sft, dpo = RlufConfig().sft, RlufConfig().dpo
    for key, value in SHARED_TRAINING_DEFAULTS.items():
        assert getattr(sft, key) == getattr(dpo, key) == value, key
    assert sft.lora == dpo.lora and not sft.lora.enabled
    # only these defaults differ between the two sections
    assert (sft.learning_rate, sft.num_epochs, sft.logging_steps) == (2e-5, 5, 10)
    assert (dpo.learning_rate, dpo.num_epochs, dpo.logging_steps) == (1.5e-6, 1, 1)
    assert set(SftConfig.model_fields) - set(shared) == {"warmup_ratio", "weight_decay"}
    assert set(DpoConfig.model_fields) - set(shared) == {
        "beta",
        "loss_type",
        "label_smoothing",
        "rpo_alpha",
        "reduction",
        "drop_zero_weight",
        "max_prompt_length",
        "precompute_ref_log_probs",
        "pairs_path",
        "arms",
        "seeds",
    }


def _descriptions(model: type) -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        if not field.description:
            missing.append(f"{model.__name__}.{name}")
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            missing += _descriptions(ann)
    return missing


def test_every_field_has_a_description() -> None:
    assert _descriptions(RlufConfig) == []


def test_overrides_are_dotted_and_typed() -> None:
    cfg = load(
        None, ["generation.sampling_num=20", "conformal.quantile_bars=[0.1, 0.3]", "judge.base_url=null"]
    )
    assert cfg.generation.sampling_num == 20
    assert cfg.conformal.quantile_bars == [0.1, 0.3]
    assert cfg.judge.base_url is None


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["generation.sampling_numx=3"], "generation.sampling_numx: unknown key"),
        (["generation.sampling_num=abc"], "generation.sampling_num:"),
        (
            ["generation.sampling_num=0"],
            "generation.sampling_num: Input should be greater than or equal to 1",
        ),
        (["conformal.quantile_bars=[1.5]"], "conformal.quantile_bars"),
        (["conformal.weights_range.step=0"], "conformal.weights_range.step"),
        (["model.embedded_heads=4"], "head_dim"),
        (["nosuchsection.x=1"], "nosuchsection: unknown key"),
        (["generation=3"], "generation:"),
        (["noequals"], "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_key_path(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(None, overrides)
    msg = str(info.value)
    assert needle in msg
    assert "\n" not in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "nope.yaml")


def test_malformed_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation:\n  sampling_num: [1, 2\n")
    with pytest.raises(ConfigError, match="malformed YAML at line"):
        load(bad)


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load(bad)


def test_override_into_non_section() -> None:
    with pytest.raises(ConfigError, match="is not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_select_reads_dotted_keys() -> None:
    a = load(None)
    assert select(a, ["generation.temperature"]) == {"generation.temperature": 0.85}
    with pytest.raises(KeyError):
        select(a, ["generation.nope"])


def test_dpo_arms_and_seeds() -> None:
    d = load(None, []).dpo
    assert d.arms == ["cfa", "dpo"] and d.seeds is None
    assert d.run_seeds() == [42] and d.units() == [("cfa", 42), ("dpo", 42)]
    d = load(None, ["dpo.seed=7"]).dpo
    assert d.run_seeds() == [7]  # seeds unset: dpo.seed
    d = load(None, ["dpo.seeds=[3, 1]", "dpo.arms=[dpo]", "dpo.seed=7"]).dpo
    assert d.units() == [("dpo", 3), ("dpo", 1)]
    d = load(None, ["dpo.seeds=[5, 6]"]).dpo
    assert d.units() == [("cfa", 5), ("cfa", 6), ("dpo", 5), ("dpo", 6)]
    for bad in ("dpo.arms=[]", "dpo.arms=[cfa, cfa]", "dpo.arms=[rluf]", "dpo.seeds=[]", "dpo.seeds=[1, 1]"):
        with pytest.raises(ConfigError, match="dpo"):
            load(None, [bad])


def test_evaluation_judges_with_the_judge_model_unless_set() -> None:
    # README: `rluf run-all --set judge.provider=openai --set judge.model=smollm2-judge` against one
    # local server: evaluate must ask that server's model, not gpt-4o (every call was a 404)
    cfg = load(None, ["judge.provider=openai", "judge.model=smollm2-judge"])
    assert evaluate.plan(cfg).judge.section.model == "smollm2-judge"
    cfg = load(None, ["judge.provider=openai", "judge.model=smollm2-judge", "evaluation.model=gpt-4o"])
    assert evaluate.plan(cfg).judge.section.model == "gpt-4o"
