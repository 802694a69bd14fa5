"""What a caught exception keeps alive: the frames of its tracebacks, and the callers of those frames.

A finished frame that a traceback references keeps its locals AND its caller (``f_back``) until it is
cleared; a generator's frame too (Python keeps a finished generator's locals for the traceback). An
exception raised in another thread (Ray Data's scheduling thread re-raises a task's error in the
driver) thus keeps that thread's whole finished stack, and every object its frames held, as long as
the exception lives. :func:`drop_frames` clears those frames (standard ``frame.clear()``); the
exception itself, its type, message and chain, are left as they were.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from types import FrameType, TracebackType


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """Walk ``exc`` and every exception it links to, each once.

    The links followed are ``__cause__``, ``__context__`` and a wrapped ``cause`` attribute (Ray's task
    errors keep the original there); cycles are visited once.

    Args:
        exc: The exception to start from (yielded first).

    Yields:
        ``exc``, then each linked exception not seen before (depth first).
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        for nxt in (cur.__cause__, cur.__context__, getattr(cur, "cause", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _running_here() -> set[int]:
    """The frames of this thread's stack (running: never cleared, never waited for)."""
    ids: set[int] = set()
    frame = inspect.currentframe()
    while frame is not None:
        ids.add(id(frame))
        frame = frame.f_back
    return ids


def drop_frames(exc: BaseException, wait_s: float = 5.0) -> int:
    """Clear the locals of every finished frame ``exc`` holds.

    This thread's running frames (the catching function and its callers) are left as they are. A frame
    still running in another thread (a worker that handed the error over and is finishing) is cleared
    once it has finished, waiting at most ``wait_s`` seconds. A generator whose frame is cleared is
    closed (``frame.clear()`` finalizes it): the generators an error went through are finished, or
    belong to the failed work.

    Args:
        exc: The caught exception; the frames of the tracebacks of its whole chain (see
            :func:`exception_chain`) and their callers are cleared.
        wait_s: The most seconds to wait for frames still running in another thread; frames still
            running after that are left uncleared.

    Returns:
        How many frames were cleared.
    """
    here = _running_here()
    visited: dict[int, FrameType] = {}  # holds every frame seen, so that no id is reused meanwhile
    waiting: list[FrameType] = []
    cleared = 0

    def walk(frame: FrameType | None) -> None:
        nonlocal cleared
        while frame is not None and id(frame) not in visited and id(frame) not in here:
            visited[id(frame)] = frame
            try:
                frame.clear()
            except RuntimeError:  # running in another thread: retried below
                waiting.append(frame)
                return
            cleared += 1
            frame = frame.f_back

    for cur in exception_chain(exc):
        tb = cur.__traceback__
        while tb is not None:
            walk(tb.tb_frame)
            tb = tb.tb_next
    deadline = time.monotonic() + wait_s
    while waiting and time.monotonic() < deadline:
        time.sleep(0.01)
        retry, waiting[:] = list(waiting), []
        for frame in retry:
            visited.pop(id(frame))
            walk(frame)
    return cleared


def _in_package(tb: TracebackType, package: str) -> bool:
    name = str(tb.tb_frame.f_globals.get("__name__", ""))
    return name == package or name.startswith(package + ".")


def trim_tracebacks(exc: BaseException, package: str) -> None:
    """Cut every traceback of ``exc``'s chain at its first frame outside ``package``.

    Clearing a frame leaves its function, and the function's closure: a library's nested iterator
    functions keep what they closed over (a Ray Data iterator keeps its dataset and executor) for as
    long as the traceback lives. Only the frames of ``package`` that lead to the failure are kept (an
    exception raised elsewhere keeps none); messages, types and the chain are unchanged.

    Args:
        exc: The caught exception; the tracebacks of its whole chain are cut in place.
        package: The top-level module name whose frames are kept (``"rluf_ray"`` keeps ``rluf_ray`` and
            its submodules).
    """
    for cur in exception_chain(exc):
        tb = cur.__traceback__
        if tb is None:
            continue
        if not _in_package(tb, package):
            cur.__traceback__ = None
            continue
        while tb.tb_next is not None and _in_package(tb.tb_next, package):
            tb = tb.tb_next
        tb.tb_next = None
