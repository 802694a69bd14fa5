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


def test_the_environment_comes_from_the_image_not_the_runtime_env() -> None:
    env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    assert set(env) == {"working_dir", "env_vars"}  # a `pip: -e .` here installs from an empty directory
    job = yaml.safe_load((REPO / "cluster" / "rayjob.yaml").read_text())
    assert "pip" not in job["spec"].get("runtimeEnvYAML", "")
    launcher = yaml.safe_load((REPO / "cluster" / "cluster.yaml").read_text())
    assert "docker" in launcher and not any("pip install" in c for c in launcher["setup_commands"])
    assert "pip install" in (REPO / "cluster" / "Dockerfile").read_text()


def test_no_secret_in_manifests() -> None:
    for path in (REPO / "cluster").glob("*.yaml"):
        assert "sk-" not in path.read_text()
        assert "OPENAI_API_KEY:" not in path.read_text()


def test_readme_quick_start_is_the_ci_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "./dev demo" in readme and "./dev test" in readme
    assert "./dev test" in ci


# folders that are never part of the layout: caches, environments, run outputs, build products
NOT_LAYOUT = {".git", "outputs", "__pycache__", "build", "dist"}


def _not_layout(name: str) -> bool:
    return (
        name in NOT_LAYOUT
        or name.startswith(".venv")
        or name.endswith((".egg-info", "_cache"))
        or name in {".whl", ".gl"}
    )


def readme_layout_dirs(readme: str) -> list[str]:
    """The folders of the README's Layout section: the first token of each line of its first fenced block."""
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    return [line.split()[0].rstrip("/") for line in block.splitlines() if line.strip()]


def test_readme_layout_parses() -> None:
    readme = (
        "# x\n## Layout\n\ntext\n\n```\nrluf_ray/core/   pure\njobs/   entry\n```\n\n## Next\n```\nno/\n```\n"
    )
    assert readme_layout_dirs(readme) == ["rluf_ray/core", "jobs"]


def test_readme_layout_lists_every_folder() -> None:
    listed = readme_layout_dirs((REPO / "README.md").read_text())
    assert len(listed) == len(set(listed)), (
        f"listed twice: {sorted(d for d in listed if listed.count(d) > 1)}"
    )
    missing_on_disk = [d for d in listed if not (REPO / d).is_dir()]
    top = {p.name for p in REPO.iterdir() if p.is_dir() and not _not_layout(p.name)}
    packages = {
        f"rluf_ray/{p.name}" for p in (REPO / "rluf_ray").iterdir() if p.is_dir() and not _not_layout(p.name)
    }
    unlisted = sorted((top | packages) - set(listed))
    assert not missing_on_disk and not unlisted, (
        f"README Layout lists folders that do not exist: {missing_on_disk}; "
        f"folders the README Layout does not list: {unlisted}"
    )
