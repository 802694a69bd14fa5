"""Faults on a real local cluster (a head and two worker nodes that alone carry ``rluf_worker``), each
fired at a chosen engine batch by a fault point (``rluf_ray.runtime.faults``), never by a timed kill.

(c) The job is stopped while generating and submitted again: finished part files are not redone.
(b) A worker node dies while generating: the job succeeds on the other node.
Both end with every prompt generated exactly once. The cluster is started once for both (c runs first:
b kills a node).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rluf_ray.bench.local_cluster import NODE_ENV, LocalCluster, local_cluster
from rluf_ray.store.artifacts import ArtifactStore

REPO = Path(__file__).resolve().parents[2]
GENERATE = [
    "data.calibration_size=12", "data.test_size=4", "generation.sampling_num=2", "generation.max_new_tokens=4",
    "generation.prompts_per_batch=2", "generation.rows_per_file=2", "resources.engine_actors=2",
    "resources.cpus_per_actor=1", "resources.custom_resources.rluf_worker=1", "judge.provider=offline",
    "shared_output_dir=true",
]  # fmt: skip
PREPARE = """
import sys
from rluf_ray.config import load
from rluf_ray.data.splits import split_plan, tokenizer_corpus
from rluf_ray.data.tiny_model import build_embedded
from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.pipeline import stage_fingerprint
from rluf_ray.stages.registry import get
out, overrides = sys.argv[1], sys.argv[2:]
cfg = load(overrides=[*overrides, f"output_dir={out}"])
corpus = tokenizer_corpus(cfg.data.prompt_template, split_plan(cfg.data, "train"), 50)
build_embedded(corpus, f"{out}/sft/model", max_positions=512)
ArtifactStore(out).complete("sft", stage_fingerprint(cfg, get("sft")), {})
"""
EXPECTED = {"calibration": {f"demo-calibration-{i:06d}" for i in range(12)},
            "test": {f"demo-test-{i:06d}" for i in range(4)}}  # fmt: skip

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster({"rluf_worker": 2}, head_cpus=1, worker_cpus=2, env=NODE_ENV, workers=2) as c:
        yield c


def prepared(out: Path) -> Path:
    """An output_dir whose sft stage is complete (a tiny model), ready for ``generate``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", PREPARE, str(out), *GENERATE], check=True, env=env, timeout=300)
    return out


def submit(cluster: LocalCluster, out: Path, fault: dict[str, str]) -> str:
    """``generate`` as a submitted job (the code uploaded as the working dir, the fault in its env)."""
    from ray.job_submission import JobSubmissionClient

    sets = " ".join(f"--set {s}" for s in GENERATE)
    return JobSubmissionClient(cluster.dashboard_url).submit_job(
        entrypoint=f"python jobs/run_pipeline.py generate {sets} --output-dir {out}",
        runtime_env={"working_dir": str(REPO), "env_vars": {**NODE_ENV, **fault}},
    )


def wait_until(what: str, ok, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def status(cluster: LocalCluster, job: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.dashboard_url).get_job_status(job)


def wait_job(cluster: LocalCluster, job: str, timeout_s: float = 600.0):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(cluster.dashboard_url)
    wait_until(f"job {job}", lambda: client.get_job_status(job).is_terminal(), timeout_s)
    st = client.get_job_status(job)
    return st, ("" if st == JobStatus.SUCCEEDED else client.get_job_logs(job)[-4000:])


def parts(out: Path) -> dict[str, int]:
    """Every finished part file of generate, by name, with its modification time."""
    return {
        f"{p.parent.name}/{p.name}": p.stat().st_mtime_ns
        for p in (out / "generation").glob("*/part-*.parquet")
    }


def prompt_ids(out: Path) -> dict[str, list[str]]:
    store = ArtifactStore(out)
    return {split: [r for b in store.iter_part_batches("generation", split, ["prompt_id"]) for r in b["prompt_id"]]
            for split in EXPECTED}  # fmt: skip


def assert_each_prompt_once(out: Path) -> None:
    ids = prompt_ids(out)
    for split, expected in EXPECTED.items():
        assert sorted(ids[split]) == sorted(expected), split  # none lost, none twice
    man = ArtifactStore(out).manifest("generation")
    assert man is not None and man.status == "complete"
    assert man.rows == {"calibration": 12, "test": 4}


def test_stopped_job_resubmitted_redoes_no_finished_shard(cluster: LocalCluster, tmp_path: Path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    out = prepared(tmp_path / "out")
    marker = tmp_path / "hung"
    job = submit(cluster, out, {"RLUF_FAULT_ENGINE_BATCH": f"3:hang:{marker}"})  # an actor hangs at its 3rd
    wait_until("the fault point", marker.exists)
    wait_until("two finished shards", lambda: len(parts(out)) >= 2, 120)
    time.sleep(2.0)  # writes of batches already sampled land
    JobSubmissionClient(cluster.dashboard_url).stop_job(job)
    wait_until("the stop", lambda: status(cluster, job).is_terminal(), 120)
    assert status(cluster, job) == JobStatus.STOPPED
    before = parts(out)
    assert 2 <= len(before) < 8 and ArtifactStore(out).manifest("generation") is None

    again = submit(cluster, out, {})
    st, logs = wait_job(cluster, again)
    assert st == JobStatus.SUCCEEDED, logs
    log_text = JobSubmissionClient(cluster.dashboard_url).get_job_logs(again)
    assert "resuming an interrupted run" in log_text
    after = parts(out)
    assert {name: after.get(name) for name in before} == before  # finished shards untouched
    assert_each_prompt_once(out)


def test_worker_node_dies_during_generate(cluster: LocalCluster, tmp_path: Path) -> None:
    from ray.job_submission import JobStatus

    out = prepared(tmp_path / "out")
    marker = tmp_path / "hung"
    job = submit(cluster, out, {"RLUF_FAULT_ENGINE_BATCH": f"2:hang:{marker}"})
    wait_until("the fault point", marker.exists)
    pid = json.loads(marker.read_text())["pid"]
    cluster.kill_worker_node_of(pid)  # the node of the hung engine actor, as if its machine were lost
    st, logs = wait_job(cluster, job)
    assert st == JobStatus.SUCCEEDED, logs
    assert_each_prompt_once(out)
