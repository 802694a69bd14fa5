"""Content-addressed judge cache on disk: SQLite in WAL mode, safe with many processes writing.

The key hashes everything that determines a reply: the endpoint's model name, the template version,
the rendered messages and the sampling parameters. Only replies that parsed are stored, so a rerun of
a stage costs zero calls for everything that succeeded before and retries only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judge_cache (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    template TEXT NOT NULL,
    reply TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL
)
"""
_BATCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS judge_batches (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL
)
"""


def cache_key(
    model: str, template: str, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]
) -> str:
    """SHA-256 of the canonical JSON of (model, template version, messages, sampling params).

    Args:
        model: The judge model name at the endpoint (``judge.model``).
        template: The request's template version (``score_v2``).
        messages: The rendered chat messages (``role``, ``content``).
        params: Everything else sent with the call (sampling parameters, ``response_format``).

    Returns:
        The key as 64 hex digits; equal inputs give equal keys in any process.
    """
    blob = json.dumps(
        {"model": model, "template": template, "messages": list(messages), "params": dict(params)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class CachedReply:
    """A stored reply and the usage it was paid for."""

    reply: str
    prompt_tokens: int
    completion_tokens: int


class JudgeCache:
    """A process-local handle on the shared SQLite cache file.

    Args:
        path: The SQLite file; created (with its directory) when absent.
        timeout_s: Seconds to wait for a lock held by another process.
    """

    def __init__(self, path: str | os.PathLike[str], timeout_s: float = 60.0) -> None:
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=timeout_s, check_same_thread=False, isolation_level=None
        )
        with self._lock:
            self._enable_wal(timeout_s)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            self._conn.execute(_SCHEMA)
            self._conn.execute(_BATCH_SCHEMA)

    def _enable_wal(self, timeout_s: float) -> None:
        """Switch to WAL, retrying while another process holds the file: SQLite does not call its busy
        handler for this switch, so two actors opening a new cache at once saw "database is locked"."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def get(self, key: str) -> CachedReply | None:
        """The stored reply of a key.

        Args:
            key: A :func:`cache_key`.

        Returns:
            The reply with its prompt and completion tokens, or None when the key is not stored.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT reply, prompt_tokens, completion_tokens FROM judge_cache WHERE key = ?", (key,)
            ).fetchone()
        return CachedReply(row[0], int(row[1]), int(row[2])) if row else None

    def contains(self, key: str) -> bool:
        """Whether a reply is stored under a key (without reading it).

        Args:
            key: A :func:`cache_key`.

        Returns:
            True when the key is stored.
        """
        with self._lock:
            return (
                self._conn.execute("SELECT 1 FROM judge_cache WHERE key = ?", (key,)).fetchone() is not None
            )

    def put(
        self, key: str, model: str, template: str, reply: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Store a parsed reply; the first writer of a key wins (replies for one key are equivalent).

        Args:
            key: The request's :func:`cache_key`.
            model: The judge model name that answered.
            template: The request's template version.
            reply: The raw reply text (parsed again when read, so a stricter parser can reject it).
            prompt_tokens: Prompt tokens the call reported.
            completion_tokens: Completion tokens the call reported.
        """
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO judge_cache VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, model, template, reply, int(prompt_tokens), int(completion_tokens), time.time()),
            )

    def load_batch(self, name: str) -> dict[str, Any] | None:
        """The saved state of a Batch API round in progress (``rluf_ray.judge.batch.BatchState``), or None.

        Args:
            name: The round's name.

        Returns:
            The state saved under ``name``, or None when there is none.
        """
        with self._lock:
            row = self._conn.execute("SELECT state FROM judge_batches WHERE name = ?", (name,)).fetchone()
        return dict(json.loads(row[0])) if row else None

    def save_batch(self, name: str, state: Mapping[str, Any]) -> None:
        """Save a Batch API round's state (its batch id) under ``name``.

        Args:
            name: The round's name; a later save under it replaces the state.
            state: JSON-serialisable state.
        """
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO judge_batches VALUES (?, ?)", (name, json.dumps(dict(state)))
            )

    def remove_batch(self, name: str) -> None:
        """Forget a finished round's state.

        Args:
            name: The round's name (absent: nothing happens).
        """
        with self._lock:
            self._conn.execute("DELETE FROM judge_batches WHERE name = ?", (name,))

    def backup_to(self, dest: sqlite3.Connection) -> None:
        """Copy the whole cache into another SQLite connection (a consistent snapshot).

        Args:
            dest: An open connection to the database that receives the copy (its content is replaced).
        """
        with self._lock:
            self._conn.backup(dest)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM judge_cache").fetchone()[0])

    def close(self) -> None:
        """Close the connection; the handle is unusable afterwards."""
        with self._lock:
            self._conn.close()
