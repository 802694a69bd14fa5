"""A stage's hash keys follow from what it reads: change one config key at a time and check that a stage
goes stale (its fingerprint changes) exactly when its plan changes.

``plan(cfg)`` is each stage's pure account of everything it takes from the config, so:

* plan changed, fingerprint unchanged: the stage reads a key it does not declare (stale results);
* fingerprint changed, plan unchanged: the stage declares a key it never reads (needless re-runs),
  unless the key is gated off in this config (e.g. ``data.tldr.*`` under the demo source);
* operational keys (``config.OPERATIONAL_KEYS``: placement, limits, where things live) never change
  a fingerprint, whatever they do to a plan.

Run on the embedded default and on the paper's config, whose gates differ.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from rluf_ray.config import CONFIG_DIR, ConfigError, RlufConfig, from_dict, is_operational, leaf_keys, load
from rluf_ray.errors import RlufError
from rluf_ray.pipeline import stage_fingerprint
from rluf_ray.stages.registry import StageDef, all_stages

# Keys this test does not perturb, and why (each is covered elsewhere).
NOT_PERTURBED = {
    "dpo.pairs_path": "its content is hashed, not its path (test_train_pairs_content_is_hashed)",
}

# A declared key may leave the plan unchanged only where the config gates it off.
GATES: dict[str, typing.Callable[[RlufConfig], bool]] = {
    "data.tldr.": lambda c: c.data.source != "tldr",
    "data.demo.": lambda c: c.data.source != "demo",
    # The tldr partition reads every split's size and the data seed; the demo reads its own size only.
    "data.calibration_size": lambda c: c.data.source != "tldr",
    "data.test_size": lambda c: c.data.source != "tldr",
    "data.eval_size": lambda c: c.data.source != "tldr",
    "data.seed": lambda c: c.data.source != "tldr",
    "data.train_file": lambda c: c.data.source != "files",
    "data.calibration_file": lambda c: c.data.source != "files",
    "data.test_file": lambda c: c.data.source != "files",
    "data.eval_file": lambda c: c.data.source != "files",
    "sft.lora.": lambda c: not c.sft.lora.enabled,
    "dpo.lora.": lambda c: not c.dpo.lora.enabled,
    "model.embedded_": lambda c: c.model.base_model != "embedded:tiny-llama",
    "judge.offline_noise": lambda c: c.judge.provider != "offline",
    "judge.seed": lambda c: c.judge.provider != "offline",
    "judge.model": lambda c: c.judge.provider == "offline",
    "judge.base_url": lambda c: c.judge.provider == "offline",
    "judge.temperature": lambda c: c.judge.provider == "offline",
    "judge.max_tokens": lambda c: c.judge.provider == "offline",
    "judge.structured_output": lambda c: c.judge.provider == "offline",
    "judge.max_parse_retries": lambda c: c.judge.provider == "offline",
    "evaluation.model": lambda c: c.judge.provider == "offline",
    # the engine's own options: vLLM's settings are not the hf engine's
    "generation.vllm_": lambda c: c.generation.engine != "vllm",
    "generation.tensor_parallel_size": lambda c: c.generation.engine != "vllm",
}


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


def canonical(obj: Any) -> Any:
    """Plain, comparable data from a plan (dataclasses, pydantic models and Ray objects included)."""
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple | set | frozenset):
        items = [canonical(v) for v in obj]
        return sorted(items, key=repr) if isinstance(obj, set | frozenset) else items
    if isinstance(obj, BaseModel):
        return canonical(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [
            type(obj).__name__,
            {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)},
        ]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    if hasattr(obj, "__dict__"):
        return [type(obj).__name__, canonical({k: v for k, v in vars(obj).items() if not k.startswith("_")})]
    return repr(obj)


def plan_of(stage: StageDef, cfg: RlufConfig) -> Any:
    try:
        return canonical(stage.plan(cfg))
    except RlufError as exc:  # a refused config is part of the plan too
        return ["refused", str(exc)]


def gated(key: str, cfg: RlufConfig) -> bool:
    return any(key.startswith(prefix) and off(cfg) for prefix, off in GATES.items())


@pytest.mark.parametrize("config", ["tiny_cpu.yaml", "llama2_7b_tldr.yaml"])
def test_stage_goes_stale_exactly_when_its_plan_changes(config: str) -> None:
    base = load(CONFIG_DIR / config)
    stages = all_stages()
    plans = {s.name: plan_of(s, base) for s in stages}
    fps = {s.name: stage_fingerprint(base, s) for s in stages}
    problems: list[str] = []
    unperturbed: list[str] = []
    checked = 0
    for key in leaf_keys(base):
        if key in NOT_PERTURBED:
            continue
        changed = perturb(base, key)
        if changed is None:
            unperturbed.append(key)
            continue
        checked += 1
        for s in stages:
            plan_moved = plan_of(s, changed) != plans[s.name]
            fp_moved = stage_fingerprint(changed, s) != fps[s.name]
            if is_operational(key):
                if fp_moved:
                    problems.append(f"{key}: operational, but {s.name}'s fingerprint changed")
            elif plan_moved and not fp_moved:
                problems.append(f"{key}: changes {s.name}'s plan but is not in its reads (stale results)")
            elif fp_moved and not plan_moved and not gated(key, base):
                problems.append(f"{key}: in {s.name}'s reads but its plan ignores it (needless re-run)")
    assert not unperturbed, f"no valid perturbation for {unperturbed}"
    assert checked > 100, checked
    assert not problems, "\n".join(problems)


def test_checker_catches_an_undeclared_read() -> None:
    """The check above can fail: a stage whose plan reads a key missing from its reads is caught."""
    base = load(None)
    real = next(s for s in all_stages() if s.name == "calibrate")
    leaky = dataclasses.replace(real, plan_fn=lambda c: {**real.plan(c), "top_p": c.generation.top_p})
    changed = perturb(base, "generation.top_p")
    assert changed is not None
    assert plan_of(leaky, changed) != plan_of(leaky, base)
    assert stage_fingerprint(changed, leaky) == stage_fingerprint(base, leaky)


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
