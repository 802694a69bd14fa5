"""Leftover Ray processes of a killed driver: the driver records its local Ray session under the output
dir's logs, and the next command on that output dir stops what is left of it before it starts.

Why: a driver that starts a local Ray shares its fate with Ray's GCS, raylet, monitors and dashboard
(``PR_SET_PDEATHSIG``): they die with it, and the workers exit within seconds once the raylet is gone.
Ray's two agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) see the raylet die at once, but
then report its unexpected death to the GCS, which is dead too, and wait for that call's timeout (60 s
in Ray 2.60, not configurable) before they exit. Their command line (their process title) does not name
the session; their open files do (the session's log files): a ``ray::`` process with a file of the
session open, or a process whose command line names the session dir, is a leftover of that session.

Only Linux's ``/proc`` is read; elsewhere nothing is found and nothing is stopped.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

log = logging.getLogger("rluf.ray")

RECORD_NAME = "ray_session.json"
"""The record of the local Ray session a driver started, under ``<output_dir>/logs/``."""


@dataclass(frozen=True)
class SessionRecord:
    """The local Ray session a driver started.

    Attributes:
        session_dir: The session dir ``ray.init`` reported.
        driver_pid: The driver's process id.
        driver_start: The driver's start time (``/proc/<pid>/stat`` field 22, clock ticks since boot):
            with the pid, it tells the driver from a later process that got the same pid.
        host: The machine's host name (an output dir may be shared between machines).
    """

    session_dir: str
    driver_pid: int
    driver_start: int
    host: str


def start_time(pid: int) -> int | None:
    """A process's start time, in clock ticks since boot (``/proc/<pid>/stat`` field 22).

    Args:
        pid: The process id.

    Returns:
        The start time, or None when there is no such process (or no ``/proc``).
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    return parse_start_time(stat)


def parse_start_time(stat: str) -> int | None:
    """The start time field of a ``/proc/<pid>/stat`` line (the command name may hold spaces and ``)``).

    Args:
        stat: The line.

    Returns:
        Field 22, or None when the line has no such field.
    """
    fields = stat[stat.rfind(")") + 1 :].split()  # fields 3.. after the command name
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def this_session(session_dir: str) -> SessionRecord:
    """The record of a session this process (the driver) started.

    Args:
        session_dir: The session dir ``ray.init`` reported.

    Returns:
        The record, with this process's id and start time and this machine's host name.
    """
    pid = os.getpid()
    return SessionRecord(session_dir, pid, start_time(pid) or 0, socket.gethostname())


def write_record(folder: str, record: SessionRecord) -> str:
    """Write ``record`` to ``<folder>/ray_session.json`` (the folder is created when missing).

    Args:
        folder: The output dir's logs folder.
        record: The session.

    Returns:
        The record's path.
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, RECORD_NAME)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(record), f)
    os.replace(tmp, path)
    return path


def read_record(path: str) -> SessionRecord | None:
    """The record at ``path``.

    Args:
        path: A ``ray_session.json``.

    Returns:
        The record, or None when the file is missing or is not a record.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return SessionRecord(str(data["session_dir"]), int(data["driver_pid"]), int(data["driver_start"]),
                             str(data["host"]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


def driver_alive(record: SessionRecord, start_of: Callable[[int], int | None] = start_time) -> bool:
    """Whether the recorded driver still runs: its pid runs a process that started when it did.

    Args:
        record: The session.
        start_of: A pid's start time (None: no such process); ``/proc`` by default.

    Returns:
        True when the pid's process has the recorded start time.
    """
    return start_of(record.driver_pid) == record.driver_start


RAY_TITLE = "ray::"
"""How Ray's workers and agents title themselves (their command line once started)."""


def refers_to(session_dir: str, cmdline: str, paths: Iterable[str]) -> bool:
    """Whether a process belongs to a session: its command line names the session dir (Ray's GCS,
    raylet, monitors, a worker still starting), or it is titled ``ray::`` (a worker, an agent) and one
    of its open files lies in the session dir (its log files).

    A process that only reads the session's logs (``tail``, an editor) does not count.

    Args:
        session_dir: The session dir (absolute).
        cmdline: The process's command line, arguments joined by spaces.
        paths: The targets of its open file descriptors.

    Returns:
        True when it belongs to the session (a sibling dir such as ``<session_dir>2`` does not count).
    """
    root = session_dir.rstrip("/")
    if not root.startswith("/") or root.count("/") < 2:  # never "/" or a top-level dir
        return False
    if _names(root, cmdline):
        return True
    return cmdline.startswith(RAY_TITLE) and any(_names(root, path) for path in paths)


def _names(root: str, text: str) -> bool:
    """Whether ``text`` holds the path ``root`` or a path under it."""
    at = text.find(root)
    while at >= 0:
        end = at + len(root)
        if end == len(text) or text[end] in "/ ,=:'\"":
            return True
        at = text.find(root, end)
    return False


def _proc_view(pid: int) -> tuple[str, list[str]] | None:
    """A process's command line and its open files' targets (None: gone or unreadable)."""
    base = f"/proc/{pid}"
    try:
        with open(f"{base}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        paths = []
        for fd in os.listdir(f"{base}/fd"):
            try:
                paths.append(os.readlink(f"{base}/fd/{fd}"))
            except OSError:
                continue
    except OSError:
        return None
    return cmdline, paths


def session_pids(session_dir: str, exclude: Sequence[int] = ()) -> list[int]:
    """This user's processes that belong to a session (see :func:`refers_to`).

    Args:
        session_dir: The session dir.
        exclude: Process ids never to list (this process is never listed).

    Returns:
        Their process ids, in ascending order; empty without ``/proc``.
    """
    skip = {os.getpid(), *exclude}
    uid = os.getuid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    found = []
    for name in entries:
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
        except OSError:
            continue
        view = _proc_view(int(name))
        if view is not None and refers_to(session_dir, *view):
            found.append(int(name))
    return sorted(found)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 1 :].split()
    return bool(fields) and fields[0] != "Z"


def stop(pids: Sequence[int], grace_s: float = 2.0, alive: Callable[[int], bool] = _alive) -> list[int]:
    """SIGTERM each process, then SIGKILL those still running after ``grace_s``.

    Ray's agents wait in a blocking call to the dead GCS and handle SIGTERM only after it, so most of
    them take the SIGKILL.

    Args:
        pids: The processes.
        grace_s: Seconds between SIGTERM and SIGKILL.
        alive: Whether a pid still runs (``/proc`` by default).

    Returns:
        Those still running 5 s after the SIGKILL (normally none).
    """
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        left = [p for p in pids if alive(p)]
        for pid in left:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                continue
        deadline = time.monotonic() + wait_s
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [p for p in left if alive(p)]
        pids = left
        if not pids:
            break
    return list(pids)


def reap_dead_driver(folder: str) -> list[int]:
    """Stop the leftover processes of the local Ray session a dead earlier driver recorded in ``folder``.

    Nothing is stopped when there is no record, when it comes from another machine, when its driver
    still runs, or when no process of this user refers to its session dir.

    Args:
        folder: The output dir's logs folder (``<output_dir>/logs``).

    Returns:
        The process ids that were stopped.
    """
    record = read_record(os.path.join(folder, RECORD_NAME))
    if record is None or record.host != socket.gethostname() or driver_alive(record):
        return []
    pids = session_pids(record.session_dir, exclude=(record.driver_pid,))
    if not pids:
        return []
    log.info("stopping %d leftover Ray processes of a killed earlier run (pid %d, %s): %s", len(pids),
             record.driver_pid, record.session_dir, " ".join(map(str, pids)))  # fmt: skip
    left = stop(pids)
    if left:
        log.warning("leftover Ray processes still running: %s", " ".join(map(str, left)))
    return pids
