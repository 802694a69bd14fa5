"""Flatten the pipeline's summaries into the flat name -> number metrics a tracker logs (pure).

Each stage's manifest metrics (its summary: coverage and set size per alpha, the weight histogram
and zero share, each training unit's loss, the win rates with their intervals, the judge ledger ...)
become ``<stage>/<path>`` metrics; per-step curves (SFT and DPO losses, reward accuracy) become
``(name, value, step)`` triples; the config becomes string params. Names use only the characters
MLflow and W&B both accept (letters, digits, ``_ - . / :`` and space).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

MAX_PARAM_CHARS = 500
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./: ]")


def metric_name(*parts: object) -> str:
    """``a/b/c`` from the parts, with characters a tracker refuses replaced by ``_``.

    Args:
        *parts: Name parts (any objects, turned into ``str``); empty parts are skipped.

    Returns:
        The parts joined by ``/``.
    """
    return "/".join(_UNSAFE.sub("_", str(p)) for p in parts if str(p) != "")


def _number(value: Any) -> float | None:
    """A finite float for numbers and booleans (True -> 1.0); None for anything else."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of nested mappings, named by its path; strings, lists and None are left out.

    Booleans count as numbers (True -> 1.0); NaN and infinities are left out.

    Args:
        data: Nested mappings of summary values.
        prefix: Name part put before every path (none when empty).

    Returns:
        ``prefix/key/subkey`` -> value as a float.
    """
    out: dict[str, float] = {}
    for key, value in data.items():
        name = metric_name(prefix, key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
            continue
        number = _number(value)
        if number is not None:
            out[name] = number
    return out


def _train_units(units: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``train/<arm>/seed-<seed>/<key>`` for each trained unit's numbers (loss, steps, mean weight)."""
    out: dict[str, float] = {}
    for unit in units:
        where = metric_name("train", unit.get("arm", "unit"), f"seed-{unit.get('seed')}")
        out.update(flatten({k: v for k, v in unit.items() if k not in ("arm", "seed")}, where))
    return out


def _win_rates(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``evaluate/win_rate/<a>_vs_<b>`` and its ``/ci_low``, ``/ci_high`` and ``/n``."""
    out: dict[str, float] = {}
    for row in rows:
        name = metric_name("evaluate", "win_rate", f"{row['a']}_vs_{row['b']}")
        for key, suffix in (("win_rate", ""), ("ci_low", "ci_low"), ("ci_high", "ci_high"), ("n", "n")):
            number = _number(row.get(key))
            if number is not None:
                out[metric_name(name, suffix)] = number
    return out


def stage_metrics(stage: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """One stage's manifest metrics as flat ``<stage>/...`` numbers.

    Nested mappings are walked (``calibrate/alpha_0.2/coverage_mean``,
    ``assign-weights/weight_histogram/0.4``); the two lists that carry results are expanded: the
    train stage's ``units`` (per arm and seed) and the evaluation's ``win_rates`` (with intervals).

    Args:
        stage: The stage name, the first part of every metric name (``train`` and ``evaluate`` also
            pick the list expansions).
        metrics: The ``metrics`` of the stage's manifest.

    Returns:
        Metric name -> value.
    """
    out = flatten({k: v for k, v in metrics.items() if k not in ("units", "win_rates")}, stage)
    if stage == "train":
        out.update(_train_units(metrics.get("units") or []))
    if stage == "evaluate":
        out.update(_win_rates(metrics.get("win_rates") or []))
    return out


def curve_metrics(prefix: str, rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, float, int]]:
    """Per-step curve rows (``{"step": 3, "loss": 0.69, ...}``) as ``(prefix/key, value, step)`` triples.

    Rows without ``step`` are skipped, and so are the ``epoch`` column and values that are not
    finite numbers.

    Args:
        prefix: Name put before every key (e.g. ``sft/curve``).
        rows: Curve rows, one per logged step (``curves.jsonl``).

    Returns:
        ``(metric name, value, step)`` for each numeric value, in row order.
    """
    out: list[tuple[str, float, int]] = []
    for row in rows:
        if "step" not in row:
            continue
        step = int(row["step"])
        for key, value in row.items():
            number = _number(value)
            if key in ("step", "epoch") or number is None:
                continue
            out.append((metric_name(prefix, key), number, step))
    return out


def config_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The config's leaves as ``section.key`` -> string params (lists as JSON, long values cut).

    Values other than strings are JSON-encoded; every value is cut to ``MAX_PARAM_CHARS`` characters.

    Args:
        config: The config as nested mappings (``RlufConfig.model_dump(mode="json")``).
        prefix: Dotted path of ``config`` inside the whole config (empty at the top).

    Returns:
        Dotted key -> string value.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(config_params(value, name))
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        out[name] = text[:MAX_PARAM_CHARS]
    return out
