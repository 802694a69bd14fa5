"""What a caught exception keeps alive: the frames of its tracebacks, and the callers of those frames.

A finished frame that a traceback references keeps its locals AND its caller (``f_back``) until it is
cleared; a generator's frame too (Python keeps a finished generator's locals for the traceback). An
exception raised in another thread (Ray Data's scheduling thread re-raises a task's error in the
driver) thus keeps that thread's whole finished stack, and every object its frames held, as long as
the exception lives. :func:`drop_frames` clears those frames (standard ``frame.clear()``); the
exception itself, its type, message and chain, are left as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import FrameType


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it links to: ``__cause__``, ``__context__`` and a wrapped ``cause``
    attribute (Ray's task errors keep the original there), each once."""
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


def drop_frames(exc: BaseException) -> int:
    """Clear the locals of every finished frame ``exc`` holds; returns how many frames were cleared.

    Frames still running (the catching function and its callers) raise RuntimeError on ``clear()``:
    they and their callers are skipped. A generator whose frame is cleared is closed (``frame.clear()``
    finalizes it): the generators an error went through are finished, or belong to the failed work.
    """
    cleared: set[int] = set()
    for cur in exception_chain(exc):
        tb = cur.__traceback__
        while tb is not None:
            frame: FrameType | None = tb.tb_frame
            while frame is not None and id(frame) not in cleared:
                try:
                    frame.clear()
                except RuntimeError:  # still executing: so are its callers
                    break
                cleared.add(id(frame))
                frame = frame.f_back
            tb = tb.tb_next
    return len(cleared)
