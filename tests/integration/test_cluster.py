"""The README's cluster command, for real: a local head plus one worker node, `ray job submit`, run-all.

The worker node alone carries the custom resource ``rluf_worker`` that the run's engine actors and Ray
Train workers require (``resources.custom_resources``), so the test also shows that the work lands on
the worker node and not on the head.

The run judges through the OpenAI-compatible client against a loopback server that demands a canary
key, which only the nodes' environment holds (as the README says to export secrets): the judge calls
succeed with it, and then the job's metadata, entrypoint and runtime env, its logs, the dashboard's job
API answer and every file of both nodes' Ray sessions and of output_dir are searched for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from rluf_ray.bench.local_cluster import NODE_ENV, TINY_RUN_ALL, local_cluster
from rluf_ray.stages.registry import all_stages
from rluf_ray.store.artifacts import ArtifactStore
from tests.support.fake_openai import FakeOpenAI
from tests.support.secrets import files_holding

CANARY_ENV = "RLUF_CANARY_JUDGE_KEY"  # in the nodes' environment only, never the submitting shell's

REPO = Path(__file__).resolve().parents[2]


def readme_command(output_dir: Path, shared: bool = True, extra: tuple[str, ...] = ()) -> list[str]:
    """The README's `ray job submit` command with the tiny run's overrides (both nodes of this local
    cluster see the same disk, so its output_dir is a shared mount) and ``extra`` ones."""
    sets = [arg for key in (*TINY_RUN_ALL, *extra) for arg in ("--set", key)]
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
    canary = f"sk-canary-{uuid.uuid4().hex}"
    node_env = {**NODE_ENV, CANARY_ENV: canary}
    with (
        FakeOpenAI(api_key=canary) as judge,
        local_cluster({"rluf_worker": 2}, head_cpus=1, worker_cpus=2, env=node_env) as cluster,
    ):
        judge_sets = (
            "judge.provider=openai", f"judge.base_url={judge.base_url}", f"judge.api_key_env={CANARY_ENV}",
            "judge.requests_per_minute=100000", "judge.tokens_per_minute=10000000",
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != CANARY_ENV}
        env.update({**NODE_ENV, "RAY_ADDRESS": cluster.dashboard_url})
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
            readme_command(out, extra=judge_sets), cwd=REPO, env=env, capture_output=True, text=True,
            timeout=1300,
        )  # fmt: skip
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
        actors = list_actors(
            address=cluster.dashboard_url, limit=10_000, raise_on_missing_output=False, detail=True
        )

        # the engine actors (Ray Data's MapWorker of SampleUDF) and the Train workers hold the worker's
        # custom resource; the zero-CPU light steps (DemoRows, PartWriter) may run on any node
        def name(a) -> str:  # Ray 2.60 puts "MapWorker(MapBatches(SampleUDF))" in class_name
            return f"{a.class_name} {a.repr_name or ''}"

        pinned = [a for a in actors if "SampleUDF" in name(a) or "TrainWorker" in name(a)]
        kinds = {("engine" if "SampleUDF" in name(a) else "train") for a in pinned}
        assert kinds == {"engine", "train"}, sorted({(a.class_name, a.repr_name) for a in actors})
        assert {a.node_id for a in pinned} == set(workers), [(a.class_name, a.node_id) for a in pinned]

        counts = judge.counts()
        assert counts.get("ok", 0) > 50 and not counts.get("unauthorized"), counts  # the key was in use
        client = JobSubmissionClient(cluster.dashboard_url)
        for job in jobs:
            assert canary not in json.dumps(job.__dict__, default=str), "job info (metadata, entrypoint, env)"
            assert canary not in client.get_job_logs(job.submission_id), "job logs"
        with urllib.request.urlopen(f"{cluster.dashboard_url}/api/jobs/", timeout=30) as resp:
            answer = resp.read().decode()
        assert jobs[-1].submission_id in answer and canary not in answer, "the dashboard's job API"
        session_dirs = [cluster.head_temp_dir, *cluster.worker_temp_dirs]
        assert [f for d in session_dirs for f in files_holding(Path(d), canary.encode())] == []
        assert files_holding(out, canary.encode()) == []
        assert canary not in proc.stdout + proc.stderr

    store = ArtifactStore(out)
    for spec in all_stages():
        man = store.manifest(spec.artifact_dir)
        assert man is not None and man.status == "complete" and man.files, spec.name
    assert store.read_parquet("generation", "calibration").num_rows == 16
    assert (out / "report" / "index.html").is_file()
