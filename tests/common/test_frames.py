"""What a caught exception keeps alive, and drop_frames clearing it (no Ray: plain threads)."""

from __future__ import annotations

import threading
import traceback
import weakref
from collections.abc import Callable, Iterator

from rluf_ray.common.frames import drop_frames, exception_chain, trim_tracebacks


class _Held:
    """Stands in for what a failed pipeline's frames hold (a task, its actor handle)."""


def _fail_in_a_thread(refs: list[weakref.ref[_Held]]) -> BaseException:
    """Ray Data's shape: in a finished thread, a loop holding a _Held calls a step that ends a stream
    (StopIteration, caught there) and raises the task's error; the loop catches it and hands it over;
    the driver re-raises it from a fresh traceback, so only the context reaches the thread's frames."""
    errors: list[BaseException] = []

    def step() -> None:
        try:
            raise StopIteration  # the end of the task's output stream
        except StopIteration:
            raise RuntimeError("task failed")  # noqa: B904 - implicit context, as in Ray Data

    def loop() -> None:  # the scheduler's loop: its local is what must go
        held = _Held()
        refs.append(weakref.ref(held))
        try:
            step()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    err = errors.pop()
    try:
        raise err.with_traceback(None)
    except RuntimeError as exc:
        return exc


def test_a_held_exception_keeps_the_callers_of_its_frames_until_dropped() -> None:
    refs: list[weakref.ref[_Held]] = []
    kept = _fail_in_a_thread(refs)
    for exc in exception_chain(kept):
        traceback.clear_frames(exc.__traceback__)  # the tracebacks' own frames only: not enough
    assert refs[0]() is not None  # the cause: context traceback -> step's frame -> f_back -> loop's locals
    assert drop_frames(kept) >= 1
    assert refs[0]() is None
    assert str(kept) == "task failed" and isinstance(kept.__context__, StopIteration)  # chain unchanged


def test_a_failed_generators_locals_go_and_running_frames_stay() -> None:
    refs: list[weakref.ref[_Held]] = []

    def rows() -> Iterator[int]:  # as Ray Data's iterators: the executor is a generator's local
        executor = _Held()
        refs.append(weakref.ref(executor))
        yield 1
        raise RuntimeError("pipeline failed")

    here = _Held()
    try:
        for _ in rows():
            pass
    except RuntimeError as exc:
        kept = exc
        drop_frames(exc)  # this frame is running: its locals stay
        assert isinstance(here, _Held)
    assert refs[0]() is None  # the finished generator's frame (kept by the traceback) was cleared
    assert str(kept) == "pipeline failed"


def test_a_frame_still_running_in_another_thread_is_cleared_once_finished() -> None:
    """A worker hands its error over and is still finishing when the caller drops the frames (Ray
    Data's prefetch thread): its frame is cleared once it has finished."""
    refs: list[weakref.ref[_Held]] = []
    handed, go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        held = _Held()
        refs.append(weakref.ref(held))
        try:
            raise RuntimeError("fetch failed")
        except RuntimeError as exc:
            errors.append(exc)
            handed.set()
            go.wait(5)  # still running while the caller drops the frames

    thread = threading.Thread(target=worker)
    thread.start()
    handed.wait(5)
    threading.Timer(0.2, go.set).start()
    assert drop_frames(errors[0], wait_s=5.0) >= 1
    thread.join(5)
    assert refs[0]() is None


def test_a_cleared_frame_keeps_its_closure_until_the_traceback_is_trimmed() -> None:
    refs: list[weakref.ref[_Held]] = []

    def make_iterator() -> Callable[[], Iterator[int]]:  # a library's nested iterator
        dataset = _Held()
        refs.append(weakref.ref(dataset))

        def rows() -> Iterator[int]:
            yield 1
            raise RuntimeError(f"pipeline failed ({type(dataset).__name__})")

        return rows

    try:
        for _ in make_iterator()():
            pass
    except RuntimeError as exc:
        kept = exc
    drop_frames(kept)
    assert refs[0]() is not None  # the cleared frame's function still closes over the dataset
    trim_tracebacks(kept, "rluf_ray")  # no frame of this test is in the package: nothing kept
    assert refs[0]() is None and kept.__traceback__ is None
    assert str(kept) == "pipeline failed (_Held)"


def test_exception_chain_follows_cause_context_and_wrapped_cause() -> None:
    inner, ctx = KeyError("k"), OSError("o")
    outer = RuntimeError("r")
    outer.__cause__, outer.__context__ = ctx, ctx
    wrapper = Exception("w")
    wrapper.cause = outer  # type: ignore[attr-defined]  # as Ray's task errors keep the original
    outer.__context__ = inner
    assert {type(e) for e in exception_chain(wrapper)} == {Exception, RuntimeError, OSError, KeyError}
