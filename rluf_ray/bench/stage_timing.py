"""Timing of the generate stage from inside its engine actors, for ``rluf bench generate``.

:class:`TimedEngineFactory` wraps the stage's own engine factory: each actor's engine build and each
engine call are appended as one JSON line to an event file (the benchmark runs on one machine, so
wall-clock times of all processes compare). It also fixes every sample at exactly ``max_new_tokens``
tokens (``min_new_tokens = max_new_tokens``), so the stage and the bare baseline do the same work.
:func:`stage_phases` turns the events into the per-phase breakdown that the benchmark reports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rluf_ray.engines.base import Completion, Engine, SamplingSpec


def _append(path: str, event: dict[str, Any]) -> None:
    """One JSON line, written with a single ``write`` on an append-mode file (lines of several
    processes do not interleave at these sizes)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


class TimedEngine:
    """An engine whose calls are timed into the event file; samples are fixed at ``max_new_tokens``.

    Args:
        inner: The engine to time.
        events_path: The event file (JSON lines).
    """

    def __init__(self, inner: Engine, events_path: str):
        self.inner = inner
        self.name = inner.name
        self.events_path = events_path

    def count_tokens(self, text: str) -> int:
        """The inner engine's token count.

        Args:
            text: A rendered prompt.

        Returns:
            Its tokens as the inner engine sees them.
        """
        return self.inner.count_tokens(text)

    def generate(
        self, prompts: Sequence[str], spec: SamplingSpec, seed: int | None = None
    ) -> list[Completion]:
        """The inner engine's samples at exactly ``spec.max_new_tokens`` tokens each, timed.

        Args:
            prompts: The rendered prompts of one batch.
            spec: How to sample (its ``min_new_tokens`` is raised to ``max_new_tokens``).
            seed: Passed on to the inner engine.

        Returns:
            The inner engine's completions.
        """
        fixed = dataclasses.replace(spec, min_new_tokens=spec.max_new_tokens)
        t0 = time.time()
        out = self.inner.generate(prompts, fixed, seed=seed)
        event = {"kind": "generate", "pid": os.getpid(), "start": t0, "end": time.time(),
                 "samples": sum(len(c.texts) for c in out)}  # fmt: skip
        simulated = getattr(self.inner, "last_simulated_s", None)  # the latency engine's simulated time
        if simulated is not None:
            event["simulated_s"] = simulated
        _append(self.events_path, event)
        return out

    def close(self) -> None:
        """Close the inner engine."""
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class TimedEngineFactory:
    """Wraps an engine factory (picklable: plain fields) so that each actor's engine is timed.

    Attributes:
        inner: The stage's own factory (``EngineFactory``).
        events_path: The event file every actor appends to.
    """

    inner: Any
    events_path: str

    def __call__(self) -> TimedEngine:
        t0 = time.time()
        engine = self.inner()
        _append(self.events_path, {"kind": "build", "pid": os.getpid(), "start": t0, "end": time.time()})
        return TimedEngine(engine, self.events_path)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """The events of a run.

    Args:
        path: The event file.

    Returns:
        One dict per line (``kind``: ``build`` or ``generate``; ``pid``, ``start``, ``end``; ``samples``
        for ``generate``); empty when the file does not exist.
    """
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def stage_phases(events: list[dict[str, Any]], t_start: float, t_end: float) -> dict[str, float]:
    """Where the stage's wall time went, from its engine events and the driver's start and end.

    Args:
        events: :func:`read_events` of the run.
        t_start: Wall-clock time when the driver called the stage.
        t_end: Wall-clock time when the stage returned.

    Returns:
        ``wall_s``; ``before_engines_s`` (driver planning, Ray Data start, actor launch: stage start to
        the first engine build); ``engine_start_s`` (the longest engine build of any actor);
        ``generate_busy_s`` (engine-call time summed over actors, divided by the actors);
        ``idle_between_calls_s`` (each actor's time from its engine being ready to its last call's end
        not spent in engine calls, averaged over actors); ``after_last_call_s`` (last engine call to
        stage end: writing the last parts, counting, the manifest); ``actors``; ``engine_calls``;
        ``samples``.

    Raises:
        ValueError: No engine was built, or no engine call was made.
    """
    builds = [e for e in events if e["kind"] == "build"]
    calls = [e for e in events if e["kind"] == "generate"]
    if not builds or not calls:
        raise ValueError("no engine build or engine call was recorded")
    actors = {e["pid"] for e in builds}
    idle = 0.0
    for pid in actors:
        mine = [c for c in calls if c["pid"] == pid]
        if not mine:
            continue
        ready = max(b["end"] for b in builds if b["pid"] == pid)
        span = max(c["end"] for c in mine) - ready
        idle += span - sum(c["end"] - c["start"] for c in mine)
    return {
        "wall_s": t_end - t_start,
        "before_engines_s": min(b["start"] for b in builds) - t_start,
        "engine_start_s": max(b["end"] - b["start"] for b in builds),
        "generate_busy_s": sum(c["end"] - c["start"] for c in calls) / len(actors),
        "idle_between_calls_s": idle / len(actors),
        "after_last_call_s": t_end - max(c["end"] for c in calls),
        "actors": float(len(actors)),
        "engine_calls": float(len(calls)),
        "samples": float(sum(c["samples"] for c in calls)),
    }
