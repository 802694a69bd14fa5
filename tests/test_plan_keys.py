"""Typed plans and their keys (``rluf_ray.config.plan_keys``) on hand-built plans."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from pydantic import BaseModel

from rluf_ray.config import operational, plan_data, plan_key, plan_key_data, plan_type


@plan_type
class Inner:
    seed: int
    threads: int = operational(default=1)


@plan_type
class Outer:
    name: str
    inner: Inner
    values: tuple[float, ...] = ()
    optional: Inner | None = None
    actors: int = operational(default=2)


class Section(BaseModel):
    a: int = 1
    b: list[str] = ["x"]


def test_operational_fields_are_left_out_at_every_depth() -> None:
    base = Outer(name="x", inner=Inner(seed=1, threads=4), actors=3)
    assert plan_key_data(base) == {"name": "x", "inner": {"seed": 1}, "values": [], "optional": None}
    faster = dataclasses.replace(base, actors=9, inner=Inner(seed=1, threads=16))
    assert plan_key(faster) == plan_key(base)
    assert plan_data(faster) != plan_data(base)  # the whole plan does see them
    assert plan_data(base)["inner"] == {"seed": 1, "threads": 4}


def test_every_other_field_changes_the_key() -> None:
    base = Outer(name="x", inner=Inner(seed=1), values=(0.5,))
    others = [
        dataclasses.replace(base, name="y"),
        dataclasses.replace(base, inner=Inner(seed=2)),
        dataclasses.replace(base, values=(0.5, 1.0)),
        dataclasses.replace(base, values=(0.25,)),
        dataclasses.replace(base, optional=Inner(seed=1)),
    ]
    keys = {plan_key(p) for p in others}
    assert len(keys) == len(others) and plan_key(base) not in keys


def test_key_is_stable_across_order_and_construction() -> None:
    a = Outer(name="x", inner=Inner(seed=1), actors=1)
    b = Outer(actors=5, inner=Inner(seed=1), name="x")  # keyword order does not matter
    assert plan_key(a) == plan_key(b)
    assert len(plan_key(a)) == 64 and plan_key(a) == plan_key(pickle.loads(pickle.dumps(a)))
    # mappings: order-free; pydantic models: their JSON dump; sets: sorted
    assert plan_key_data({"b": 1, "a": (2, 3)}) == plan_key_data({"a": [2, 3], "b": 1})
    assert plan_key_data(Section()) == {"a": 1, "b": ["x"]}
    assert plan_key_data(frozenset({"b", "a"})) == ["a", "b"]
    assert plan_key(Outer(name="x", inner=Inner(seed=1), values=(1.0,))) == plan_key(
        Outer(name="x", inner=Inner(seed=1), values=(1,))  # type: ignore[arg-type]  # YAML's 1 in a float field
    )


def test_plans_are_frozen_keyword_only_and_hold_plain_data() -> None:
    p = Outer(name="x", inner=Inner(seed=1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Inner(1)  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"Outer\.name: a plan holds plain data, not object"):
        plan_key(Outer(name=object(), inner=Inner(seed=1)))  # type: ignore[arg-type]
