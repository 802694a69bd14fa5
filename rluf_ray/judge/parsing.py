"""Pure parsers of judge replies: each returns a value or an explicit :class:`ParseFailure`.

A parser never invents a default score: anything it cannot read with confidence is a failure with a
reason, which the client re-asks a bounded number of times and finally records as missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RUBRIC_AXES = ("accuracy", "relevance", "completeness", "expression")

_NUM = r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))"
_SCORE_LINE = re.compile(r"score\s*[:=]\s*\**\s*" + _NUM, re.IGNORECASE)
_BARE_NUM = re.compile(r"^\s*" + _NUM + r"\s*$")
_PREF = re.compile(r"preferred\s*[:=]?\s*\**\s*(?:response|output)?\s*\(?\s*([0-9]+)\s*\)?", re.IGNORECASE)


@dataclass(frozen=True)
class ParseFailure:
    """Why a reply could not be read."""

    reason: str


def parse_score(reply: str) -> float | ParseFailure:
    """``Score: x`` (or a bare number) with x in [0, 1]; several different scores are a failure.

    Args:
        reply: The judge's free-text reply.

    Returns:
        The score in [0, 1], or a :class:`ParseFailure` (empty reply, no score line, conflicting
        scores, out of range).
    """
    if not isinstance(reply, str) or not reply.strip():
        return ParseFailure("empty reply")
    found = [float(m) for m in _SCORE_LINE.findall(reply)]
    if not found:
        bare = _BARE_NUM.match(reply)
        if bare is None:
            return ParseFailure("no 'Score:' line")
        found = [float(bare.group(1))]
    if len(set(found)) > 1:
        return ParseFailure(f"conflicting scores {sorted(set(found))}")
    value = found[0]
    if not 0.0 <= value <= 1.0:
        return ParseFailure(f"score {value} outside [0, 1]")
    return value


def parse_preference(reply: str) -> int | ParseFailure:
    """``Preferred: 1`` or ``Preferred: 2``; anything else (or both) is a failure.

    Args:
        reply: The judge's free-text reply.

    Returns:
        1 or 2 (the preferred output), or a :class:`ParseFailure`.
    """
    if not isinstance(reply, str) or not reply.strip():
        return ParseFailure("empty reply")
    found = {int(m) for m in _PREF.findall(reply)}
    if not found:
        return ParseFailure("no 'Preferred:' line")
    if len(found) > 1:
        return ParseFailure(f"conflicting preferences {sorted(found)}")
    value = found.pop()
    if value not in (1, 2):
        return ParseFailure(f"preference {value} is not 1 or 2")
    return value


def _first_json_object(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    while start != -1:
        depth = 0
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        obj = json.loads(text[start : i + 1])
                    except json.JSONDecodeError:
                        break
                    return obj if isinstance(obj, dict) else None
        start = text.find("{", start + 1)
    return None


RUBRIC_STEPS: dict[str, float] = {"rubric_v2": 0.5}
"""Rubric versions whose scale is a grid: every axis must be a multiple of this step."""


def on_grid(value: float, step: float) -> bool:
    """Whether ``value`` is an integer multiple of ``step`` (up to float rounding).

    Args:
        value: The number to check.
        step: The grid's step, nonzero (0.5 for ``rubric_v2``).

    Returns:
        True when ``value / step`` is within 1e-9 of an integer.
    """
    q = value / step
    return abs(q - round(q)) <= 1e-9


def parse_rubric(
    reply: str, axes: tuple[str, ...] = RUBRIC_AXES, step: float | None = None
) -> dict[str, float] | ParseFailure:
    """A JSON object with every axis a number in [0, 10] (and a multiple of ``step`` when given); a
    missing or bad axis is a failure, never rounded onto the grid.

    Args:
        reply: The judge's reply; the first balanced ``{...}`` that decodes as JSON is read, so text
            around the object is allowed.
        axes: The axes that must be present (names matched case-insensitively).
        step: The grid every axis must lie on; None: any number in [0, 10].

    Returns:
        The axes as floats, or a :class:`ParseFailure`.
    """
    if not isinstance(reply, str) or not reply.strip():
        return ParseFailure("empty reply")
    obj = _first_json_object(reply)
    if obj is None:
        return ParseFailure("no JSON object")
    return rubric_from_object(obj, axes, step)


def rubric_from_object(
    obj: dict[str, Any], axes: tuple[str, ...] = RUBRIC_AXES, step: float | None = None
) -> dict[str, float] | ParseFailure:
    """The rubric of a decoded JSON object (the checks of :func:`parse_rubric`).

    Args:
        obj: The decoded object; keys are matched after stripping and lowercasing, extra keys are
            ignored.
        axes: The axes that must be present.
        step: The grid every axis must lie on; None: any number in [0, 10].

    Returns:
        The axes as floats, or a :class:`ParseFailure` naming the first bad axis (missing, not a
        number, a bool, outside [0, 10], off the grid).
    """
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    out: dict[str, float] = {}
    for axis in axes:
        v = lowered.get(axis)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return ParseFailure(f"axis {axis!r} missing or not a number")
        if not 0 <= v <= 10:
            return ParseFailure(f"axis {axis!r} = {v} outside [0, 10]")
        if step is not None and not on_grid(float(v), step):
            return ParseFailure(f"axis {axis!r} = {v} is not a multiple of {step}")
        out[axis] = float(v)
    return out


PARSERS: dict[str, Callable[[str], Any]] = {
    "score": parse_score,
    "pairwise": parse_preference,
    "rubric": parse_rubric,
}


def parse(task: str, reply: str, version: str | None = None) -> Any:
    """Dispatch to the task's free-text parser; ``version`` (the template's) picks the rubric's scale.

    Args:
        task: ``score``, ``pairwise`` or ``rubric``.
        reply: The judge's reply.
        version: The request's template version; a rubric version in :data:`RUBRIC_STEPS` requires
            its grid, others (and None) accept any number in [0, 10].

    Returns:
        The parser's value, or a :class:`ParseFailure`.

    Raises:
        KeyError: ``task`` is not a known task.
    """
    if task == "rubric" and version in RUBRIC_STEPS:
        return parse_rubric(reply, step=RUBRIC_STEPS[version])
    return PARSERS[task](reply)
