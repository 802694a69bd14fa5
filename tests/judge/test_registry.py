"""The provider registry: its names, one-line refusals, and the judge settings each provider's
judgements depend on (the values the stages hashed before the registry existed, written out)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from rluf_ray.config import ConfigError, JudgeConfig, load
from rluf_ray.errors import RlufError
from rluf_ray.judge.api import JUDGE_RESULT_KEYS, result_settings
from rluf_ray.judge.offline_rubric import RULE_VERSION as RUBRIC_RULE
from rluf_ray.judge.registry import PROVIDERS, get_provider, provider_names, select_provider

REPO = Path(__file__).resolve().parents[2]
SECTION = {
    "model": "judge-m",
    "base_url": "http://127.0.0.1:9/v1",
    "temperature": 0.3,
    "max_tokens": 77,
    "structured_output": "none",
    "max_parse_retries": 4,
    "offline_noise": 0.1,
    "seed": 5,
    "requests_per_minute": 12,  # operational: in no provider's settings
}


def test_the_registry_lists_the_providers() -> None:
    assert provider_names() == ["offline", "openai", "batch"]
    for name in provider_names():
        provider = get_provider(name)
        assert provider.name == name
        assert isinstance(provider.result_fields, tuple) and provider.batch_provider in (None, *PROVIDERS)
        assert callable(provider.judge) and callable(provider.dry_run)


def test_judge_provider_accepts_exactly_the_registered_names() -> None:
    annotation = JudgeConfig.model_fields["provider"].annotation
    assert typing.get_origin(annotation) is typing.Literal
    assert list(typing.get_args(annotation)) == list(PROVIDERS)


def test_an_unknown_provider_fails_in_one_line_listing_the_valid_ones() -> None:
    with pytest.raises(RlufError) as err:
        get_provider("anthropic")
    assert str(err.value) == "judge.provider: unknown provider 'anthropic' (valid: offline, openai, batch)"
    with pytest.raises(ConfigError) as cfg_err:
        load(None, ["judge.provider=anthropic"])
    assert str(cfg_err.value) == "judge.provider: Input should be 'offline', 'openai' or 'batch'"


def test_result_settings_per_provider() -> None:
    offline = JudgeConfig.model_validate({**SECTION, "provider": "offline"})
    openai = JudgeConfig.model_validate({**SECTION, "provider": "openai"})
    batch = JudgeConfig.model_validate({**SECTION, "provider": "batch"})
    assert result_settings(offline) == {"provider": "offline", "offline_noise": 0.1, "seed": 5}
    assert result_settings(openai) == {
        "provider": "openai",
        "model": "judge-m",
        "base_url": "http://127.0.0.1:9/v1",
        "temperature": 0.3,
        "max_tokens": 77,
        "structured_output": "none",
        "max_parse_retries": 4,
    }
    assert result_settings(batch) == {
        "provider": "batch",
        "model": "judge-m",
        "base_url": "http://127.0.0.1:9/v1",
        "temperature": 0.3,
        "max_tokens": 77,
        "structured_output": "none",
        "max_parse_retries": 4,
    }
    defaults = JudgeConfig()
    assert result_settings(defaults) == {
        "provider": "openai",
        "model": "gpt-4o",
        "base_url": None,
        "temperature": 0.0,
        "max_tokens": 256,
        "structured_output": "json_schema",
        "max_parse_retries": 2,
    }


def test_rule_versions_are_settings_of_the_tasks_a_stage_asks() -> None:
    offline = JudgeConfig.model_validate({**SECTION, "provider": "offline"})
    openai = JudgeConfig.model_validate({**SECTION, "provider": "openai"})
    base = {"provider": "offline", "offline_noise": 0.1, "seed": 5}
    assert get_provider("offline").rule_versions == {"rubric": RUBRIC_RULE}
    assert result_settings(offline, ("pairwise", "rubric")) == {**base, "rule.rubric": RUBRIC_RULE}
    # score and pairwise keep their first rules: their stages' settings (and keys) are as before
    assert result_settings(offline, ("score", "pairwise")) == base
    assert result_settings(openai, ("rubric",)) == result_settings(openai)  # a model judges: no rule
    assert get_provider("batch").rule_versions == {}


def test_result_keys_of_every_provider() -> None:
    assert set(JUDGE_RESULT_KEYS) == {
        "judge.provider",
        "judge.model",
        "judge.base_url",
        "judge.temperature",
        "judge.max_tokens",
        "judge.structured_output",
        "judge.max_parse_retries",
        "judge.offline_noise",
        "judge.seed",
    }
    assert len(JUDGE_RESULT_KEYS) == 9


def test_the_batch_api_flag_picks_the_providers_batch_mode() -> None:
    assert select_provider("openai").name == "openai"
    assert select_provider("openai", use_batch_api=True).name == "batch"
    assert select_provider("batch").name == "batch"
    assert select_provider("offline", use_batch_api=True).name == "offline"  # no batch mode: as before


def test_nothing_outside_the_judge_package_branches_on_the_provider_name() -> None:
    branch = re.compile(r"\bprovider\b\s*(==|!=|\bin\b|\bnot in\b)|(==|!=)\s*\S*\bprovider\b")
    found = []
    for path in sorted((REPO / "rluf_ray").rglob("*.py")):
        if "judge" in path.relative_to(REPO / "rluf_ray").parts[:1]:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if branch.search(line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
