"""The output_dir policy on clusters: a node-local path is refused on more than one node."""

from __future__ import annotations

import pytest

from rluf_ray.store.locations import check_cluster_output_dir, is_uri, output_dir_problem


def test_uri_and_paths_are_told_apart() -> None:
    assert is_uri("s3://bucket/prefix") and is_uri("file:///tmp/x")
    assert not is_uri("/mnt/shared/out") and not is_uri("outputs")


@pytest.mark.parametrize("path", ["/data/out", "outputs", "file:///data/out"])
def test_node_local_path_refused_on_two_nodes(path: str) -> None:
    msg = output_dir_problem(path, shared=False, alive_nodes=2)
    assert msg is not None and "\n" not in msg
    assert repr(path) in msg and "2 nodes" in msg and "shared_output_dir: true" in msg


@pytest.mark.parametrize(
    ("path", "shared", "nodes"),
    [
        ("/data/out", False, 1),
        ("/mnt/shared/out", True, 3),
        ("s3://bucket/run", False, 4),
        ("gs://b/r", False, 2),
    ],
)
def test_accepted(path: str, shared: bool, nodes: int) -> None:
    assert output_dir_problem(path, shared=shared, alive_nodes=nodes) is None


def test_local_ray_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    was_up = ray.is_initialized()
    check_cluster_output_dir("/anything", shared=False)  # no cluster joined: nothing to check
    assert ray.is_initialized() == was_up, "the check must not start a local Ray"
