"""No orphans: a tiny ``rluf run-all`` SIGKILLed during SFT leaves Ray's two agents behind for about 60 s
(they wait on the dead GCS); a rerun on the same output dir stops them, so that 30 s after the kill no
process of the killed session runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rluf_ray.bench.local_cluster import TINY_RUN_ALL
from rluf_ray.runtime import orphans

REPO = Path(__file__).resolve().parents[2]
TINY_LOCAL = [s for s in TINY_RUN_ALL if not s.startswith("resources.custom_resources.")]  # no cluster
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
WITHIN_S = 30.0


def _env() -> dict[str, str]:
    keep = ("PATH", "HOME", "TMPDIR", "LANG")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0")  # fmt: skip
    return env  # no RAY_ADDRESS: the command starts its own local Ray


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait(what: str, ok: Callable[[], bool], timeout_s: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ok():
            return
        assert proc.poll() is None, f"run-all ended ({proc.returncode}) before {what}"
        time.sleep(0.3)
    raise AssertionError(f"no {what} after {timeout_s:.0f} s")


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads Linux's /proc")
@pytest.mark.timeout(300)  # about 60 s on 2 idle cores
def test_rerun_leaves_no_process_of_a_killed_driver(tmp_path: Path) -> None:
    out = tmp_path / "out"
    logs = out / "logs"
    console = tmp_path / "console.txt"  # the killed run's console, to read when it fails
    sets = [a for s in TINY_LOCAL for a in ("--set", s)]
    with console.open("w") as sink:
        driver = subprocess.Popen(
            [sys.executable, "-m", "rluf_ray", "run-all", "--output-dir", str(out), *sets],
            cwd=tmp_path, env=_env(), stdout=sink, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    session = ""
    try:
        _wait("sft: running", lambda: " sft: running" in console.read_text(), 180, driver)
        record_path = str(logs / orphans.RECORD_NAME)
        _wait("session record", lambda: orphans.read_record(record_path) is not None, 120, driver)
        record = orphans.read_record(record_path)
        assert record is not None and record.driver_pid == driver.pid
        session = record.session_dir

        def agents_up() -> bool:
            titles = [_cmdline(p) for p in orphans.session_pids(session)]
            return all(any(t.startswith(a) for t in titles) for a in AGENTS)

        _wait("Ray agents", agents_up, 120, driver)
        driver.send_signal(signal.SIGKILL)  # mid-SFT, no grace
        killed_at = time.monotonic()
        driver.wait(timeout=10)
        time.sleep(1.0)  # the GCS and raylet share the driver's fate at once; the agents stay
        left = orphans.session_pids(session)
        assert any(_cmdline(p).startswith(AGENTS) for p in left), "no agent outlived the driver"

        # a short rerun on the same output dir: it stops the leftovers, then finds SFT missing
        rerun = subprocess.run(
            [sys.executable, "-m", "rluf_ray", "generate", "--dry-run", "--output-dir", str(out), *sets],
            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
        )  # fmt: skip
        assert "leftover Ray processes of a killed earlier run" in rerun.stdout, rerun.stdout[-3000:]
        while (remaining := orphans.session_pids(session)) and time.monotonic() - killed_at < WITHIN_S:
            time.sleep(0.5)
        still = "; ".join(f"{p} {_cmdline(p)[:80]}" for p in remaining)
        assert not remaining, f"{WITHIN_S:.0f} s after the kill, still running: {still}"
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        if session:
            orphans.stop(orphans.session_pids(session), grace_s=0.5)  # this test's leftovers, by pid
