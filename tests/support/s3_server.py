"""An S3-compatible server on 127.0.0.1 for tests: moto's server mode in its own process.

``with S3Server() as s3: s3.env`` gives the standard AWS variables (endpoint, test credentials,
region) under which ``pyarrow.fs.FileSystem.from_uri("s3://...")`` reaches it, in this process or
in any child (a Ray node, ``rluf run-all``). :meth:`S3Server.bucket` creates a bucket.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from rluf_ray.judge.vllm_server import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    """One moto server process on a free loopback port."""

    port: int = 0
    startup_timeout_s: float = 60.0
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        """The server's URL (``AWS_ENDPOINT_URL``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The AWS variables that point S3 clients at this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> S3Server:
        """Start the server and wait until it answers."""
        self.port = self.port or free_port()
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).close()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto server not up on {self.endpoint} after {self.startup_timeout_s:.0f}s")

    def bucket(self, name: str) -> str:
        """Create bucket ``name`` (3 or more characters) and return ``s3://name``."""
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(
            access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region=CREDENTIALS["AWS_DEFAULT_REGION"],
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        )
        fs.create_dir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        """Stop the server (its whole process group)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
