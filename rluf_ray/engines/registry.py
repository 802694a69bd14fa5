"""The engine registry: engine name -> its module's :class:`~rluf_ray.engines.base.EngineEntry`.

:data:`BUILTIN` names the module of each shipped engine; a module is imported the first time its
engine is asked for (so ``vllm.py`` is never imported on an ``hf`` run, and importing the config costs
no engine module). A new engine is one new module under ``rluf_ray/engines/`` that ends with
``ENGINE = EngineEntry(name, EngineClass, OptionsClass, options_from_config)`` plus its line in
:data:`BUILTIN`; ``generation.engine`` accepts it from then on (:data:`EngineName` is built from
:data:`BUILTIN`). :func:`register` adds an engine for this process only (tests, plugins): a Ray actor
only knows it if the actor's process registers it too.

An unknown name is one line listing the valid ones (:class:`UnknownEngineError`), at config load
(``generation.engine``) and at :func:`make_engine` alike.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Literal

from rluf_ray.engines.base import Engine, EngineEntry, EngineOptions
from rluf_ray.errors import RlufError

if TYPE_CHECKING:
    from rluf_ray.config import GenerationConfig, ModelConfig, ResourcesConfig

BUILTIN: dict[str, str] = {
    "hf": "rluf_ray.engines.hf",
    "vllm": "rluf_ray.engines.vllm",
}
"""Shipped engines: name -> the module whose ``ENGINE`` registers it."""

if TYPE_CHECKING:
    EngineName = str
else:
    EngineName = Literal[tuple(BUILTIN)]
"""The type of ``generation.engine``: a Literal of the names in :data:`BUILTIN`."""

_extra: dict[str, EngineEntry[Any]] = {}  # registered at run time (register)
_loaded: dict[str, EngineEntry[Any]] = {}  # BUILTIN entries already imported


class UnknownEngineError(RlufError, ValueError):
    """An engine name that no engine registers (a ValueError too, so the config reports it on its key)."""


def names() -> tuple[str, ...]:
    """The valid engine names.

    Returns:
        The shipped engines in :data:`BUILTIN` order, then those added by :func:`register`.
    """
    return (*BUILTIN, *_extra)


def check_name(name: object) -> str:
    """``name`` if an engine registers it, else a one-line error listing the valid names.

    Args:
        name: An engine name (any value: a config field passes what the YAML held).

    Returns:
        ``name``, unchanged.

    Raises:
        UnknownEngineError: No engine of that name.
    """
    if not isinstance(name, str) or name not in names():
        raise UnknownEngineError(f"unknown engine {name!r} (valid: {', '.join(names())})")
    return name


def get(name: str) -> EngineEntry[Any]:
    """The registration of the engine ``name`` (its module imported on first use).

    Args:
        name: An engine name.

    Returns:
        Its :class:`~rluf_ray.engines.base.EngineEntry`.

    Raises:
        UnknownEngineError: No engine of that name.
    """
    check_name(name)
    if name in _extra:
        return _extra[name]
    if name not in _loaded:
        entry = importlib.import_module(BUILTIN[name]).ENGINE
        if entry.name != name:
            raise RlufError(f"{BUILTIN[name]} registers engine {entry.name!r}, not {name!r}")
        _loaded[name] = entry
    return _loaded[name]


def register(entry: EngineEntry[Any]) -> EngineEntry[Any]:
    """Add an engine for this process (a shipped engine goes in :data:`BUILTIN` instead).

    Args:
        entry: The engine's registration; its name must be new.

    Returns:
        ``entry``.

    Raises:
        RlufError: The name is taken.
    """
    if entry.name in names():
        raise RlufError(f"engine {entry.name!r} is already registered")
    _extra[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove an engine that :func:`register` added (shipped engines stay).

    Args:
        name: The engine's name.

    Raises:
        RlufError: ``name`` was not added by :func:`register`.
    """
    if name not in _extra:
        raise RlufError(f"engine {name!r} was not added by register()")
    del _extra[name]


def options_for(
    name: str, generation: GenerationConfig, model: ModelConfig, resources: ResourcesConfig
) -> EngineOptions:
    """The typed options of engine ``name`` for a run, built by the function the engine registers.

    Args:
        name: An engine name.
        generation: The config's ``generation`` section.
        model: The config's ``model`` section.
        resources: The config's ``resources`` section.

    Returns:
        An instance of the engine's options class.

    Raises:
        UnknownEngineError: No engine of that name.
        RlufError: Settings the engine cannot run (e.g. vllm's tensor_parallel_size over the GPUs).
    """
    options: EngineOptions = get(name).from_config(generation, model, resources)
    return options


def make_engine(name: str, model_path: str, options: EngineOptions | None = None) -> Engine:
    """Build the engine ``name`` on the model in ``model_path``.

    Args:
        name: An engine name (see :func:`names`).
        model_path: A local save_pretrained folder.
        options: An instance of the engine's options class; None: its defaults.

    Returns:
        The engine (close it with ``close()``).

    Raises:
        UnknownEngineError: No engine of that name.
        RlufError: ``options`` belong to another engine, or the engine cannot start (model missing,
            package missing).
    """
    entry = get(name)
    if options is None:
        options = entry.options()
    elif not isinstance(options, entry.options):
        raise RlufError(f"engine {name!r} takes {entry.options.__name__}, got {type(options).__name__}")
    engine: Engine = entry.engine(model_path, options)
    return engine
