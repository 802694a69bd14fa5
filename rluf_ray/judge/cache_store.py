"""The judge cache as the driver holds it: one SQLite file kept under ``output_dir``.

Only the driver reads and writes the cache: it answers hits itself and sends the judge actors only
the misses, storing their parsed replies as chunks come back. So actors on any node need no shared
disk, and SQLite never sits on NFS. The file is ``judge.cache_path`` or
``<output_dir>/judge_cache.sqlite``: a local path is used in place; a URI (``s3://...``) is copied into
driver scratch when opened and written back every ``upload_every_s`` seconds of use and when closed
(on failure too), so a rerun on any node starts from every reply an earlier run paid for. A local
file inside a shared mount (``shared_output_dir: true``) is treated the same way, copied into driver
scratch and written back (a whole new file, then renamed into place), so SQLite never sits on the
mount either. The ids
of Batch API rounds in progress live in the same file (written back as soon as a batch is created),
so a Batch run resumed on another node polls its batches instead of paying for new ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow.fs as pafs

from rluf_ray.judge.cache import JudgeCache
from rluf_ray.store.locations import is_uri, remote_location

log = logging.getLogger("rluf.judge")

CACHE_NAME = "judge_cache.sqlite"


def cache_location(cache_path: str | None, output_dir: str) -> str:
    """``judge.cache_path`` when set, else ``<output_dir>/judge_cache.sqlite`` (a path or a URI).

    Args:
        cache_path: ``judge.cache_path``, a local path or a URI; None or empty: under ``output_dir``.
        output_dir: The run's output directory, a local path or a URI.

    Returns:
        The cache's location: ``cache_path`` as given, else the file under ``output_dir`` (a URI
        stays a URI, a local directory is made absolute).
    """
    if cache_path:
        return cache_path
    if is_uri(output_dir):
        return f"{output_dir.rstrip('/')}/{CACHE_NAME}"
    return os.path.join(os.path.abspath(output_dir), CACHE_NAME)


class DriverCache:
    """The driver's handle: ``cache`` (a JudgeCache) and ``persist`` to write a remote copy back.

    Args:
        location: The cache's path or URI (:func:`cache_location`); a URI is copied into driver
            scratch.
        upload_every_s: Seconds of use between write-backs of a remote copy.
        copy_locally: Treat a local path as remote too (it lies on a shared mount): copied into
            driver scratch, written back atomically.
    """

    def __init__(self, location: str, upload_every_s: float = 30.0, copy_locally: bool = False) -> None:
        self.location = location
        self.upload_every_s = upload_every_s
        self._remote = remote_location(location)
        if self._remote is None and copy_locally:
            self._remote = (pafs.LocalFileSystem(), os.path.abspath(location.removeprefix("file://")))
        self._last_upload = time.monotonic()
        self._dirty = False
        if self._remote is None:
            self.cache = JudgeCache(location.removeprefix("file://"))
            return
        fs, path = self._remote
        scratch = os.path.join(tempfile.gettempdir(), "rluf-judge-cache")
        os.makedirs(scratch, exist_ok=True)
        local = os.path.join(scratch, hashlib.sha256(location.encode()).hexdigest()[:24] + ".sqlite")
        for suffix in ("", "-wal", "-shm"):  # a stale scratch copy never shadows the stored one
            with contextlib.suppress(FileNotFoundError):
                os.remove(local + suffix)
        if fs.get_file_info(path).type == pafs.FileType.File:
            with fs.open_input_stream(path) as src, open(local, "wb") as dst:
                dst.write(src.read())
        self.cache = JudgeCache(local)
        log.info("judge cache: %d replies from %s", len(self.cache), location)

    def put(self, key: str, model: str, template: str, reply: str, pt: int, ct: int) -> None:
        """Store one parsed reply (and write a remote copy back when it is due).

        Args:
            key: The request's cache key (``rluf_ray.judge.cache.cache_key``).
            model: The judge model name that answered.
            template: The request's template version.
            reply: The raw reply text.
            pt: Prompt tokens the call reported.
            ct: Completion tokens the call reported.
        """
        self.cache.put(key, model, template, reply, pt, ct)
        self._dirty = True
        if self._remote is not None and time.monotonic() - self._last_upload >= self.upload_every_s:
            self.persist()

    def mark_dirty(self) -> None:
        """Say that replies were stored through ``cache`` directly (the Batch API path)."""
        self._dirty = True

    # -- judge_batch.BatchState: a batch id is written back at once (it must survive a crash) ---------
    def load_batch(self, name: str) -> dict[str, Any] | None:
        """A Batch API round's saved state.

        Args:
            name: The round's name.

        Returns:
            The state saved under ``name``, or None when there is none.
        """
        return self.cache.load_batch(name)

    def save_batch(self, name: str, state: Mapping[str, Any]) -> None:
        """Save a round's state in the cache and write the cache back now.

        Args:
            name: The round's name.
            state: JSON-serialisable state (its ``batch_id`` is what a resume needs).
        """
        self.cache.save_batch(name, state)
        self._dirty = True
        self.persist()

    def remove_batch(self, name: str) -> None:
        """Forget a finished round's state (written back with the next upload, not at once).

        Args:
            name: The round's name.
        """
        self.cache.remove_batch(name)
        self._dirty = True

    def persist(self) -> None:
        """Write the cache back to its remote location (a consistent snapshot through SQLite's backup)."""
        if self._remote is None or not self._dirty:
            return
        fs, path = self._remote
        with tempfile.TemporaryDirectory(prefix="rluf-judge-snap-") as tmp:
            snap = os.path.join(tmp, CACHE_NAME)
            dst = sqlite3.connect(snap)
            try:
                self.cache.backup_to(dst)
            finally:
                dst.close()
            if isinstance(fs, pafs.LocalFileSystem):  # a shared mount: never a half-written file
                os.makedirs(os.path.dirname(path), exist_ok=True)
                part = f"{path}.part"
                shutil.copyfile(snap, part)
                os.replace(part, path)
            else:
                with open(snap, "rb") as src, fs.open_output_stream(path) as out:
                    out.write(src.read())
        self._dirty = False
        self._last_upload = time.monotonic()

    def close(self) -> None:
        """Write back (when remote) and close."""
        try:
            self.persist()
        finally:
            self.cache.close()


@contextlib.contextmanager
def driver_cache(
    cache_path: str | None, output_dir: str, shared_mount: bool = False
) -> Iterator[DriverCache]:
    """Open the run's judge cache in the driver; written back and closed on exit, failure included.

    Args:
        cache_path: ``judge.cache_path`` (None: ``<output_dir>/judge_cache.sqlite``).
        output_dir: The run's output directory, a local path or a URI.
        shared_mount: ``output_dir`` is a shared mount (``shared_output_dir``): a cache file inside
            it is worked on in driver scratch and copied back.

    Yields:
        The open :class:`DriverCache`.
    """
    location = cache_location(cache_path, output_dir)
    inside = not is_uri(location) and not is_uri(output_dir) and _inside(location, output_dir)
    handle = DriverCache(location, copy_locally=shared_mount and inside)
    try:
        yield handle
    finally:
        handle.close()


def _inside(path: str, root: str) -> bool:
    """Whether local ``path`` lies under local directory ``root``."""
    path, root = os.path.abspath(path.removeprefix("file://")), os.path.abspath(root.removeprefix("file://"))
    return os.path.commonpath([path, root]) == root
