"""``rluf status``: each stage (and training unit) complete, stale (and why) or missing, and what run-all runs.

Reads manifests only (no Ray, no model, no stage run), so it works on any output directory the
artifact store reads, ``s3://`` ones included. A stage is judged as ``pipeline.is_complete`` judges it;
where it is not complete the reasons are named: the changed plan fields (by config key where one
explains the change, else by plan path), a stale, missing or re-run upstream, a changed external
input, missing files. ``run-all`` runs a stage that is not complete, and every stage whose upstream it
runs (a re-run upstream changes the manifest hash its downstream recorded).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rluf_ray.config import (
    RlufConfig,
    is_operational,
    leaf_keys,
    plan_key,
    plan_key_data,
    select,
    with_values,
)
from rluf_ray.config.plan_diff import ABSENT, Change, describe, diff_plan_data
from rluf_ray.config.plan_keys import canonical_json
from rluf_ray.errors import RlufError
from rluf_ray.pipeline import combine_key, effective_config, upstream_hashes
from rluf_ray.stages.registry import ORDER, StageDef, UnitRecord, get
from rluf_ray.store.artifacts import ArtifactStore, Manifest

COMPLETE, STALE, MISSING, ERROR = "complete", "stale", "missing", "error"
MAX_CANDIDATES = 30  # config keys tried per changed field when naming it
# changes that pick the units rather than change one (a unit's key holds its own arm and seed)
UNIT_LIST_FIELDS = ("plan arms", "plan seeds", "dpo.arms:", "dpo.seeds:", "dpo.seed:")


@dataclass
class UnitStatus:
    """One training unit: its state, why, and whether run-all would train it."""

    name: str
    state: str
    reasons: list[str] = field(default_factory=list)
    would_run: bool = False


@dataclass
class StageStatus:
    """One stage: its state, why, its units, the upstreams its plan needs, whether run-all runs it."""

    name: str
    state: str
    reasons: list[str] = field(default_factory=list)
    needs: tuple[str, ...] = ()
    units: list[UnitStatus] = field(default_factory=list)
    would_run: bool = False


def _normal(data: Any) -> Any:
    """Plan data as it reads back from a manifest (JSON)."""
    return json.loads(canonical_json(plan_key_data(data)))


def _lookup(tree: Any, path: str) -> Any:
    """The value at a dotted plan path (``a.b[1].c``; a list of pairs looked up by name), or ABSENT."""
    node = tree
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if index:
            ok = isinstance(node, list) and int(index) < len(node)
            node = node[int(index)] if ok else ABSENT
        elif isinstance(node, Mapping):
            node = node.get(name, ABSENT)
        elif isinstance(node, list):
            node = next((p[1] for p in node if isinstance(p, list) and len(p) == 2 and p[0] == name), ABSENT)
        else:
            return ABSENT
    return node


def config_keys_for(cfg: RlufConfig, stage: StageDef[Any], change: Change) -> list[str]:
    """The config keys that explain a changed plan field: setting one back to the old value restores it.

    Candidates are the non-operational keys whose value now equals the field's new value; each is
    verified by computing the stage's plan with the old value.

    Args:
        cfg: The config the stage's plan was computed from.
        stage: The stage.
        change: A changed plan field.

    Returns:
        The explaining keys (usually one); empty when none does (the field is then named by its plan path).
    """
    if change.old is ABSENT or change.new is ABSENT:
        return []
    keys = [k for k in leaf_keys(cfg) if not is_operational(k)]
    values = select(cfg, keys)
    candidates = [k for k in keys if _normal(values[k]) == change.new][:MAX_CANDIDATES]
    found = []
    for key in candidates:
        try:
            old_plan = _normal(stage.plan(with_values(cfg, {key: change.old})))
        except (RlufError, ValueError, TypeError, KeyError):
            continue
        if _lookup(old_plan, change.path) == change.old:
            found.append(key)
    return found


def _lift(change: Change, old: Any, new: Any) -> Change | None:
    """A change to a list item as a change to the whole list (a config key may hold the list)."""
    match = re.fullmatch(r"(.*)\[\d+\]", change.path)
    if match is None:
        return None
    path = match.group(1)
    return Change(path, _lookup(old, path), _lookup(new, path))


def name_changes(cfg: RlufConfig, stage: StageDef[Any], old: Any, new: Any) -> list[str]:
    """The changed fields between two plan data trees, each as ``name: old -> new``.

    Args:
        cfg: The config ``new`` was computed from.
        stage: The stage.
        old: The plan data its manifest recorded.
        new: Its plan data now (JSON-normalized).

    Returns:
        One text per changed field (by config key where one explains it, else ``plan <path>``); a
        list item's change is named by the config key that holds the whole list, if one does.
    """
    out: list[str] = []
    for change in diff_plan_data(old, new):
        keys = config_keys_for(cfg, stage, change)
        lifted = None if keys else _lift(change, old, new)
        if lifted is not None and (lifted_keys := config_keys_for(cfg, stage, lifted)):
            text = describe(lifted, " or ".join(lifted_keys))
        else:
            text = describe(change, " or ".join(keys) if keys else None)
        if text not in out:
            out.append(text)
    return out


def key_reasons(stage: StageDef[Any], man: Manifest, plan: Any, changes: list[str]) -> list[str]:
    """Why the recorded stage key differs from the key now (empty when it does not).

    Args:
        stage: The stage.
        man: Its manifest.
        plan: Its plan now.
        changes: The changed plan fields (``name_changes``; empty when the manifest has no plan).

    Returns:
        The changed plan fields, a changed external input, or ``key changed (no plan recorded)``.
    """
    inputs = stage.inputs(plan)
    if man.config_hash == combine_key(plan_key(plan), inputs):
        return []
    if man.plan is None:
        return ["key changed (no plan recorded)"]
    reasons = list(changes)
    if inputs and combine_key(plan_key(man.plan), inputs) != man.config_hash:
        reasons.append(f"external input changed ({', '.join(sorted(inputs))})")
    return reasons or ["key changed (same plan: the key's recipe changed)"]


def upstream_reasons(
    man: Manifest, needed: Sequence[str], earlier: Mapping[str, StageStatus], hashes: Mapping[str, str | None]
) -> list[str]:
    """Why the stage's upstreams no longer match what its manifest recorded.

    Args:
        man: The stage's manifest.
        needed: The upstream stages its plan needs now.
        earlier: The statuses of the stages before it.
        hashes: The needed upstreams' manifest hashes now.

    Returns:
        One text per upstream that is not complete or whose manifest changed since.
    """
    out = []
    for name in needed:
        state = earlier[name].state
        if state != COMPLETE:
            out.append(f"upstream {name} {state}")
        elif man.upstream.get(name) != hashes.get(name):
            out.append(f"upstream {name} changed (re-ran since)")
    extra = sorted(set(man.upstream) - set(needed))
    if extra:
        out.append(f"no longer reads {', '.join(extra)}")
    return out


def file_reasons(store: ArtifactStore, stage_dir: str, man: Manifest) -> list[str]:
    """The files the manifest lists that are gone or changed size.

    Args:
        store: The artifact store.
        stage_dir: The stage's artifact directory.
        man: Its manifest.

    Returns:
        One text naming them (at most three), or empty.
    """
    present = store.list_files(stage_dir)
    bad = sorted(name for name, size in man.files.items() if present.get(name) != size)
    if not bad:
        return []
    more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
    return [f"files missing or changed: {', '.join(bad[:3])}{more}"]


def unit_reasons(key: Mapping[str, Any], recorded: Mapping[str, Any], plan_changes: list[str]) -> list[str]:
    """Why a unit's recorded key differs from its key now.

    Args:
        key: The unit's key now.
        recorded: The key its finished output records.
        plan_changes: The stage's changed plan fields (from its manifest; empty when unknown).

    Returns:
        The texts: the plan fields (or ``unit plan changed``), the changed inputs, the changed upstreams.
    """
    out: list[str] = []
    if key.get("config_hash") != recorded.get("config_hash"):
        unit_fields = [c for c in plan_changes if not c.startswith(UNIT_LIST_FIELDS)]
        out += unit_fields or ["unit plan changed"]
    if key.get("inputs") != recorded.get("inputs"):
        out.append("external input changed")
    old_up, new_up = recorded.get("upstream") or {}, key.get("upstream") or {}
    out += [
        f"upstream {u} changed" for u in sorted(set(old_up) | set(new_up)) if old_up.get(u) != new_up.get(u)
    ]
    return out or ["unit key changed"]


def unit_status(record: UnitRecord, plan_changes: list[str]) -> UnitStatus:
    """One unit's state from its record.

    Args:
        record: The unit's key now and what its output records.
        plan_changes: The stage's changed plan fields (empty when unknown).

    Returns:
        Complete, stale (with the reasons) or missing (noting a resumable started run).
    """
    if record.recorded is None:
        note = ["a run began: resumes from its checkpoints"] if record.started else []
        return UnitStatus(record.name, MISSING, note)
    if record.recorded == record.key:
        return UnitStatus(record.name, COMPLETE)
    return UnitStatus(record.name, STALE, unit_reasons(record.key, record.recorded, plan_changes))


def stage_status(
    cfg: RlufConfig, store: ArtifactStore, stage: StageDef[Any], earlier: Mapping[str, StageStatus]
) -> StageStatus:
    """One stage's state, judged as ``pipeline.is_complete`` judges it, with the reasons.

    Args:
        cfg: The config (the stage's unset sticky keys come from its last run).
        store: The artifact store.
        stage: The stage.
        earlier: The statuses of the stages before it in ``ORDER``.

    Returns:
        The stage's status (``would_run`` not yet set).
    """
    cfg = effective_config(cfg, store, stage)
    try:
        plan = stage.plan(cfg)
        needed = stage.needs(plan)
        hashes = upstream_hashes(store, needed)
        man = store.manifest(stage.artifact_dir)
        changes = [] if man is None or man.plan is None else name_changes(cfg, stage, man.plan, _normal(plan))
        reasons = [] if man is None else key_reasons(stage, man, plan, changes)
        units = stage.units(plan, store, hashes)
    except RlufError as exc:
        return StageStatus(stage.name, ERROR, [str(exc)])
    unit_list = [unit_status(r, changes) for r in units]
    if man is None:
        done = sum(u.state == COMPLETE for u in unit_list)
        note = [f"units complete: {done} of {len(unit_list)}"] if unit_list else []
        return StageStatus(stage.name, MISSING, note, needed, unit_list)
    if man.status != COMPLETE:
        reasons.append(f"manifest status {man.status!r}")
    reasons += upstream_reasons(man, needed, earlier, hashes)
    reasons += file_reasons(store, stage.artifact_dir, man)
    return StageStatus(stage.name, STALE if reasons else COMPLETE, reasons, needed, unit_list)


def mark_would_run(statuses: Sequence[StageStatus]) -> None:
    """Set what run-all would run: each stage not complete, and each whose needed upstream it runs.

    Units: every unit of a stage that runs because an upstream runs; else the units not complete.

    Args:
        statuses: The stages' statuses in ``ORDER`` (changed in place).
    """
    runs: dict[str, bool] = {}
    for st in statuses:
        upstream_runs = any(runs.get(u, False) for u in st.needs)
        st.would_run = runs[st.name] = st.state != COMPLETE or upstream_runs
        for unit in st.units:
            unit.would_run = st.would_run and (upstream_runs or unit.state != COMPLETE)
            if unit.would_run and unit.state == COMPLETE:
                unit.reasons.append("retrains: an upstream re-runs")


def pipeline_status(cfg: RlufConfig, store: ArtifactStore) -> list[StageStatus]:
    """Every stage's status in pipeline order, with what run-all would run.

    Args:
        cfg: The config (as the stage commands take it).
        store: The artifact store of the output directory.

    Returns:
        One status per stage in ``ORDER``.
    """
    done: dict[str, StageStatus] = {}
    for name in ORDER:
        done[name] = stage_status(cfg, store, get(name), done)
    statuses = list(done.values())
    mark_would_run(statuses)
    return statuses


def format_status(statuses: Sequence[StageStatus], where: str) -> list[str]:
    """The status as lines of text: one per stage and per unit, then what run-all would run.

    Args:
        statuses: The stages' statuses (``pipeline_status``).
        where: The output directory, for the first line.

    Returns:
        The lines (no trailing newlines).
    """
    names = [s.name for s in statuses] + [f"  {u.name}" for s in statuses for u in s.units]
    width = max(len(n) for n in names) + 2
    lines = [f"output dir: {where}", f"{'stage':<{width}}{'state':<10}reason"]
    for st in statuses:
        lines.append(f"{st.name:<{width}}{st.state:<10}{'; '.join(st.reasons)}".rstrip())
        for unit in st.units:
            lines.append(f"{'  ' + unit.name:<{width}}{unit.state:<10}{'; '.join(unit.reasons)}".rstrip())
    run = [s.name for s in statuses if s.would_run]
    lines.append(f"run-all would run: {', '.join(run) if run else 'nothing (all complete)'}")
    several = sum(bool(s.units) for s in statuses) > 1  # name the stage only when more than one has units
    train = [f"{s.name} {u.name}" if several else u.name for s in statuses for u in s.units if u.would_run]
    if train:
        lines.append(f"run-all would train: {', '.join(train)}")
    return lines
