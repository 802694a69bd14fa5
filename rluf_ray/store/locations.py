"""Where artifacts live: what counts as a URI, a remote location's filesystem, and the refusal of an
``output_dir`` that the nodes of a multi-node cluster would not share.

Every node writes part files, checkpoints and models under ``output_dir``; a plain path on a
multi-node cluster names a different disk on each node unless it is a shared mount, and the driver
would then miss what the workers wrote. A URI (``s3://...``, any pyarrow.fs scheme) is shared by
construction; a path is accepted on one node, or when the config says it is a shared mount
(``shared_output_dir: true``).
"""

from __future__ import annotations

import logging

import pyarrow.fs as pafs

from rluf_ray.errors import RlufError

log = logging.getLogger("rluf.storage")


def is_uri(path: str) -> bool:
    """Whether ``path`` names a filesystem by scheme (``s3://``, ``gs://``, ``file://``...).

    Args:
        path: A local path, a URI or a hub id.

    Returns:
        True when ``path`` contains ``://``.
    """
    return "://" in path


def remote_location(location: str) -> tuple[pafs.FileSystem, str] | None:
    """The pyarrow filesystem and path of a remote URI (``s3://...``).

    Args:
        location: A local path, a ``file://`` URI, a remote URI or a hub id.

    Returns:
        ``(filesystem, path inside it)`` with any trailing ``/`` stripped; ``None`` for a local path,
        ``file://`` or a hub id.
    """
    if not is_uri(location):
        return None
    fs, path = pafs.FileSystem.from_uri(location)
    return None if isinstance(fs, pafs.LocalFileSystem) else (fs, path.rstrip("/"))


def output_dir_problem(output_dir: str, shared: bool, alive_nodes: int) -> str | None:
    """Why ``output_dir`` cannot serve a cluster of ``alive_nodes`` nodes, or None when it can.

    Args:
        output_dir: The configured output directory (a path or a URI).
        shared: Whether the config declares a plain path a shared mount (``shared_output_dir``).
        alive_nodes: Number of alive nodes in the Ray cluster.

    Returns:
        A one-line message for a node-local path (a plain path or ``file://``) on more than one node
        without ``shared``; ``None`` otherwise.
    """
    if alive_nodes <= 1 or shared or (is_uri(output_dir) and not output_dir.startswith("file://")):
        return None
    return (
        f"output_dir {output_dir!r} is a node-local path but the Ray cluster has {alive_nodes} nodes: "
        "use an object-store URI (s3://...) or a shared mount and set shared_output_dir: true"
    )


def check_cluster_output_dir(output_dir: str, shared: bool) -> None:
    """On a joined cluster (``ray job submit`` or RAY_ADDRESS), raise RlufError for an unshared path.

    A local Ray started by the driver is one node and is not checked (Ray is not started for it).

    Args:
        output_dir: The configured output directory (a path or a URI).
        shared: Whether the config declares a plain path a shared mount (``shared_output_dir``).

    Raises:
        RlufError: The cluster has more than one alive node and ``output_dir`` is node-local.
    """
    from rluf_ray.runtime.bootstrap import cluster_address, ensure_ray

    if cluster_address() is None:
        return
    import ray

    ensure_ray()
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    problem = output_dir_problem(output_dir, shared, alive)
    if problem:
        raise RlufError(problem)
    log.info("output_dir %s on %d node(s)%s", output_dir, alive, " (shared mount)" if shared else "")
