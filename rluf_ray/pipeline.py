"""Chains the stages: skip what is complete for this config, run the rest, write manifests last."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rluf_ray.config import RlufConfig, fingerprint
from rluf_ray.errors import UpstreamMissing
from rluf_ray.io.artifacts import ArtifactStore, Manifest
from rluf_ray.stages.registry import BY_NAME, STAGES, StageSpec

log = logging.getLogger("rluf")


@dataclass
class StageResult:
    """What a stage reports back: row counts and metrics for its manifest."""

    rows: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """Everything a stage's ``run`` gets besides the config."""

    spec: StageSpec
    store: ArtifactStore
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> str:
        """This stage's artifact directory name in the store."""
        return self.spec.artifact_dir

    def upstream_dir(self, stage_name: str) -> str:
        """Artifact directory of an upstream stage."""
        return BY_NAME[stage_name].artifact_dir


def stage_fingerprint(cfg: RlufConfig, spec: StageSpec) -> str:
    """Hash of exactly the config keys the stage reads."""
    return fingerprint(cfg, spec.reads)


def required_upstream(cfg: RlufConfig, spec: StageSpec) -> tuple[str, ...]:
    """The upstream stages this config needs: ``train`` with ``dpo.pairs_path`` skips assign-weights."""
    if spec.name == "train" and cfg.dpo.pairs_path:
        return tuple(u for u in spec.upstream if u != "assign-weights")
    return spec.upstream


def upstream_hashes(
    store: ArtifactStore, spec: StageSpec, names: tuple[str, ...] | None = None
) -> dict[str, str | None]:
    """Current manifest hashes of the stage's upstream stages (None where absent)."""
    return {
        name: store.manifest_hash(BY_NAME[name].artifact_dir)
        for name in (spec.upstream if names is None else names)
    }


def is_complete(cfg: RlufConfig, store: ArtifactStore, spec: StageSpec) -> bool:
    """Complete for this config: its manifest matches, and so (recursively) do its upstreams'."""
    needed = required_upstream(cfg, spec)
    if not all(is_complete(cfg, store, BY_NAME[u]) for u in needed):
        return False
    ups = upstream_hashes(store, spec, needed)
    if any(h is None for h in ups.values()):
        return False
    return store.is_complete(spec.artifact_dir, stage_fingerprint(cfg, spec), ups)  # type: ignore[arg-type]


def run_stage(
    cfg: RlufConfig,
    store: ArtifactStore,
    name: str,
    force: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Manifest | None:
    """Run one stage unless complete (``force`` redoes it). Returns its manifest, None if skipped."""
    spec = BY_NAME[name]
    needed = required_upstream(cfg, spec)
    missing = [u for u in needed if not is_complete(cfg, store, BY_NAME[u])]
    if missing:
        raise UpstreamMissing(
            f"{name} needs {', '.join(missing)} first (missing or stale for this config): "
            f"run `rluf {missing[0]}` or `rluf run-all`"
        )
    run = spec.runner()
    opts = dict(options or {})
    if opts.get("dry_run"):  # prints what the stage would spend; writes nothing, completes nothing
        run(cfg, StageContext(spec=spec, store=store, options=opts))
        return None
    if not force and is_complete(cfg, store, spec):
        log.info("%s: complete for this config, skipped (use --force to redo)", name)
        return None
    store.invalidate(spec.artifact_dir)
    log.info("%s: running", name)
    t0 = time.perf_counter()
    result = run(cfg, StageContext(spec=spec, store=store, options={**opts, "force": force}))
    if not isinstance(result, StageResult):
        result = StageResult()
    wall = time.perf_counter() - t0
    ups = {k: v for k, v in upstream_hashes(store, spec, needed).items() if v is not None}
    man = store.complete(
        spec.artifact_dir, stage_fingerprint(cfg, spec), ups, result.rows, result.metrics, wall
    )
    log.info("%s: done in %.1fs %s", name, wall, result.rows or "")
    return man


def run_all(
    cfg: RlufConfig, store: ArtifactStore, force: bool = False, stages: Iterable[str] | None = None
) -> list[str]:
    """Run every stage in order, skipping complete ones. Returns the names of stages that ran."""
    ran = []
    wanted = list(stages) if stages is not None else [s.name for s in STAGES]
    for spec in STAGES:
        if spec.name not in wanted:
            continue
        if run_stage(cfg, store, spec.name, force=force) is not None:
            ran.append(spec.name)
    write_report(store)
    return ran


def write_report(store: ArtifactStore) -> dict[str, Any]:
    """Collect every complete stage's rows, metrics and wall time into ``report/summary.{json,md}``."""
    stages: dict[str, Any] = {}
    for spec in STAGES:
        man = store.manifest(spec.artifact_dir)
        if man is None:
            continue
        stages[spec.name] = {
            "rows": man.rows,
            "metrics": man.metrics,
            "wall_time_s": man.wall_time_s,
            "finished_at": man.finished_at,
        }
    lines = ["# rluf-ray run summary", "", "| stage | wall time (s) | rows |", "|---|---|---|"]
    for name, info in stages.items():
        rows = ", ".join(f"{k}={v}" for k, v in info["rows"].items())
        lines.append(f"| {name} | {info['wall_time_s']:.1f} | {rows} |")
    summary = {"stages": stages}
    store.write_json("report", "summary.json", summary)
    store.write_bytes("report", "summary.md", ("\n".join(lines) + "\n").encode())
    return summary
