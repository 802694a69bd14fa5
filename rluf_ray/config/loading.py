"""Loading a config: YAML files, ``KEY=VALUE`` overrides, validation with one-line errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rluf_ray.config.schema import RlufConfig

CONFIG_DIR = Path(__file__).parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "tiny_cpu.yaml"


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one line naming the key path."""


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(err.errors()) - 1
    return f"{loc}: {msg}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (value read as YAML) into a key path and a value.

    Args:
        item: One ``KEY=VALUE`` override, the key dotted (``a.b.c``); an empty value reads as ``""``.

    Returns:
        ``(path, value)``: the key split at its dots, and the value parsed as YAML.

    Raises:
        ConfigError: ``item`` has no ``=``, a key component is empty, or the value is not valid YAML.
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"--set {item!r}: empty key component")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value is not valid YAML ({exc.__class__.__name__})") from exc
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply dotted ``KEY=VALUE`` overrides to a nested dict (in place) and return it.

    Args:
        data: The nested config dict to change; missing (or null) sections on a key's path are created.
        overrides: ``KEY=VALUE`` strings (see ``parse_override``), applied in order.

    Returns:
        ``data`` itself, with the overrides applied.

    Raises:
        ConfigError: An override is malformed, or a key's path runs through a value that is not a section.
    """
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path)}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, raising ConfigError with a one-line reason.

    Args:
        path: The YAML file to read.

    Returns:
        The file's top-level mapping (``{}`` for an empty file).

    Raises:
        ConfigError: The file is missing, its YAML is malformed, or its top level is not a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: malformed YAML{where}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def from_dict(data: Mapping[str, Any]) -> RlufConfig:
    """Validate a nested dict, raising ConfigError naming the key path.

    Args:
        data: The nested config data (as read from YAML).

    Returns:
        The validated config.

    Raises:
        ConfigError: Validation fails; the message names the first problem's key path.
    """
    try:
        return RlufConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None


def load(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RlufConfig:
    """Load a YAML config (the embedded default when ``path`` is None) and apply overrides.

    Args:
        path: The YAML config file, or None for ``DEFAULT_CONFIG``.
        overrides: ``KEY=VALUE`` overrides applied after reading (see ``apply_overrides``).

    Returns:
        The validated config.

    Raises:
        ConfigError: The file cannot be read, an override is malformed, or validation fails.
    """
    data = read_yaml(path if path is not None else DEFAULT_CONFIG)
    apply_overrides(data, overrides)
    return from_dict(data)


def with_values(cfg: RlufConfig, values: Mapping[str, Any]) -> RlufConfig:
    """A copy of ``cfg`` with the given dotted keys set (validated like any config).

    Args:
        cfg: The config to copy; it is not changed.
        values: Dotted keys (``a.b.c``) mapped to their new values; each key's sections must exist.

    Returns:
        The new, validated config.

    Raises:
        ConfigError: The changed config does not validate.
    """
    data = cfg.model_dump(mode="json")
    for key, value in values.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return from_dict(data)
