"""One tiny ``./dev demo`` run shared by the tests that read it (the session fixture ``tiny_demo`` in
tests/conftest.py): the README's command (tests/test_readme_commands.py), the console's length
(tests/integration/test_console_run_all.py) and the artifacts and MLflow runs of a whole run-all
(tests/integration/test_run_all.py). One run in place of three: in CI the three
tests took 573 s together with it, against 724 s with a run-all each.

It runs in a subprocess as a user would, with the default console (no ``RLUF_LOG``), MLflow tracking
and a secret in ``OPENAI_API_KEY`` (the judge key's variable, which no file may hold afterwards).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rluf_ray.bench.local_cluster import TINY_RUN_ALL

REPO = Path(__file__).resolve().parents[2]
SMALL = [s for s in TINY_RUN_ALL if not s.startswith("resources.custom_resources.")]
"""The cluster tests' tiny run, less its cluster-only custom resource (no local node has it)."""
DEMO_SETS = [*SMALL, "sft.logging_steps=2", "tracking.backend=mlflow"]
"""The shared run's overrides: the tiny size, an SFT log line every 2 steps, MLflow tracking."""
SECRET = "sk-never-logged-0123456789"


@dataclass(frozen=True)
class DemoRun:
    """What the shared run left: its output dir, the console (stdout and stderr interleaved), how."""

    out: Path
    console: str
    returncode: int
    command: str
    wall_s: float

    def check_ok(self) -> None:
        """Fail with the console's tail when the run did not succeed."""
        assert self.returncode == 0, f"{self.command}\nexit {self.returncode}\n{self.console[-4000:]}"


def dev_venv_is_set_up() -> bool:
    """Whether ``./dev`` would run at once (its stamp matches), not set up ``.venv`` first."""
    want = hashlib.sha256(
        b"".join(
            (REPO / f).read_bytes()
            for f in ("pyproject.toml", "constraints/ci.txt", "constraints/no-deps.txt")
        )
    ).hexdigest()[:16]
    stamp = REPO / ".venv" / ".rluf-setup"
    return (REPO / ".venv/bin/rluf").exists() and stamp.is_file() and stamp.read_text().strip() == want


def user_env() -> dict[str, str]:
    """A user's shell: this Python's ``rluf`` on PATH, offline hub, no Ray address, no RLUF_LOG."""
    keep = ("PATH", "HOME", "TMPDIR", "LANG", "RLUF_CACHE_DIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0")  # fmt: skip
    return env


def run_tiny_demo(out: Path, timeout_s: float = 880) -> DemoRun:
    """Run ``./dev demo`` (or ``rluf run-all`` where ./dev would first set up .venv) into ``out``."""
    sets = " ".join(f"--set {s}" for s in DEMO_SETS)
    prog = "./dev demo" if dev_venv_is_set_up() else "rluf run-all"
    cmd = f"{prog} {sets} --output-dir {out}"
    env = {**user_env(), "OPENAI_API_KEY": SECRET}
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", "-c", cmd], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    run = DemoRun(out, proc.stdout, proc.returncode, cmd, time.monotonic() - t0)
    (out.parent / "console.txt").write_text(proc.stdout)  # to read when a test fails
    print(f"{run.wall_s:.0f}s  {cmd[:120]}")
    return run
