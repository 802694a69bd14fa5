"""Test hook: deterministic fault points for the fault-tolerance tests (never fired unless a test sets them).

It lives in the package, not under ``tests/``, on purpose: the faults fire inside processes a test
cannot reach with Python objects (the driver of a job submitted to a cluster, the engine actors and
Ray Train workers it starts, on other nodes), so the only way in is the environment, and the code
that reads it has to be on the production path those processes run. Outside tests it is inert:
without an ``RLUF_FAULT_*`` variable :func:`fault_spec` returns None and no point exists.

A test sets ``RLUF_FAULT_<POINT>=<index>:<action>:<marker path>`` in the driver's environment, e.g.
``RLUF_FAULT_ENGINE_BATCH=2:exit:/tmp/x/fired``. The driver reads it once (:func:`fault_spec`) and
hands it explicitly to the actors or Train workers of that point (it is not part of any config hash,
so a run with a fault resumes like one without). The point fires once, where its counter reaches
``index``: it first writes the marker (who fired: pid and hostname), so a restarted actor or worker
never fires again, then performs the action:

- ``exit``: the process dies at once (``os._exit``), as on a crash or an OOM kill;
- ``hang``: the process waits (up to an hour) for the test, which watches for the marker, to kill
  something from outside (a node, the job).

Points: ``ENGINE_BATCH`` (the n-th batch an engine actor samples, from 1), ``TRAIN_STEP`` (the
global step a Train worker of rank 0 finishes).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

ENV_PREFIX = "RLUF_FAULT_"
ACTIONS = ("exit", "hang")


@dataclass(frozen=True)
class FaultSpec:
    """Where and how one fault point fires.

    Attributes:
        index: The counter value it fires at (the n-th engine batch, from 1, or the global train step).
        action: ``exit`` or ``hang``.
        marker: Path of the marker file written when it fires; while it exists the point never fires.
    """

    index: int
    action: str
    marker: str

    def fires_at(self, index: int) -> bool:
        """Whether the point fires now: at its index, if it never fired before (no marker yet).

        Args:
            index: The point's counter now.

        Returns:
            True when ``index`` is the spec's index and the marker does not exist.
        """
        return index == self.index and not os.path.exists(self.marker)

    def fire(self) -> None:
        """Write the marker, then act (never returns)."""
        tmp = f"{self.marker}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}, f)
        os.replace(tmp, self.marker)
        if self.action == "exit":
            os._exit(1)
        time.sleep(3600)
        os._exit(1)

    def check(self, index: int) -> None:
        """Fire if the point is due at ``index``.

        Args:
            index: The point's counter now.
        """
        if self.fires_at(index):
            self.fire()


def fault_spec(point: str) -> FaultSpec | None:
    """The fault set for ``point`` in this process's environment, or None (the normal case).

    Args:
        point: The fault point (``ENGINE_BATCH`` or ``TRAIN_STEP``; any case), read from
            ``RLUF_FAULT_<POINT>``.

    Returns:
        The parsed ``<index>:<action>:<marker path>``, or ``None`` when the variable is unset or empty.

    Raises:
        ValueError: The action is not one of ``ACTIONS`` (or the value is malformed).
    """
    raw = os.environ.get(ENV_PREFIX + point.upper())
    if not raw:
        return None
    index, action, marker = raw.split(":", 2)
    if action not in ACTIONS:
        raise ValueError(f"{ENV_PREFIX}{point.upper()}: action {action!r} is not one of {ACTIONS}")
    return FaultSpec(int(index), action, marker)
