"""The README's cluster command with ``--output-dir s3://...``: a local head plus a worker node (the
worker alone carries ``rluf_worker``), an S3-compatible server on 127.0.0.1 (moto's server mode),
credentials and endpoint from the standard AWS variables in the nodes' environment. Every stage
completes in the bucket, the Train checkpoints are gone from it, and nothing is written to local disk
outside scratch (the temp dir: Ray's sessions and working dir, the node model cache, the trainers'
scratch): not to the nodes' home, not to the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from rluf_ray.bench.local_cluster import NODE_ENV, TINY_RUN_ALL, local_cluster
from rluf_ray.stages.registry import all_stages
from rluf_ray.store.artifacts import ArtifactStore

REPO = Path(__file__).resolve().parents[2]


def _written(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _repo_state() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_readme_job_submit_on_s3_writes_only_to_the_bucket(
    s3_server, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    bucket = s3_server.bucket(f"rluf-{uuid.uuid4().hex[:8]}")
    out = f"{bucket}/runs/tiny"
    home = tmp_path / "home"
    home.mkdir()
    scratch = Path(tempfile.mkdtemp(prefix="rluf-s3-"))  # short: Ray's socket paths live below
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    node_env = {**NODE_ENV, **s3_server.env, "HOME": str(home), "TMPDIR": str(scratch)}
    repo_before = _repo_state()
    with local_cluster({"rluf_worker": 2}, head_cpus=1, worker_cpus=2, env=node_env) as cluster:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(NODE_ENV, RAY_ADDRESS=cluster.dashboard_url)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        sets = [arg for key in TINY_RUN_ALL for arg in ("--set", key)]
        cmd = ["ray", "job", "submit", "--working-dir", ".", "--runtime-env", "cluster/runtime_env.yaml", "--",
               "python", "jobs/run_pipeline.py", "run-all", *sets, "--output-dir", out]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1100)
        (job,) = JobSubmissionClient(cluster.dashboard_url).list_jobs()
        assert job.status == JobStatus.SUCCEEDED, (job.message, proc.stdout[-4000:], proc.stderr[-2000:])

    os.environ.update(s3_server.env)  # read the bucket back from this process
    try:
        store = ArtifactStore(out)
        for spec in all_stages():
            man = store.manifest(spec.artifact_dir)
            assert man is not None and man.status == "complete" and man.files, spec.name
        assert store.exists("sft", "model/config.json") and store.exists("sft", "base/config.json")
        for arm in ("cfa", "dpo"):
            assert store.exists("training", f"{arm}/seed-42/model/config.json")
            assert store.exists("training", f"{arm}/seed-42/curves.jsonl")
        assert not any("checkpoints/" in f for f in store.list_files("training"))
        assert not any(f.startswith("checkpoints/") for f in store.list_files("sft"))
        assert store.read_parquet("inference", "predictions.parquet").num_rows == 9
        assert store.exists("report", "summary.json")
    finally:
        for key in s3_server.env:
            os.environ.pop(key, None)
    # matplotlib's font-list cache (written once per machine by the report's plots) is the one file
    # a library writes under HOME; no artifact, model or checkpoint is there.
    assert [f for f in _written(home) if not f.startswith(".cache/matplotlib/")] == []
    assert _repo_state() == repo_before
    assert (scratch / "rluf-model-cache").is_dir()  # models came through the node cache
