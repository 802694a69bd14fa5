"""The SQLite WAL cache: content-addressed keys, many processes writing at once."""

from __future__ import annotations

import multiprocessing as mp

from rluf_ray.judge.cache import JudgeCache, cache_key

MSGS = [{"role": "user", "content": "hello"}]


def test_key_covers_model_template_messages_params():
    base = cache_key("gpt-4o", "score_v1", MSGS, {"temperature": 0.0, "max_tokens": 8})
    assert base == cache_key("gpt-4o", "score_v1", list(MSGS), {"max_tokens": 8, "temperature": 0.0})
    assert base != cache_key("gpt-4o-mini", "score_v1", MSGS, {"temperature": 0.0, "max_tokens": 8})
    assert base != cache_key("gpt-4o", "score_v2", MSGS, {"temperature": 0.0, "max_tokens": 8})
    assert base != cache_key(
        "gpt-4o", "score_v1", [{"role": "user", "content": "hello!"}], {"temperature": 0.0, "max_tokens": 8}
    )
    assert base != cache_key("gpt-4o", "score_v1", MSGS, {"temperature": 0.7, "max_tokens": 8})


def _writer(path: str, worker: int, n: int) -> None:
    c = JudgeCache(path)
    for i in range(n):
        # Half the keys are shared by all writers (first writer wins), half are private.
        k = f"shared-{i}" if i % 2 == 0 else f"w{worker}-{i}"
        c.put(k, "m", "score_v1", f"Score: 0.{worker}", 10, 2)
    c.close()


def test_concurrent_writers_in_processes(tmp_path):
    path = str(tmp_path / "sub" / "cache.sqlite")
    JudgeCache(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 200)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    c = JudgeCache(path)
    assert len(c) == 100 + 4 * 100
    hit = c.get("shared-0")
    assert hit is not None and hit.reply.startswith("Score: 0.") and hit.prompt_tokens == 10
    assert c.get("nope") is None
    mode = c._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_opening_waits_for_a_writer_holding_the_file(tmp_path) -> None:
    """Two actors opening one new cache at once: the second waits for the first instead of failing."""
    import sqlite3
    import threading
    import time

    from rluf_ray.judge.cache import JudgeCache

    path = tmp_path / "cache.sqlite"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.5, lambda: holder.execute("COMMIT")).start()
    t0 = time.monotonic()
    cache = JudgeCache(path, timeout_s=10)
    assert time.monotonic() - t0 >= 0.4
    assert cache.get("missing") is None
