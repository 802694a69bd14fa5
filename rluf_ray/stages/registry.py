"""The stage contract (context, result, the ``Stage`` protocol) and the registry of the pipeline's stages.

Each stage module declares itself at its end as ``STAGE = StageDef(...)``: its name, artifact
directory, upstream stages, the config keys it reads (``reads``, next to the code that reads them),
a pure ``plan(cfg)`` and ``run(cfg, ctx)``. A stage's manifest hashes exactly its ``reads`` (plus
the content of external inputs it names, see ``inputs``), so changing a key re-runs the stages that
read it and, through the upstream manifest hashes, everything downstream. ``tests/test_stale_keys.py``
checks that ``reads`` is exactly what ``plan`` depends on.

Stages import this module (the contract) and never each other; ``pipeline.py`` chains them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rluf_ray.config import RlufConfig
    from rluf_ray.store.artifacts import ArtifactStore
    from rluf_ray.tracking.runs import PipelineRun

ORDER: tuple[str, ...] = (
    "sft",
    "generate",
    "calibrate",
    "feedback",
    "assign-weights",
    "train",
    "infer",
    "evaluate",
)
MODULES: dict[str, str] = {
    "sft": "rluf_ray.stages.sft",
    "generate": "rluf_ray.stages.generate",
    "calibrate": "rluf_ray.stages.calibrate",
    "feedback": "rluf_ray.stages.feedback",
    "assign-weights": "rluf_ray.stages.weights",
    "train": "rluf_ray.stages.train",
    "infer": "rluf_ray.stages.infer",
    "evaluate": "rluf_ray.stages.evaluate",
}


@dataclass
class StageResult:
    """What a stage reports back: row counts and metrics for its manifest.

    ``complete=False``: the run did part of the stage's work (``rluf train --arm cfa`` with the dpo
    arm still missing); no manifest is written, so downstream stages keep refusing until a later run
    finishes it. ``missing`` says what is still to do (one line, logged by the pipeline).
    """

    rows: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    complete: bool = True
    missing: str = ""


@dataclass
class StageContext:
    """Everything a stage's ``run`` gets besides the config."""

    name: str
    store: ArtifactStore
    options: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""  # the hash of what this run reads (names resumable Ray Train runs)
    tracking: PipelineRun | None = None  # run-all's tracked run: Ray Train runs report under it

    @property
    def dir(self) -> str:
        """This stage's artifact directory name in the store."""
        return get(self.name).artifact_dir

    def upstream_dir(self, stage_name: str) -> str:
        """Artifact directory of another stage."""
        return get(stage_name).artifact_dir


class Stage(Protocol):
    """What the pipeline needs of a stage."""

    name: str
    artifact_dir: str
    upstream: tuple[str, ...]
    reads: tuple[str, ...]

    def plan(self, cfg: RlufConfig) -> dict[str, Any]:
        """Everything the stage takes from the config (Ray arguments, settings); pure, starts nothing."""
        ...

    def run(self, cfg: RlufConfig, ctx: StageContext) -> StageResult:
        """Do the work, write artifacts (never the manifest), return rows and metrics."""
        ...

    def needs(self, cfg: RlufConfig) -> tuple[str, ...]:
        """The upstream stages this config needs (a subset of ``upstream``)."""
        ...

    def inputs(self, cfg: RlufConfig) -> dict[str, str]:
        """Content hashes of external inputs the config names (files outside the store)."""
        ...


@dataclass(frozen=True)
class StageDef:
    """A stage, as each stage module declares it (``STAGE = StageDef(...)``).

    ``sticky``: config keys whose value, when the config leaves them unset, is taken from the stage's
    last complete run (``rluf train --pairs FILE`` keeps counting as the train stage for what follows).
    """

    name: str
    artifact_dir: str
    upstream: tuple[str, ...]
    reads: tuple[str, ...]
    plan_fn: Callable[[RlufConfig], dict[str, Any]]
    run_fn: Callable[[RlufConfig, StageContext], StageResult]
    needs_fn: Callable[[RlufConfig], tuple[str, ...]] | None = None
    inputs_fn: Callable[[RlufConfig], dict[str, str]] | None = None
    sticky: tuple[str, ...] = ()

    def plan(self, cfg: RlufConfig) -> dict[str, Any]:
        return self.plan_fn(cfg)

    def run(self, cfg: RlufConfig, ctx: StageContext) -> StageResult:
        return self.run_fn(cfg, ctx)

    def needs(self, cfg: RlufConfig) -> tuple[str, ...]:
        return self.upstream if self.needs_fn is None else self.needs_fn(cfg)

    def inputs(self, cfg: RlufConfig) -> dict[str, str]:
        return {} if self.inputs_fn is None else self.inputs_fn(cfg)


_OVERRIDES: dict[str, StageDef] = {}  # tests put fake stages here (monkeypatch.setitem)


def get(name: str) -> StageDef:
    """The stage called ``name`` (its module is imported on first use)."""
    if name in _OVERRIDES:
        return _OVERRIDES[name]
    if name not in MODULES:
        raise KeyError(f"unknown stage {name!r}")
    stage = importlib.import_module(MODULES[name]).STAGE
    if not isinstance(stage, StageDef) or stage.name != name:
        raise TypeError(f"{MODULES[name]}.STAGE does not declare stage {name!r}")
    return stage


def all_stages() -> list[StageDef]:
    """Every stage in pipeline order."""
    return [get(n) for n in ORDER]
