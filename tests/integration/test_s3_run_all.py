"""The tiny ``run-all`` with ``output_dir=s3://...`` against a real S3-compatible server (moto on
127.0.0.1), as a user runs it: its own process and local Ray, credentials and endpoint from the
standard AWS variables. Every stage completes in the bucket, and nothing lands on local disk outside
scratch (the temp dir: Ray's session, the node model cache, the trainers' scratch)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from rluf_ray.io.artifacts import ArtifactStore
from rluf_ray.stages.registry import all_stages

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.demo.train_docs=64", "data.calibration_size=16", "data.test_size=4", "data.eval_size=3",
    "sft.num_epochs=1", "generation.sampling_num=6", "generation.max_new_tokens=12",
    "conformal.random_count=3", "conformal.similarity_epochs=2", "conformal.similarity_vector_size=16",
    "dpo.max_steps=2", "inference.max_new_tokens=8", "resources.engine_actors=1",
]  # fmt: skip


def _written(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_run_all_on_s3_writes_only_to_the_bucket(
    s3_server, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bucket = s3_server.bucket(f"rluf-{uuid.uuid4().hex[:8]}")
    out = f"{bucket}/runs/tiny"
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    for d in (cwd, home):
        d.mkdir()
    scratch = Path(tempfile.mkdtemp(prefix="rluf-s3-"))  # short: Ray's socket paths live below
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "AWS_"))}
    env.update(s3_server.env, HOME=str(home), TMPDIR=str(scratch), PYTHONPATH=str(REPO))
    env.pop("RLUF_MODEL_CACHE", None)
    sets = [arg for key in TINY for arg in ("--set", key)]
    proc = subprocess.run(
        [sys.executable, "-m", "rluf_ray", "run-all", *sets, "--output-dir", out],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

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
            assert not store.list_files("training").keys() & {f"{arm}/seed-42/checkpoints"}
        assert not any("/checkpoints/" in f for f in store.list_files("training"))
        assert not any(f.startswith("checkpoints/") for f in store.list_files("sft"))
        assert store.read_parquet("inference", "predictions.parquet").num_rows == 9
        assert store.exists("report", "summary.json")
    finally:
        for key in s3_server.env:
            os.environ.pop(key, None)
    assert _written(cwd) == []
    # matplotlib's font-list cache (written once per machine by the report's plots) is the one file
    # a library writes under HOME; no artifact, model or checkpoint is there.
    assert [f for f in _written(home) if not f.startswith(".cache/matplotlib/")] == []
    assert (scratch / "rluf-model-cache").is_dir()  # models came through the node cache
