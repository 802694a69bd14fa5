"""The README's cluster command, for real: a local head plus one worker node, `ray job submit`, run-all.

The worker node alone carries the custom resource ``rluf_worker`` that the run's engine actors and Ray
Train workers require (``resources.custom_resources``), so the test also shows that the work lands on
the worker node and not on the head.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rluf_ray.bench.local_cluster import NODE_ENV, TINY_RUN_ALL, local_cluster
from rluf_ray.stages.registry import all_stages
from rluf_ray.store.artifacts import ArtifactStore

REPO = Path(__file__).resolve().parents[2]


def readme_command(output_dir: Path, shared: bool = True) -> list[str]:
    """The README's `ray job submit` command with the tiny run's overrides (both nodes of this local
    cluster see the same disk, so its output_dir is a shared mount)."""
    sets = [arg for key in TINY_RUN_ALL for arg in ("--set", key)]
    shared_flag = ["--set", "shared_output_dir=true"] if shared else []
    return ["ray", "job", "submit", "--working-dir", ".", "--runtime-env", "cluster/runtime_env.yaml", "--",
            "python", "jobs/run_pipeline.py", "run-all", *sets, "--output-dir", str(output_dir),
            *shared_flag]  # fmt: skip


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_readme_job_submit_runs_all_stages_on_the_worker_node(tmp_path: Path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient
    from ray.util.state import list_actors, list_nodes

    out = tmp_path / "outputs"
    with local_cluster({"rluf_worker": 2}, head_cpus=1, worker_cpus=2, env=NODE_ENV) as cluster:
        env = {**os.environ, **NODE_ENV, "RAY_ADDRESS": cluster.dashboard_url}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        # Without shared_output_dir a plain path on a two-node cluster is refused before any work.
        refused = subprocess.run(
            readme_command(tmp_path / "unshared", shared=False), cwd=REPO, env=env, capture_output=True,
            text=True, timeout=600,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "is a node-local path but the Ray cluster has 2 nodes" in refused.stdout + refused.stderr
        assert not (tmp_path / "unshared" / "sft").exists(), "nothing is written before the refusal"

        proc = subprocess.run(
            readme_command(out), cwd=REPO, env=env, capture_output=True, text=True, timeout=1300
        )
        jobs = sorted(JobSubmissionClient(cluster.dashboard_url).list_jobs(), key=lambda j: j.start_time or 0)
        assert len(jobs) == 2, jobs
        assert jobs[0].status == JobStatus.FAILED, jobs[0].message
        assert jobs[-1].status == JobStatus.SUCCEEDED, (
            jobs[-1].message,
            proc.stdout[-4000:],
            proc.stderr[-2000:],
        )
        assert "pip" not in (jobs[-1].runtime_env or {}), "nothing installs at run time"

        workers = [
            n.node_id for n in list_nodes(address=cluster.dashboard_url) if "rluf_worker" in n.resources_total
        ]
        assert len(workers) == 1
        actors = list_actors(address=cluster.dashboard_url, limit=10_000, raise_on_missing_output=False)
        pinned = [a for a in actors if "MapWorker" in a.class_name or "TrainWorker" in a.class_name]
        kinds = {("engine" if "MapWorker" in a.class_name else "train") for a in pinned}
        assert kinds == {"engine", "train"}, sorted({a.class_name for a in actors})
        assert {a.node_id for a in pinned} == set(workers), [(a.class_name, a.node_id) for a in pinned]

    store = ArtifactStore(out)
    for spec in all_stages():
        man = store.manifest(spec.artifact_dir)
        assert man is not None and man.status == "complete" and man.files, spec.name
    assert store.read_parquet("generation", "calibration").num_rows == 16
    assert (out / "report" / "index.html").is_file()
