"""What changed between two plans' key data (``plan_key_data``): the dotted paths of the differing fields.

A stage's manifest records the plan data its key hashed; comparing it with the plan data under the
current config names what made the stage stale (``rluf status``). Pure: the standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ABSENT = "<absent>"
"""The value of a field on the side of a change that does not have it."""


@dataclass(frozen=True)
class Change:
    """One differing field: its dotted plan path (list items as ``[i]``), old and new value."""

    path: str
    old: Any
    new: Any


def _pairs(value: Any) -> dict[str, Any] | None:
    """A list of ``[name, value]`` pairs (how a plan keeps settings) as a dict, else None."""
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in value):
        return None
    names = [p[0] for p in value]
    return dict(value) if len(set(names)) == len(names) else None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _diff_maps(old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Change]:
    out: list[Change] = []
    for name in sorted(set(old) | set(new)):
        where = _join(path, name)
        if name not in old:
            out.append(Change(where, ABSENT, new[name]))
        elif name not in new:
            out.append(Change(where, old[name], ABSENT))
        else:
            out += diff_plan_data(old[name], new[name], where)
    return out


def diff_plan_data(old: Any, new: Any, path: str = "") -> list[Change]:
    """The fields that differ between two plan data trees, walked recursively.

    Mappings are compared key by key, lists of equal length item by item, lists of ``[name, value]``
    pairs by name; anything else (or lists of different lengths) as one value.

    Args:
        old: The plan data a manifest recorded.
        new: The plan data under the current config (``plan_key_data``, JSON-normalized).
        path: The dotted path of ``old`` and ``new`` inside the plan (empty at the top).

    Returns:
        The changes, in path order within each mapping; empty when the two are equal.
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return _diff_maps(old, new, path)
    old_pairs, new_pairs = _pairs(old), _pairs(new)
    if old_pairs is not None and new_pairs is not None:
        return _diff_maps(old_pairs, new_pairs, path)
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            c
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for c in diff_plan_data(a, b, f"{path}[{i}]")
        ]
    if old == new and isinstance(old, bool) == isinstance(new, bool):  # True == 1, but not one value
        return []
    return [Change(path or "(plan)", old, new)]


def leaf_name(path: str) -> str:
    """The last field name of a dotted plan path (list indices dropped).

    Args:
        path: A path as in :class:`Change` (``samples.pool.sampling.temperature``, ``alphas[1]``).

    Returns:
        The last name (``temperature``, ``alphas``).
    """
    return path.rsplit(".", 1)[-1].split("[", 1)[0]


def short_value(value: Any, width: int = 40) -> str:
    """A value as short JSON text for one line of a report (long ones cut with ``...``).

    Args:
        value: A JSON-able value, or :data:`ABSENT`.
        width: The most characters to show.

    Returns:
        The text.
    """
    text = value if value is ABSENT else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def describe(change: Change, name: str | None = None) -> str:
    """One change as ``name: old -> new``.

    Args:
        change: The change.
        name: What to call the field (a config key); None for ``plan <path>``.

    Returns:
        The text.
    """
    label = name if name is not None else f"plan {change.path}"
    return f"{label}: {short_value(change.old)} -> {short_value(change.new)}"
