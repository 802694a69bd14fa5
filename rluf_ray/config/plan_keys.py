"""Typed plans and their keys: what a stage (or a component) takes from the config, and its hash.

A plan is a frozen, keyword-only dataclass (declare it with :func:`plan_type`) whose fields are named
and typed; nested values are plans too, other frozen dataclasses, pydantic models or plain JSON-able
values. Fields that never change a result (Ray resources, limits, where things live, a whole config
section a component runs with) are declared with :func:`operational`. A plan's key is the hash of
every other field, walked recursively (:func:`plan_key_data`, :func:`plan_key`), so a stage's key and
the values its run takes cannot drift apart: there is no separate list of keys to keep in step.

Pure: the standard library and pydantic only; nothing here reads a config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from pydantic import BaseModel
from typing_extensions import dataclass_transform  # typing has it from Python 3.11 on

T = TypeVar("T")

OPERATIONAL = "operational"
"""The field metadata key :func:`operational` sets."""


@overload
def operational(*, default: T) -> T: ...
@overload
def operational(*, default_factory: Callable[[], T]) -> T: ...
@overload
def operational() -> Any: ...
def operational(*, default: Any = dataclasses.MISSING, default_factory: Any = dataclasses.MISSING) -> Any:
    """A plan field that never changes a result: it is left out of the plan's key.

    Args:
        default: The field's default value (none: the field is required).
        default_factory: A callable that makes the default (instead of ``default``).

    Returns:
        A ``dataclasses.field`` marked operational.
    """
    return dataclasses.field(default=default, default_factory=default_factory, metadata={OPERATIONAL: True})


@dataclass_transform(
    frozen_default=True, kw_only_default=True, field_specifiers=(dataclasses.field, operational)
)
def plan_type(cls: type[T]) -> type[T]:
    """Declare a plan: a frozen, keyword-only dataclass (type checkers know ``operational`` fields).

    Args:
        cls: The class to turn into a plan.

    Returns:
        The frozen dataclass.
    """
    return dataclasses.dataclass(frozen=True, kw_only=True)(cls)


def is_operational_field(f: dataclasses.Field[Any]) -> bool:
    """Whether a dataclass field was declared with :func:`operational`.

    Args:
        f: A field of a dataclass.

    Returns:
        True for an operational field.
    """
    return bool(f.metadata.get(OPERATIONAL, False))


def _data(obj: Any, operational_too: bool, where: str) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _data(getattr(obj, f.name), operational_too, f"{where}.{f.name}")
            for f in dataclasses.fields(obj)
            if operational_too or not is_operational_field(f)
        }
    if isinstance(obj, BaseModel):
        return _data(obj.model_dump(mode="json"), operational_too, where)
    if isinstance(obj, Mapping):
        return {
            str(k): _data(v, operational_too, f"{where}[{k!r}]")
            for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))
        }
    if isinstance(obj, list | tuple):
        return [_data(v, operational_too, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        return sorted((_data(v, operational_too, where) for v in obj), key=repr)
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)  # 1.0 and 1 are one value (a YAML int in a float field stays an int)
    if obj is None or isinstance(obj, str | bool | int | float):
        return obj
    raise TypeError(f"{where}: a plan holds plain data, not {type(obj).__name__}")


def plan_key_data(plan: Any) -> Any:
    """The part of a plan its key hashes, as plain JSON-able data.

    Dataclasses become ``{field: value}`` (operational fields left out, at every depth), pydantic models
    their JSON dump, tuples and lists lists, mappings dicts with string keys, sets sorted lists, and an
    integral float its int (``1.0`` and ``1`` are one value).

    Args:
        plan: A plan (or any value a plan may hold).

    Returns:
        JSON-able data; equal plans give equal data whatever their field or mapping order.

    Raises:
        TypeError: The plan holds something that is not plain data (a Ray object, a function).
    """
    return _data(plan, False, type(plan).__name__)


def plan_data(plan: Any) -> Any:
    """The whole plan, operational fields included, as plain JSON-able data (for reports and tests).

    Args:
        plan: A plan (or any value a plan may hold).

    Returns:
        JSON-able data, as :func:`plan_key_data` but with every field.
    """
    return _data(plan, True, type(plan).__name__)


def canonical_json(data: Any) -> str:
    """The one JSON text of plain data that keys hash (sorted keys, no spaces).

    Args:
        data: JSON-able data.

    Returns:
        The canonical JSON text.
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)


def plan_key(plan: Any) -> str:
    """The key of a plan: sha256 of the canonical JSON of :func:`plan_key_data`.

    Args:
        plan: A plan.

    Returns:
        A 64-character hex digest.
    """
    return hashlib.sha256(canonical_json(plan_key_data(plan)).encode()).hexdigest()
