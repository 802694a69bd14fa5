"""A stage's key is the hash of its typed plan's non-operational fields; change one config key at a time
and check that the operational marks agree with the config's operational keys.

``plan(cfg)`` is each stage's typed account of everything its run takes from the config (the run gets
the plan, never the config), and the key hashes every field not declared ``operational()``. So:

(a) an operational key (``config.is_operational``: resources, limits, where things live) never changes
    a stage's key: it reaches operational fields only (a hashed field fed by one re-runs needlessly);
(b) any other key changes a stage's key exactly when it changes that stage's whole plan (operational
    fields included): a result key that reaches only an operational field (the judge section a
    service runs with, Ray resources) would leave stale results, unless ``GATES`` says this config
    gates it off (the offline judge has no model, so ``judge.model`` travels in its section unread);
(c) every non-operational key changes some stage's key in some tested config, else it is dead
    (``UNREAD`` names the legitimate ones, with the reason).

Run on the embedded default, the paper's config, and the default with ``data.source=files`` and with
LoRA and the other knobs both leave off, whose gates differ.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

import pytest

from rluf_ray.config import (
    CONFIG_DIR,
    ConfigError,
    RlufConfig,
    from_dict,
    is_operational,
    leaf_keys,
    load,
    operational,
    plan_data,
    plan_type,
)
from rluf_ray.errors import RlufError
from rluf_ray.pipeline import stage_key
from rluf_ray.stages.registry import StageDef, all_stages

FILES = [
    "data.source=files",
    *(f"data.{s}_file=/data/{s}.jsonl" for s in ("train", "calibration", "test", "eval")),
]
CONFIGS: dict[str, tuple[str, list[str]]] = {
    "tiny": ("tiny_cpu.yaml", []),
    "paper": ("llama2_7b_tldr.yaml", []),
    "files": ("tiny_cpu.yaml", FILES),  # plans load nothing: the files need not exist
    # what both shipped configs leave off: LoRA, an SFT length under the context, the normalized
    # reduction (under which an unset dpo.drop_zero_weight means on)
    "knobs": (
        "tiny_cpu.yaml",
        ["sft.lora.enabled=true", "dpo.lora.enabled=true", "sft.max_length=64", "dpo.reduction=normalized"],
    ),
}

# Keys this test does not perturb, and why (each is covered elsewhere).
NOT_PERTURBED = {
    "dpo.pairs_path": "its content is hashed, not its path (test_train_pairs_content_is_hashed)",
}

# Result keys that may reach a stage's plan through operational fields only, where the config gates
# them off: each stage hands the judge service the whole judge section (operational) and hashes the
# settings a judgement depends on under its provider (JudgeSettings) and the templates it uses itself.
GATES: dict[str, typing.Callable[[RlufConfig], bool]] = {
    # the service never reads a template (each request names its version); the stage hashes its own
    "judge.templates.": lambda c: True,
    # settings the configured provider ignores
    "judge.offline_noise": lambda c: c.judge.provider != "offline",
    "judge.seed": lambda c: c.judge.provider != "offline",
    "judge.model": lambda c: c.judge.provider == "offline",
    "judge.base_url": lambda c: c.judge.provider == "offline",
    "judge.temperature": lambda c: c.judge.provider == "offline",
    "judge.max_tokens": lambda c: c.judge.provider == "offline",
    "judge.structured_output": lambda c: c.judge.provider == "offline",
    "judge.max_parse_retries": lambda c: c.judge.provider == "offline",
    "evaluation.model": lambda c: c.judge.provider == "offline",  # evaluate's section holds it as judge.model
}

# Non-operational keys no stage's key depends on in any tested config, and why.
UNREAD: dict[str, str] = {}


def _annotation(cfg: RlufConfig, key: str) -> Any:
    node: Any = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        node = getattr(node, part)
    return type(node).model_fields[parts[-1]].annotation


def _candidates(value: Any, annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return [a for a in args if a != value]
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None:
            return [c for a in inner for c in _candidates(_example(a), a)] + [_example(a) for a in inner]
        return [c for a in inner for c in _candidates(value, a)] + [None]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, value * 2, 2]
    if isinstance(value, float):
        return [value * 1.5 if value else 0.1, value / 2, value + 0.05, value - 0.05, 0.5]
    if isinstance(value, str):
        return [value + " x", "x"]
    if isinstance(value, list):
        if value and isinstance(value[0], float):
            return [[*value[:-1], round(value[-1] - 0.1, 6)], [*value[:-1], round(value[-1] + 0.1, 6)]]
        return [value[:-1], [*value, "x"]] if value else [["x"]]
    if isinstance(value, dict):  # e.g. resources.custom_resources: dict[str, float]
        return [{**value, "rluf_x": 1.0}, {}] if value else [{"rluf_x": 1.0}]
    raise TypeError(f"no perturbation for {value!r}")


def _example(annotation: Any) -> Any:
    if typing.get_origin(annotation) is list:  # e.g. dpo.seeds: list[int] | None
        return [_example(typing.get_args(annotation)[0])]
    return {int: 3, float: 0.5, str: "x", bool: True}.get(annotation, None)


def perturb(cfg: RlufConfig, key: str) -> RlufConfig | None:
    """A valid config that differs from ``cfg`` in ``key`` only (None if no candidate validates).

    A one-value Literal of str (a judge task with a single shipped template version) has no other
    valid value: it gets the value a next version would have (``+ "_x"``), set without validation.
    """
    data = cfg.model_dump(mode="json")
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node[part]
    annotation = _annotation(cfg, key)
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal and len(args) == 1 and isinstance(args[0], str):
        out = cfg.model_copy(deep=True)
        section: Any = out
        for part in parts[:-1]:
            section = getattr(section, part)
        object.__setattr__(section, parts[-1], args[0] + "_x")
        return out
    for candidate in _candidates(node[parts[-1]], _annotation(cfg, key)):
        node[parts[-1]] = candidate
        try:
            out = from_dict(data)
        except ConfigError:
            continue
        if out.model_dump(mode="json") != cfg.model_dump(mode="json"):
            return out
    return None


def gated(key: str, cfg: RlufConfig) -> bool:
    return any(key.startswith(prefix) and off(cfg) for prefix, off in GATES.items())


Outcome = tuple[Any, str | None]  # (the whole plan as data, the stage key); a refused plan has no key


def outcome(stage: StageDef[Any], cfg: RlufConfig) -> Outcome:
    try:
        plan = stage.plan(cfg)
    except RlufError as exc:  # a refused config is part of the plan too; it has no key (nothing runs)
        return ["refused", str(exc)], None
    return plan_data(plan), stage_key(stage, plan)


@dataclasses.dataclass
class Findings:
    problems: list[str]
    moved: set[str]  # non-operational keys that changed some stage's key
    gates_used: set[str]
    checked: int
    unperturbed: list[str]


def check(base: RlufConfig, stages: list[StageDef[Any]], keys: list[str]) -> Findings:
    """Perturb each key of ``keys`` alone and hold every stage's plan and key to rules (a) and (b)."""
    before = {s.name: outcome(s, base) for s in stages}
    assert all(k is not None for _, k in before.values()), "a tested config is refused"
    out = Findings([], set(), set(), 0, [])
    for key in keys:
        changed = perturb(base, key)
        if changed is None:
            out.unperturbed.append(key)
            continue
        out.checked += 1
        for s in stages:
            (plan0, key0), (plan1, key1) = before[s.name], outcome(s, changed)
            if is_operational(key):
                if key1 is not None and key1 != key0:
                    out.problems.append(f"{key}: operational, but it changes {s.name}'s key (a hashed field)")
                continue
            plan_moved, key_moved = plan1 != plan0, key1 != key0
            if key_moved:
                out.moved.add(key)
            if plan_moved and not key_moved:
                gate = next((g for g in GATES if key.startswith(g) and GATES[g](base)), None)
                if gate is None:
                    out.problems.append(
                        f"{key}: changes {s.name}'s plan in operational fields only (stale results)"
                    )
                else:
                    out.gates_used.add(gate)
            elif key_moved and not plan_moved:
                out.problems.append(f"{key}: changes {s.name}'s key but not its plan")
    return out


@functools.cache
def findings(config: str) -> Findings:
    path, overrides = CONFIGS[config]
    base = load(CONFIG_DIR / path, overrides)
    keys = [k for k in leaf_keys(base) if k not in NOT_PERTURBED]
    return check(base, all_stages(), keys)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_stage_keys_follow_the_operational_marks(config: str) -> None:
    found = findings(config)
    assert not found.unperturbed, f"no valid perturbation for {found.unperturbed}"
    assert found.checked > 100, found.checked
    assert not found.problems, "\n".join(found.problems)


def test_no_dead_keys_and_no_idle_gates() -> None:
    base = load(None)
    result = [k for k in leaf_keys(base) if not is_operational(k) and k not in NOT_PERTURBED]
    moved = set().union(*(findings(c).moved for c in CONFIGS))
    dead = sorted(set(result) - moved - set(UNREAD))
    assert not dead, f"result keys no stage's key depends on in any tested config (dead keys): {dead}"
    stale = sorted(set(UNREAD) & moved)
    assert not stale, f"listed in UNREAD but some stage's key depends on them: {stale}"
    idle = sorted(set(GATES) - set().union(*(findings(c).gates_used for c in CONFIGS)))
    assert not idle, f"GATES entries that excuse nothing: {idle}"


@plan_type
class _LeakyPlan:
    real: Any
    top_p: float = operational()  # a result value in an operational field


@plan_type
class _WastefulPlan:
    real: Any
    actors: int  # an operational value in a hashed field


def test_the_check_catches_a_result_key_in_an_operational_field() -> None:
    """Rule (b) can fail: a plan field marked operational that a result key feeds is caught."""
    real = next(s for s in all_stages() if s.name == "calibrate")
    leaky = dataclasses.replace(
        real, plan_fn=lambda c: _LeakyPlan(real=real.plan(c), top_p=c.generation.top_p)
    )
    found = check(load(None), [leaky], ["generation.top_p", "conformal.seed"])
    assert found.problems == [
        "generation.top_p: changes calibrate's plan in operational fields only (stale results)"
    ]


def test_the_check_catches_an_operational_key_in_a_hashed_field() -> None:
    """Rule (a) can fail: a hashed plan field that an operational key feeds is caught."""
    real = next(s for s in all_stages() if s.name == "weights" or s.name == "assign-weights")
    wasteful = dataclasses.replace(
        real, plan_fn=lambda c: _WastefulPlan(real=real.plan(c), actors=c.resources.engine_actors)
    )
    found = check(load(None), [wasteful], ["resources.engine_actors", "weights.in_both"])
    assert found.problems == [
        "resources.engine_actors: operational, but it changes assign-weights's key (a hashed field)"
    ]


def test_every_leaf_is_perturbable_in_isolation() -> None:
    base = load(None)
    for key in ("generation.engine", "judge.provider", "conformal.quantile_bars", "dpo.drop_zero_weight"):
        changed = perturb(base, key)
        assert changed is not None, key
        diff = [k for k in leaf_keys(base) if _get(changed, k) != _get(base, k)]
        assert diff == [key]


def _get(cfg: RlufConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def test_a_new_offline_rubric_rule_changes_only_the_evaluation_key(monkeypatch) -> None:
    """The offline judge's rule versions are no config key: a new rubric rule must still re-run evaluate
    (it asks the rubric) and nothing else (feedback and generate ask pairwise and score)."""
    from rluf_ray.judge.registry import get_provider

    base = load(None)
    stages = all_stages()
    before = {s.name: outcome(s, base)[1] for s in stages}
    offline = get_provider("offline")
    monkeypatch.setattr(offline, "rule_versions", {**offline.rule_versions, "rubric": "rubric_next"})
    changed = {s.name for s in stages if outcome(s, base)[1] != before[s.name]}
    assert changed == {"evaluate"}
