"""Chains the stages: skip what is complete for this config, run the rest, write manifests last."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rluf_ray.common.console import sync_logs
from rluf_ray.config import RlufConfig, get_value, plan_key, plan_key_data, with_values
from rluf_ray.errors import UpstreamMissing
from rluf_ray.stages.registry import ORDER, StageContext, StageDef, StageResult, get
from rluf_ray.store.artifacts import ArtifactStore, Manifest, manifest_digest
from rluf_ray.store.locations import check_cluster_output_dir

if TYPE_CHECKING:
    from rluf_ray.tracking.runs import PipelineRun

log = logging.getLogger("rluf")


def stage_key(stage: StageDef[Any], plan: Any) -> str:
    """The stage key of a plan: the hash of its non-operational fields (``plan_key``) and of the content
    of the external inputs it names.

    Args:
        stage: The stage.
        plan: Its plan (``stage.plan(cfg)``).

    Returns:
        A sha256 hex digest: the manifest's ``config_hash``.
    """
    return combine_key(plan_key(plan), stage.inputs(plan))


def combine_key(base: str, inputs: Mapping[str, str]) -> str:
    """A stage key from its plan's key and its external inputs' content hashes.

    Args:
        base: The plan's key (``plan_key``).
        inputs: Input name -> content hash (``stage.inputs(plan)``); empty: none.

    Returns:
        ``base`` itself without inputs, else the digest of both.
    """
    if not inputs:
        return base
    return manifest_digest({"config": base, "inputs": dict(inputs)})


def stage_fingerprint(cfg: RlufConfig, stage: StageDef[Any]) -> str:
    """The stage key under this config.

    Args:
        cfg: The config.
        stage: The stage.

    Returns:
        ``stage_key`` of the stage's plan under ``cfg``.

    Raises:
        RlufError: The stage refuses this config (its ``plan`` raises).
    """
    return stage_key(stage, stage.plan(cfg))


def effective_config(cfg: RlufConfig, store: ArtifactStore, stage: StageDef[Any]) -> RlufConfig:
    """``cfg`` with the stage's sticky keys that it leaves unset taken from the stage's last run.

    Args:
        cfg: The config.
        store: The artifact store holding the stage's manifest.
        stage: The stage.

    Returns:
        ``cfg`` itself when nothing is taken over (no sticky keys, no manifest, or all set), else a copy
        with the last run's values for the unset sticky keys.
    """
    if not stage.sticky:
        return cfg
    man = store.manifest(stage.artifact_dir)
    if man is None:
        return cfg
    values = {
        k: man.sticky[k] for k in stage.sticky if get_value(cfg, k) is None and man.sticky.get(k) is not None
    }
    return with_values(cfg, values) if values else cfg


def upstream_hashes(store: ArtifactStore, names: Iterable[str]) -> dict[str, str | None]:
    """Current manifest hashes of the given stages (None where absent).

    Args:
        store: The artifact store.
        names: Stage names.

    Returns:
        Stage name to the hash of its manifest, or None where it has none.
    """
    return {name: store.manifest_hash(get(name).artifact_dir) for name in names}


def is_complete(cfg: RlufConfig, store: ArtifactStore, stage: StageDef[Any] | str) -> bool:
    """Complete for this config: its manifest matches, and so (recursively) do its upstreams'.

    Args:
        cfg: The config (the stage's sticky keys it leaves unset come from the last run).
        store: The artifact store.
        stage: The stage, or its name.

    Returns:
        Whether the stage and all its upstreams are complete for ``cfg``.
    """
    stage = get(stage) if isinstance(stage, str) else stage
    cfg = effective_config(cfg, store, stage)
    plan = stage.plan(cfg)
    needed = stage.needs(plan)
    if not all(is_complete(cfg, store, u) for u in needed):
        return False
    ups = upstream_hashes(store, needed)
    if any(h is None for h in ups.values()):
        return False
    return store.is_complete(stage.artifact_dir, stage_key(stage, plan), ups)  # type: ignore[arg-type]


def run_stage(
    cfg: RlufConfig,
    store: ArtifactStore,
    name: str,
    force: bool = False,
    options: Mapping[str, Any] | None = None,
    tracking: PipelineRun | None = None,
) -> Manifest | None:
    """Run one stage unless complete (``force`` redoes it).

    Args:
        cfg: The config.
        store: The artifact store.
        name: The stage's name.
        force: Redo the stage even when complete (and ignore the last run's sticky values).
        options: Stage options, e.g. ``dry_run`` (print what it would spend, write nothing) or ``arm``.
        tracking: The command's tracked run (``run_tracked``), under which the stage's Ray Train runs
            report; None for none.

    Returns:
        The stage's new manifest; None if skipped (complete, or a dry run), or if the stage did only
        part of its work (``StageResult.complete`` False: no manifest is written).

    Raises:
        UpstreamMissing: An upstream stage is missing or stale for this config.
    """
    try:
        return _run_stage(cfg, store, name, force, options, tracking)
    finally:
        sync_logs()  # the full log so far: uploaded at each stage's end for a remote output


def _run_stage(
    cfg: RlufConfig,
    store: ArtifactStore,
    name: str,
    force: bool,
    options: Mapping[str, Any] | None,
    tracking: PipelineRun | None,
) -> Manifest | None:
    stage = get(name)
    if not force:
        cfg = effective_config(cfg, store, stage)
    plan = stage.plan(cfg)  # the run gets this plan, never the config
    needed = stage.needs(plan)
    missing = [u for u in needed if not is_complete(cfg, store, u)]
    if missing:
        raise UpstreamMissing(
            f"{name} needs {', '.join(missing)} first (missing or stale for this config): "
            f"run `rluf {missing[0]}` or `rluf run-all`"
        )
    opts = dict(options or {})
    if opts.get("dry_run"):  # prints what the stage would spend; writes nothing, completes nothing
        stage.run(plan, StageContext(name=name, store=store, options=opts))
        return None
    if not force and is_complete(cfg, store, stage):
        log.info("%s: complete for this config, skipped (use --force to redo)", name)
        return None
    check_cluster_output_dir(cfg.output_dir, cfg.shared_output_dir)
    fp = stage_key(stage, plan)  # external inputs are hashed before the stage reads them
    store.invalidate(stage.artifact_dir)
    log.info("%s: running", name)
    t0 = time.perf_counter()
    opts["force"] = force
    ctx = StageContext(name=name, store=store, options=opts, fingerprint=fp, tracking=tracking)
    result = stage.run(plan, ctx)
    if not isinstance(result, StageResult):
        result = StageResult()
    wall = time.perf_counter() - t0
    if not result.complete:
        log.info("%s: incomplete, no manifest written (%s)", name, result.missing or "work left to do")
        return None
    ups = {k: v for k, v in upstream_hashes(store, needed).items() if v is not None}
    sticky = {k: get_value(cfg, k) for k in stage.sticky}
    man = store.complete(
        stage.artifact_dir,
        fp,
        ups,
        result.rows,
        result.metrics,
        wall,
        sticky=sticky,
        plan=plan_key_data(plan),
    )
    log.info("%s: done in %.1fs %s", name, wall, result.rows or "")
    return man


def run_tracked(
    cfg: RlufConfig,
    store: ArtifactStore,
    names: Iterable[str],
    command: str,
    force: bool = False,
    options: Mapping[str, Any] | None = None,
    report: bool = False,
) -> list[str]:
    """Run the given stages under one tracked run (``tracking.backend``), as run-all and each stage
    command do.

    The tracked run is named ``<command>-YYYYmmdd-HHMMSS``; it gets the config as params and every
    complete stage's metrics and curves (ran or skipped), and each stage's Ray Train runs report
    under it as child runs. A dry run (``options["dry_run"]``) opens no tracked run.

    Args:
        cfg: The config.
        store: The artifact store.
        names: The stages to run, in this order.
        command: The command being run (``run-all`` or a stage's name): the tracked run's name prefix.
        force: Redo the stages even when complete.
        options: Stage options (see ``run_stage``), the same for every stage.
        report: Also write the summary and the HTML report, and log ``report/`` as artifacts.

    Returns:
        The names of the stages that ran to completion (skipped and incomplete ones left out).
    """
    from rluf_ray.tracking.runs import PipelineRun, pipeline_run

    names = list(names)
    dry = bool((options or {}).get("dry_run"))
    opened = contextlib.nullcontext(PipelineRun(None, store)) if dry else pipeline_run(cfg, store, command)
    ran = []
    with opened as tracked:
        for name in names:
            if run_stage(cfg, store, name, force=force, options=options, tracking=tracked) is not None:
                ran.append(name)
            tracked.stage(name, get(name).artifact_dir)
        if report:
            write_report(store)
            from rluf_ray.report import html

            page = html.build(store, cfg, {name: get(name).artifact_dir for name in names})
            tracked.report()
            log.info("run report: %s", page)
    return ran


def run_all(
    cfg: RlufConfig, store: ArtifactStore, force: bool = False, stages: Iterable[str] | None = None
) -> list[str]:
    """Run every stage in order, skipping complete ones, then write the summary and the HTML report.

    One tracked run (``run-all-YYYYmmdd-HHMMSS``) covers them all (``run_tracked``).

    Args:
        cfg: The config.
        store: The artifact store.
        force: Redo every stage even when complete.
        stages: The stages to run (run in pipeline order whatever the order given); None for all.

    Returns:
        The names of the stages that ran to completion (skipped and incomplete ones left out).
    """
    wanted = set(stages) if stages is not None else set(ORDER)
    names = [name for name in ORDER if name in wanted]
    return run_tracked(cfg, store, names, "run-all", force=force, report=True)


def write_report(store: ArtifactStore) -> dict[str, Any]:
    """Collect every complete stage's rows, metrics and wall time into ``report/summary.{json,md}``.

    Args:
        store: The artifact store to read the manifests from and write the report into.

    Returns:
        The summary written to ``summary.json``: ``{"stages": {name: {"rows", "metrics", "wall_time_s",
        "finished_at"}}}`` for every stage with a manifest.
    """
    stages: dict[str, Any] = {}
    for name in ORDER:
        man = store.manifest(get(name).artifact_dir)
        if man is None:
            continue
        stages[name] = {
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
