"""Structured judge replies (pure): the JSON schema of each task's reply, the OpenAI
``response_format`` that asks an endpoint for it, and the parser of such a reply.

GPT-4o and vLLM both honour ``response_format={"type": "json_schema", ...}``: the reply is then one
JSON object of this shape. Ranges (score in [0, 1], rubric axes in [0, 10] on the template's grid) are
checked by the parser, not the schema, because grammar backends differ in which keywords they
support; a reply outside them is a :class:`ParseFailure`, never clamped.
"""

from __future__ import annotations

import json
from typing import Any

from rluf_ray.judge.parsing import RUBRIC_AXES, RUBRIC_STEPS, ParseFailure, parse, rubric_from_object

STRUCTURED_MODES = ("json_schema", "none")


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "score": _object({"score": {"type": "number"}}),
    "pairwise": _object({"preferred": {"type": "integer", "enum": [1, 2]}}),
    "rubric": _object({axis: {"type": "number"} for axis in RUBRIC_AXES}),
}
"""The JSON schema of each task's reply."""


def response_format(task: str) -> dict[str, Any]:
    """The ``response_format`` request field asking for the task's reply schema.

    Args:
        task: ``score``, ``pairwise`` or ``rubric``.

    Returns:
        ``{"type": "json_schema", "json_schema": {...}}`` with the task's :data:`SCHEMAS` entry,
        named ``<task>_reply``, strict.
    """
    return {
        "type": "json_schema",
        "json_schema": {"name": f"{task}_reply", "schema": SCHEMAS[task], "strict": True},
    }


def parse_structured(task: str, reply: str, version: str | None = None) -> Any:
    """The value of a JSON reply of ``task``'s schema, or a :class:`ParseFailure` saying why not.

    Args:
        task: ``score``, ``pairwise`` or ``rubric``.
        reply: The reply text; it must be one JSON object (no surrounding text).
        version: The request's template version; a rubric version in ``RUBRIC_STEPS`` requires its
            grid.

    Returns:
        A score in [0, 1] (float), a preference 1 or 2 (int), or the rubric's axes (floats in
        [0, 10]); else a :class:`ParseFailure`.
    """
    if not isinstance(reply, str) or not reply.strip():
        return ParseFailure("empty reply")
    try:
        obj = json.loads(reply)
    except json.JSONDecodeError as exc:
        return ParseFailure(f"reply is not JSON ({exc.msg})")
    if not isinstance(obj, dict):
        return ParseFailure("reply is not a JSON object")
    if task == "rubric":
        return rubric_from_object(obj, RUBRIC_AXES, RUBRIC_STEPS.get(version or ""))
    field = {"score": "score", "pairwise": "preferred"}[task]
    value = obj.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ParseFailure(f"{field!r} missing or not a number")
    if task == "score":
        if not 0.0 <= value <= 1.0:
            return ParseFailure(f"score {value} outside [0, 1]")
        return float(value)
    if value not in (1, 2) or not float(value).is_integer():
        return ParseFailure(f"preference {value} is not 1 or 2")
    return int(value)


def parse_reply(task: str, reply: str, version: str | None, mode: str) -> Any:
    """Parse a reply asked for in ``mode`` (``judge.structured_output``): JSON under ``json_schema``,
    the free-text parsers under ``none``.

    Args:
        task: ``score``, ``pairwise`` or ``rubric``.
        reply: The reply text.
        version: The request's template version (picks the rubric's grid); None: no grid.
        mode: ``json_schema`` or ``none``.

    Returns:
        The parsed value, or a :class:`ParseFailure`.

    Raises:
        ValueError: ``mode`` is neither ``json_schema`` nor ``none``.
    """
    if mode == "json_schema":
        return parse_structured(task, reply, version)
    if mode == "none":
        return parse(task, reply, version)
    raise ValueError(f"unknown structured_output mode {mode!r}")
