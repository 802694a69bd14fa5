"""A real multi-node Ray on this machine, for tests and benchmarks: ``ray start --head`` plus one (or
more) ``ray start --address`` worker nodes.

The head (dashboard and job API on 127.0.0.1) has none of the custom resources; the worker nodes alone
carry them, so work that requires them (engine actors, Train workers) provably lands on the worker.
Every port is chosen free, each node has its own temp dir, and on exit exactly the processes this
helper started (each ``ray start --block`` and its descendants) are stopped by process id: a global
``ray stop`` would also stop other Ray instances of the same user on the machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

NODE_ENV = {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0"}  # fmt: skip
"""The environment of a test or benchmark cluster's nodes: offline, token auth off, reproducible."""

TINY_RUN_ALL = [
    "data.demo.train_docs=64", "data.calibration_size=16", "data.test_size=4", "data.eval_size=3",
    "sft.num_epochs=1", "generation.sampling_num=6", "generation.max_new_tokens=12",
    "conformal.random_count=3", "conformal.similarity_epochs=2", "conformal.similarity_vector_size=16",
    "dpo.max_steps=2", "inference.max_new_tokens=8", "resources.engine_actors=1",
    "resources.custom_resources.rluf_worker=1",
]  # fmt: skip
"""The tiny default shrunk (``--set`` overrides) for the README's cluster command in the cluster tests:
64 SFT documents, 16/4/3 prompts, 6 samples of 12 tokens, 2 DPO steps, one engine actor on the worker."""


@dataclass(frozen=True)
class LocalCluster:
    """Where a running :func:`local_cluster` is: its GCS address, job API (dashboard) URL and temp dirs.

    Attributes:
        address: The GCS address ``127.0.0.1:<port>`` (``ray.init(address=...)``, ``RAY_ADDRESS``).
        dashboard_url: The job API / dashboard URL ``http://127.0.0.1:<port>``.
        head_temp_dir: The head node's Ray temp dir.
        worker_temp_dir: The first worker node's Ray temp dir.
        worker_temp_dirs: Every worker node's Ray temp dir, in start order.
        worker_pids: Each worker node's ``ray start --block`` process id, in start order.
    """

    address: str
    dashboard_url: str
    head_temp_dir: str
    worker_temp_dir: str  # the first worker node's
    worker_temp_dirs: tuple[str, ...] = ()
    worker_pids: tuple[int, ...] = ()  # each worker node's ``ray start --block`` process

    def kill_worker_node_of(self, pid: int) -> int:
        """Kill (SIGKILL, no grace) the worker node whose processes include ``pid``.

        As a machine lost at once: the node's ``ray start --block`` process and all its descendants are
        killed.

        Args:
            pid: A process id on the worker node to lose (e.g. an engine actor's or a Train worker's).

        Returns:
            That node's index in ``worker_pids``.

        Raises:
            LookupError: No worker node runs ``pid``.
        """
        for k, root_pid in enumerate(self.worker_pids):
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(root_pid)
                tree = [root, *root.children(recursive=True)]
                if pid in {p.pid for p in tree}:
                    for proc in tree:
                        with contextlib.suppress(psutil.Error):
                            proc.kill()
                    psutil.wait_procs(tree, timeout=10)
                    return k
        raise LookupError(f"no worker node of this cluster runs pid {pid}")


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together so none repeats).

    The ports are released before returning, so another process could still take one.

    Args:
        n: Number of ports.

    Returns:
        The port numbers.
    """
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_ports(ports: list[int]) -> list[str]:
    """``ray start`` flags giving a node its own free ports (two nodes share this machine)."""
    names = ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
             "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port")  # fmt: skip
    return [f"{flag}={port}" for flag, port in zip(names, ports, strict=True)]


def _wait(what: str, ok: Callable[[], bool], procs: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """Poll ``ok()`` until it is true; fail early if a ``ray start`` process exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                tail = Path(p.log_path).read_text(errors="replace")[-2000:]  # type: ignore[attr-defined]
                raise RuntimeError(f"ray start exited with {p.returncode} while waiting for {what}:\n{tail}")
        try:
            if ok():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"local cluster: {what} not ready after {timeout_s:.0f} s")


def _alive_nodes(dashboard_url: str) -> int:
    from ray.util.state import list_nodes

    return len(
        list_nodes(address=dashboard_url, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
    )


def _nodes_up(dashboard_url: str, n: int) -> bool:
    """At least ``n`` nodes of the cluster are alive."""
    return _alive_nodes(dashboard_url) >= n


def _stop(procs: list[subprocess.Popen[bytes]], grace_s: float = 20.0) -> None:
    """Stop the given ``ray start --block`` processes and every descendant, by pid (TERM, then KILL)."""
    victims: dict[int, psutil.Process] = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(p.pid)
            victims.update({c.pid: c for c in root.children(recursive=True)})
            victims[root.pid] = root
    for proc in victims.values():
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(list(victims.values()), timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    for p in procs:
        with contextlib.suppress(Exception):
            p.wait(timeout=5)


def _launch(cmd: list[str], env: Mapping[str, str], temp_dir: str) -> subprocess.Popen[bytes]:
    """Start one ``ray start --block`` in its own session, its output in ``<temp_dir>/ray-start.log``."""
    log_path = str(Path(temp_dir, "ray-start.log"))
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def _start(
    cmd: list[str],
    env: Mapping[str, str],
    temp_dir: str,
    procs: list[subprocess.Popen[bytes]],
    ready: Callable[[], bool],
    timeout_s: float,
    last: bool,
) -> bool:
    """Launch one node and wait until ``ready()``; on success append it to ``procs``. A failed start is
    stopped and returns False (raises on the ``last`` attempt)."""
    proc = _launch(cmd, env, temp_dir)
    try:
        _wait("the head" if "--head" in cmd else "the worker node", ready, [*procs, proc], timeout_s)
    except (RuntimeError, TimeoutError):
        _stop([proc])
        if last:
            raise
        return False
    procs.append(proc)
    return True


@contextlib.contextmanager
def local_cluster(
    worker_resources: Mapping[str, float],
    head_cpus: int = 1,
    worker_cpus: int = 2,
    env: Mapping[str, str] | None = None,
    object_store_bytes: int = 300_000_000,
    timeout_s: float = 120.0,
    start_attempts: int = 3,
    workers: int = 1,
) -> Iterator[LocalCluster]:
    """Start a head and ``workers`` worker nodes; stop them all on exit.

    Only the worker nodes have ``worker_resources`` (and ``worker_cpus`` CPUs each). ``env`` is the
    environment of both nodes (and so of every job's driver and worker): the Python that runs this
    function comes first on PATH, so ``python`` in a job entrypoint is this one. The temp dirs are
    removed on exit unless ``RLUF_KEEP_CLUSTER_DIRS`` is set.

    Args:
        worker_resources: Custom resources of each worker node (e.g. ``{"rluf_worker": 1}``).
        head_cpus: CPUs of the head node (0: no work is scheduled there).
        worker_cpus: CPUs of each worker node.
        env: Environment added to this process's for the nodes (e.g. ``NODE_ENV``); ``RAY_ADDRESS``
            is always removed.
        object_store_bytes: Object store size of each node, in bytes.
        timeout_s: Seconds to wait for each node to come up.
        start_attempts: Attempts per node (fresh ports each) before the start fails.
        workers: Number of worker nodes.

    Yields:
        Where the cluster is.

    Raises:
        RuntimeError: A ``ray start`` exited on the last attempt (its log tail in the message).
        TimeoutError: A node was not up within ``timeout_s`` on the last attempt.
    """
    ray_bin = str(Path(sys.executable).with_name("ray"))
    node_env = {**os.environ, **(env or {})}
    node_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{node_env.get('PATH', '')}"
    node_env.pop("RAY_ADDRESS", None)
    # A loaded machine can take a minute to import the dashboard agent; the raylet waits for it.
    node_env.setdefault("RAY_agent_register_timeout_ms", "300000")
    head_tmp = tempfile.mkdtemp(prefix="rluf-h-")
    worker_tmps = [tempfile.mkdtemp(prefix="rluf-w-") for _ in range(workers)]
    common = ["--block", "--node-ip-address=127.0.0.1", f"--object-store-memory={object_store_bytes}",
              "--disable-usage-stats", "--num-gpus=0"]  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for attempt in range(1, start_attempts + 1):  # `ray start` gives a raylet only 30 s to register
            gcs, dash, client, *head_ports = free_ports(9)
            cluster = LocalCluster(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", head_tmp, worker_tmps[0],
                                   tuple(worker_tmps))  # fmt: skip
            head_cmd = [ray_bin, "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={dash}", f"--ray-client-server-port={client}", f"--num-cpus={head_cpus}",
                        f"--temp-dir={head_tmp}", *_node_ports(head_ports), *common]  # fmt: skip
            head_up = functools.partial(_nodes_up, cluster.dashboard_url, 1)
            if _start(
                head_cmd, node_env, head_tmp, procs, head_up, timeout_s, last=attempt == start_attempts
            ):
                break
        for k, worker_tmp in enumerate(worker_tmps):
            for attempt in range(1, start_attempts + 1):
                worker_cmd = [ray_bin, "start", f"--address={cluster.address}", f"--num-cpus={worker_cpus}",
                              f"--resources={json.dumps(dict(worker_resources))}", f"--temp-dir={worker_tmp}",
                              *_node_ports(free_ports(6)), *common]  # fmt: skip
                worker_up = functools.partial(_nodes_up, cluster.dashboard_url, k + 2)
                if _start(worker_cmd, node_env, worker_tmp, procs, worker_up, timeout_s,
                          last=attempt == start_attempts):  # fmt: skip
                    break
        yield dataclasses.replace(cluster, worker_pids=tuple(p.pid for p in procs[1:]))
    finally:
        _stop(procs)
        if not os.environ.get("RLUF_KEEP_CLUSTER_DIRS"):
            for tmp in (head_tmp, *worker_tmps):
                shutil.rmtree(tmp, ignore_errors=True)
