"""Cluster manifests, job entry point and README stay consistent with the package."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_cluster_manifests_parse() -> None:
    for name in ["runtime_env.yaml", "cluster.yaml", "rayjob.yaml"]:
        data = yaml.safe_load((REPO / "cluster" / name).read_text())
        assert isinstance(data, dict) and data
    job = yaml.safe_load((REPO / "cluster" / "rayjob.yaml").read_text())
    entry = job["spec"]["entrypoint"]
    assert entry.startswith("python jobs/run_pipeline.py run-all")
    cfg = re.search(r"--config (\S+)", entry)
    assert cfg and (REPO / cfg.group(1)).is_file()


def test_no_secret_in_manifests() -> None:
    for path in (REPO / "cluster").glob("*.yaml"):
        assert "sk-" not in path.read_text()
        assert "OPENAI_API_KEY:" not in path.read_text()


def test_readme_quick_start_is_the_ci_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "./dev demo" in readme and "./dev test" in readme
    assert "./dev test" in ci
