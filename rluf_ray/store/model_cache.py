"""Models handed between nodes as locations: a local path, a hub id, a pretrained ``embedded:`` name
(built on each node from its package), or a URI copied to a node cache.

Stages hand engine actors and Train workers a model's *location* (``ArtifactStore.uri``): on a local
or shared ``output_dir`` that is a path every process reads directly; on an object store it is a URI
(``s3://bucket/prefix/sft/model``) that :func:`local_model` copies once into a per-node cache, since
transformers and vLLM load from a local directory. A cached copy is named by the URI and a digest of
the remote listing (names, sizes, modification times), so a retrained model at the same URI is
fetched again, and it appears under its final name only once complete (copied to a temporary
directory, then renamed), so concurrent actors on one node never load half a model.

Where a process needs only a tokenizer (the driver fitting prompts before training), :func:`local_tokenizer`
copies the tokenizer's files alone, never the weights.

The cache is node scratch: ``$RLUF_CACHE_DIR/store-copies`` when ``RLUF_CACHE_DIR`` is set (the one
variable that places every model cache: embedded builds go to ``$RLUF_CACHE_DIR/models``), else
``<tmp>/rluf-model-cache``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid

import pyarrow.fs as pafs

from rluf_ray.data.embedded import CACHE_DIR_ENV, cache_root, is_embedded, resolve_prebuilt
from rluf_ray.errors import RlufError
from rluf_ray.store.locations import remote_location

log = logging.getLogger("rluf.models")

TOKENIZER_FILES = (
    "config.json",  # AutoTokenizer reads the model type from it when tokenizer_config.json does not say
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",  # sentencepiece
)
"""The files a Hugging Face tokenizer folder may hold (at the model folder's top level)."""


def node_cache_root() -> str:
    """This node's scratch cache of models copied from the store.

    Returns:
        ``$RLUF_CACHE_DIR/store-copies`` when ``RLUF_CACHE_DIR`` is set (beside the embedded builds,
        ``rluf_ray.data.embedded.cache_root``), else ``<tmp>/rluf-model-cache``.
    """
    if os.environ.get(CACHE_DIR_ENV):
        return os.path.join(cache_root(), "store-copies")
    return os.path.join(tempfile.gettempdir(), "rluf-model-cache")


def _listing(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    sel = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    return sorted((i for i in fs.get_file_info(sel) if i.type == pafs.FileType.File), key=lambda i: i.path)


def check_model_location(location: str) -> None:
    """A one-line error when ``location`` (a path or a URI) holds no save_pretrained model.

    A local path (or ``file://`` URI) must be a directory with ``config.json``; a remote URI must have
    ``<location>/config.json``.

    Args:
        location: Where the model is: a local path, a ``file://`` URI or a remote URI.

    Raises:
        RlufError: No model is there.
    """
    remote = remote_location(location)
    if remote is None:
        from rluf_ray.engines.base import check_model_path

        check_model_path(location.removeprefix("file://"))
        return
    fs, path = remote
    if fs.get_file_info(f"{path}/config.json").type != pafs.FileType.File:
        raise RlufError(f"no Hugging Face model at {location} (no config.json; run `rluf sft` first)")


def local_model(location: str) -> str:
    """A local directory holding the model at ``location``.

    A local path or a hub id is returned unchanged (``file://`` stripped); a pretrained ``embedded:``
    model is built once into this node's cache from its package; a remote URI is copied once into
    ``node_cache_root()`` under a name made of the URI and a digest of its listing.

    Args:
        location: A local path, a ``file://`` URI, a hub id, an ``embedded:`` name or a remote URI.

    Returns:
        A path that ``from_pretrained`` can load (or the hub id, for a hub id).

    Raises:
        RlufError: An unknown ``embedded:`` name or one built from the run's texts (the tiny Llama),
            or no files at a remote URI.
    """
    if is_embedded(location):
        try:
            return str(resolve_prebuilt(location))
        except ValueError as exc:
            raise RlufError(f"model {location}: {exc}") from None
    remote = remote_location(location)
    if remote is None:
        return location.removeprefix("file://")
    fs, path = remote
    files = _listing(fs, path)
    if not files:
        raise RlufError(f"no model files at {location}")
    return _cached_copy(location, fs, path, files, "")


def local_tokenizer(location: str) -> str:
    """A local directory holding the tokenizer of the model at ``location``, without its weights.

    As :func:`local_model`, except that from a remote URI only the :data:`TOKENIZER_FILES` present are
    copied (a tokenizer-only copy, cached apart from whole-model copies).

    Args:
        location: A local path, a ``file://`` URI, a hub id, an ``embedded:`` name or a remote URI.

    Returns:
        A path that ``AutoTokenizer.from_pretrained`` can load (or the hub id, for a hub id).

    Raises:
        RlufError: As :func:`local_model`; also when a remote model has no tokenizer file.
    """
    remote = remote_location(location)
    if remote is None:
        return local_model(location)
    fs, path = remote
    files = [i for i in _listing(fs, path) if i.path[len(path) :].lstrip("/") in TOKENIZER_FILES]
    if not any(i.base_name != "config.json" for i in files):
        raise RlufError(f"no tokenizer files at {location}")
    return _cached_copy(location, fs, path, files, "-tokenizer")


def _cached_copy(
    location: str, fs: pafs.FileSystem, path: str, files: list[pafs.FileInfo], suffix: str
) -> str:
    """Copy ``files`` (under remote ``path``) once into this node's cache; the cached folder's path."""
    digest = hashlib.sha256()
    for info in files:
        digest.update(f"{info.path}\0{info.size}\0{info.mtime_ns}\n".encode())
    name = f"{hashlib.sha256(location.encode()).hexdigest()[:16]}-{digest.hexdigest()[:16]}{suffix}"
    root = node_cache_root()
    target = os.path.join(root, name)
    if os.path.isdir(target):
        return target
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f".tmp-{uuid.uuid4().hex}")
    log.info("models: copying %s (%d files) to %s", location, len(files), target)
    try:
        os.makedirs(tmp)
        for info in files:
            dest = os.path.join(tmp, info.path[len(path) :].lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with fs.open_input_stream(info.path) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        try:
            os.rename(tmp, target)
        except OSError:  # another process on this node finished the same copy first
            if not os.path.isdir(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
