"""The leftovers of a killed driver's local Ray, without Ray: the session record, which processes belong
to a session, and the rerun's stop of a dead driver's leftovers (real child processes stand in)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rluf_ray.runtime import orphans
from rluf_ray.runtime.orphans import SessionRecord

SESSION = "/tmp/ray/session_2026-12-03_15-51-44_006993_28982"
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads Linux's /proc")


def test_parse_start_time_skips_a_command_name_with_spaces_and_parens() -> None:
    rest = " ".join(str(n) for n in range(3, 30))  # fields 3..29: field 22 holds "22"
    assert orphans.parse_start_time(f"123 (ray::a (b) c) {rest}") == 22
    assert orphans.parse_start_time("123 (x) S 1") is None


@needs_proc
def test_start_time_tells_this_process_from_none() -> None:
    assert orphans.start_time(os.getpid()) == orphans.start_time(os.getpid()) is not None
    assert orphans.start_time(2**22 + 7) is None  # above Linux's pid_max


def test_refers_to_the_session_by_command_line_or_by_a_ray_process_s_open_files() -> None:
    assert orphans.refers_to(SESSION, f"gcs_server --log_dir={SESSION}/logs", [])
    assert orphans.refers_to(SESSION, f"python default_worker.py --session-dir={SESSION}", [])
    assert orphans.refers_to(SESSION, "ray::DashboardAgent", ["/dev/null", f"{SESSION}/logs/raylet.out"])
    assert not orphans.refers_to(SESSION, "ray::DashboardAgent", ["/dev/null", "/tmp/ray/other/logs/x"])
    assert not orphans.refers_to(SESSION, "tail -f raylet.out", [f"{SESSION}/logs/raylet.out"])  # a reader
    assert not orphans.refers_to(SESSION, f"raylet --session_dir={SESSION}2", [])  # a sibling session
    assert not orphans.refers_to("/", "ray::IDLE", ["/tmp/x"])
    assert not orphans.refers_to("/tmp", "ray::IDLE", ["/tmp/x"])


def test_record_round_trip_and_a_broken_record(tmp_path: Path) -> None:
    rec = SessionRecord(SESSION, 28982, 12345, "node-a")
    path = orphans.write_record(str(tmp_path / "logs"), rec)
    assert path == str(tmp_path / "logs" / orphans.RECORD_NAME)
    assert orphans.read_record(path) == rec
    Path(path).write_text('{"session_dir": "x"}')
    assert orphans.read_record(path) is None
    assert orphans.read_record(str(tmp_path / "none.json")) is None


def test_driver_alive_needs_the_same_pid_and_start_time() -> None:
    rec = SessionRecord(SESSION, 42, 1000, "h")
    assert orphans.driver_alive(rec, {42: 1000}.get)
    assert not orphans.driver_alive(rec, {42: 1001}.get)  # the pid now runs another process
    assert not orphans.driver_alive(rec, {}.get)


def test_stop_kills_what_ignores_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    state = {1: True}

    def fake_kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        if sig == orphans.signal.SIGKILL:
            state[pid] = False

    monkeypatch.setattr(orphans.os, "kill", fake_kill)
    assert orphans.stop([1], grace_s=0.2, alive=lambda p: state[p]) == []
    assert sent == [(1, orphans.signal.SIGTERM), (1, orphans.signal.SIGKILL)]


def _stand_in(session_dir: str, ignore_term: bool) -> subprocess.Popen[bytes]:
    """A process whose command line names the session dir (as Ray's raylet's does); it can ignore SIGTERM
    (as Ray's agents do while they wait on the dead GCS)."""
    code = "import signal, sys, time\nif sys.argv[2] == '1': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('up', flush=True)\ntime.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", code, f"--session-dir={session_dir}", str(int(ignore_term))],
                            stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    return proc


def _dead_driver() -> tuple[int, int]:
    """The pid and start time of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = orphans.start_time(proc.pid)
    proc.kill()
    proc.wait()
    assert start is not None
    return proc.pid, start


@needs_proc
@pytest.mark.timeout(60)
def test_rerun_stops_the_leftovers_of_a_dead_driver_only(tmp_path: Path) -> None:
    session = str(tmp_path / "ray" / "session_x_1")
    other = str(tmp_path / "ray" / "session_x_12")  # another Ray instance: never touched
    logs = str(tmp_path / "out" / "logs")
    mine = [_stand_in(session, ignore_term=False), _stand_in(session, ignore_term=True)]
    theirs = _stand_in(other, ignore_term=True)
    try:
        assert orphans.session_pids(session) == sorted(p.pid for p in mine)
        host = socket.gethostname()
        # a live driver (this process): its processes stay
        orphans.write_record(logs, orphans.this_session(session))
        assert orphans.reap_dead_driver(logs) == []
        # another machine's record: nothing here is its
        pid, start = _dead_driver()
        orphans.write_record(logs, SessionRecord(session, pid, start, host + "-elsewhere"))
        assert orphans.reap_dead_driver(logs) == []
        assert all(p.poll() is None for p in mine)
        # a dead driver of this machine: its leftovers go, the one ignoring SIGTERM included
        orphans.write_record(logs, SessionRecord(session, pid, start, host))
        t0 = time.monotonic()
        assert orphans.reap_dead_driver(logs) == sorted(p.pid for p in mine)
        for p in mine:
            assert p.wait(timeout=10) is not None
        assert time.monotonic() - t0 < 10
        assert theirs.poll() is None, "a process of another session was stopped"
        assert orphans.reap_dead_driver(logs) == []  # nothing left: idempotent
    finally:
        for p in (*mine, theirs):
            p.kill()
            p.wait()


@needs_proc
@pytest.mark.timeout(120)
def test_a_stage_command_stops_the_leftovers_and_status_does_not(tmp_path: Path) -> None:
    from rluf_ray import cli

    out = tmp_path / "out"
    session = str(tmp_path / "ray" / "session_y_1")
    left = _stand_in(session, ignore_term=True)
    try:
        pid, start = _dead_driver()
        orphans.write_record(str(out / "logs"), SessionRecord(session, pid, start, socket.gethostname()))
        assert cli.main(["status", "--output-dir", str(out)]) == 0
        assert left.poll() is None, "status stopped a process"
        cli.main(["generate", "--dry-run", "--output-dir", str(out)])  # then fails: SFT is missing
        assert left.wait(timeout=10) == -orphans.signal.SIGKILL
    finally:
        left.kill()
        left.wait()
