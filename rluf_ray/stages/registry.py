"""The stage contract (context, result, the ``Stage`` protocol) and the registry of the pipeline's stages.

Each stage module declares itself at its end as ``STAGE = StageDef(...)``: its name, artifact
directory, upstream stages, a pure ``plan(cfg)`` that returns the stage's typed plan (a frozen
dataclass, ``rluf_ray.config.plan_keys``) and ``run(plan, ctx)``, which gets the plan and never the
config, so it cannot use a config value its plan does not hold. A stage's key is the hash of its plan's
non-operational fields (plus the content of external inputs it names, see ``inputs``), so changing a
key re-runs the stages whose plan it changes and, through the upstream manifest hashes, everything
downstream. ``tests/test_stale_keys.py`` checks the operational marks against the config's
operational keys.

Stages import this module (the contract) and never each other; ``pipeline.py`` chains them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from rluf_ray.config import RlufConfig
    from rluf_ray.store.artifacts import ArtifactStore
    from rluf_ray.tracking.runs import PipelineRun

P = TypeVar("P")

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
    """Everything a stage's ``run`` gets besides its plan."""

    name: str
    store: ArtifactStore
    options: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""  # the stage key of this run (names resumable Ray Train runs)
    tracking: PipelineRun | None = None  # run-all's tracked run: Ray Train runs report under it

    @property
    def dir(self) -> str:
        """This stage's artifact directory name in the store."""
        return get(self.name).artifact_dir

    def upstream_dir(self, stage_name: str) -> str:
        """Artifact directory of another stage.

        Args:
            stage_name: The other stage's name.

        Returns:
            That stage's artifact directory name in the store.
        """
        return get(stage_name).artifact_dir


class Stage(Protocol[P]):
    """What the pipeline needs of a stage."""

    name: str
    artifact_dir: str
    upstream: tuple[str, ...]

    def plan(self, cfg: RlufConfig) -> P:
        """Everything the stage takes from the config, typed; pure, starts nothing.

        Args:
            cfg: The config.

        Returns:
            The stage's plan (a frozen dataclass; its non-operational fields are the stage key).
        """
        ...

    def run(self, plan: P, ctx: StageContext) -> StageResult:
        """Do the work from the plan, write artifacts (never the manifest).

        Args:
            plan: The stage's plan (the run never sees the config).
            ctx: The run's context.

        Returns:
            Row counts and metrics for the manifest.
        """
        ...

    def needs(self, plan: P) -> tuple[str, ...]:
        """The upstream stages this plan needs.

        Args:
            plan: The stage's plan.

        Returns:
            A subset of ``upstream``.
        """
        ...

    def inputs(self, plan: P) -> dict[str, str]:
        """Content hashes of external inputs the plan names (files outside the store).

        Args:
            plan: The stage's plan.

        Returns:
            Input name -> content hash (empty: none).
        """
        ...


@dataclass(frozen=True)
class UnitRecord:
    """One unit of a stage that does its work in units (``train``: one per arm and seed), for ``rluf status``.

    ``key`` is what the unit's finished output must record under the current config; ``recorded`` what
    the unit's finished output records (None: not finished); ``started``: a run of this very key began
    and left resumable state behind.
    """

    name: str
    key: dict[str, Any]
    recorded: dict[str, Any] | None
    started: bool = False


@dataclass(frozen=True)
class StageDef(Generic[P]):
    """A stage, as each stage module declares it (``STAGE = StageDef(...)``).

    ``sticky``: config keys whose value, when the config leaves them unset, is taken from the stage's
    last complete run (``rluf train --pairs FILE`` keeps counting as the train stage for what follows).
    ``units_fn``: for a stage that completes unit by unit, each unit's key and what its output records
    (``plan, store, upstream manifest hashes``); read by ``rluf status`` only.
    """

    name: str
    artifact_dir: str
    upstream: tuple[str, ...]
    plan_fn: Callable[[RlufConfig], P]
    run_fn: Callable[[P, StageContext], StageResult]
    needs_fn: Callable[[P], tuple[str, ...]] | None = None
    inputs_fn: Callable[[P], dict[str, str]] | None = None
    sticky: tuple[str, ...] = ()
    units_fn: Callable[[P, ArtifactStore, dict[str, str | None]], list[UnitRecord]] | None = None

    def plan(self, cfg: RlufConfig) -> P:
        """The stage's plan under ``cfg`` (``plan_fn``).

        Args:
            cfg: The config.

        Returns:
            The stage's plan.
        """
        return self.plan_fn(cfg)

    def run(self, plan: P, ctx: StageContext) -> StageResult:
        """Run the stage on its plan (``run_fn``).

        Args:
            plan: The stage's plan.
            ctx: The run's context.

        Returns:
            Row counts and metrics for the manifest.
        """
        return self.run_fn(plan, ctx)

    def needs(self, plan: P) -> tuple[str, ...]:
        """The upstream stages this plan needs (``needs_fn``, else every upstream stage).

        Args:
            plan: The stage's plan.

        Returns:
            A subset of ``upstream``.
        """
        return self.upstream if self.needs_fn is None else self.needs_fn(plan)

    def inputs(self, plan: P) -> dict[str, str]:
        """Content hashes of external inputs the plan names (``inputs_fn``, else none).

        Args:
            plan: The stage's plan.

        Returns:
            Input name -> content hash.
        """
        return {} if self.inputs_fn is None else self.inputs_fn(plan)

    def units(self, plan: P, store: ArtifactStore, upstream: dict[str, str | None]) -> list[UnitRecord]:
        """The stage's units and what their outputs record (``units_fn``, else none: a stage of one piece).

        Args:
            plan: The stage's plan.
            store: The artifact store holding the stage's outputs.
            upstream: The needed upstream stages' manifest hashes now (None where absent).

        Returns:
            One record per configured unit, in the order the stage does them.
        """
        return [] if self.units_fn is None else self.units_fn(plan, store, upstream)


_OVERRIDES: dict[str, StageDef[Any]] = {}  # tests put fake stages here (monkeypatch.setitem)


def get(name: str) -> StageDef[Any]:
    """The stage called ``name`` (its module is imported on first use).

    Args:
        name: The stage's name.

    Returns:
        The stage's definition (a test override, if one is set).

    Raises:
        KeyError: No stage has that name.
        TypeError: The stage's module does not declare that stage as ``STAGE``.
    """
    if name in _OVERRIDES:
        return _OVERRIDES[name]
    if name not in MODULES:
        raise KeyError(f"unknown stage {name!r}")
    stage = importlib.import_module(MODULES[name]).STAGE
    if not isinstance(stage, StageDef) or stage.name != name:
        raise TypeError(f"{MODULES[name]}.STAGE does not declare stage {name!r}")
    return stage


def all_stages() -> list[StageDef[Any]]:
    """Every stage in pipeline order.

    Returns:
        The stage definitions, in ``ORDER``.
    """
    return [get(n) for n in ORDER]
