"""`./dev serve-judge`'s wrapper stops its server when it is killed (no vLLM needed: a stand-in server).

The server runs in its own session, so a SIGTERM to the wrapper alone used to leave it running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rluf_ray.judge.vllm_server import free_port

STAND_IN = """#!{python}
import http.server, os, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
open({pid_file!r}, "w").write(str(os.getpid()))
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_to_the_wrapper_stops_the_server(tmp_path: Path, sig: signal.Signals) -> None:
    pid_file = tmp_path / "server.pid"
    fake_python = tmp_path / "python"
    fake_python.write_text(STAND_IN.format(python=sys.executable, pid_file=str(pid_file)))
    fake_python.chmod(0o755)
    port = free_port()
    code = (
        "import sys; from rluf_ray.judge.vllm_server import main; "
        f"sys.exit(main([{str(port)!r}], model_dir='unused', python={str(fake_python)!r}))"
    )
    wrapper = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "stand-in server never became healthy"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        server_pid = int(pid_file.read_text())
        assert alive(server_pid)
        wrapper.send_signal(sig)
        wrapper.wait(timeout=45)
        deadline = time.monotonic() + 10
        while alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(server_pid), f"server {server_pid} outlived its wrapper"
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
