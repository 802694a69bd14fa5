"""The engine pool: sampling engines on a Ray Data actor pool, shared by ``generate`` and ``infer``.

* :func:`plan` turns the config sections it reads into a :class:`PoolPlan`, a typed plan of plain
  fields (pool size, batch size, resources, engine name and its typed options, sampling spec, prompt
  budget, template, seed; the placement ones operational), and validates it;
* :func:`map_kwargs` builds the Ray objects (``ActorPoolStrategy``) from that plan at run time;
* :func:`apply` adds the engine step to a Ray Data dataset:
  ``map_batches(SampleUDF, fn_constructor_kwargs=..., **map_kwargs(plan))``.

:class:`SampleUDF` builds its engine inside the actor (through a picklable :class:`EngineFactory`),
samples N per prompt in one engine call per batch and closes the engine when it is torn down: Ray Data
2.60 deletes its reference to the UDF in the map worker's ``__ray_shutdown__`` so that ``UDF.__del__``
runs when the actor exits gracefully (ray-project/ray#49929, #61700); nothing runs on ``ray.kill``
or a crash, where the process exit frees the engine anyway.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rluf_ray.config import GenerationConfig, ModelConfig, ResourcesConfig, operational, plan_type
from rluf_ray.conformal.answers import prompt_answers
from rluf_ray.data import splits
from rluf_ray.engines import registry
from rluf_ray.engines.base import Engine, EngineOptions, SamplingSpec
from rluf_ray.runtime.faults import FaultSpec, fault_spec
from rluf_ray.schema import GENERATION_SCHEMA

log = logging.getLogger("rluf.engine_pool")


# ---- pure planning ------------------------------------------------------------------------------
@plan_type
class PoolPlan:
    """The engine pool of a run (no Ray object; see :func:`map_kwargs`): plain data.

    ``batch_size`` prompts per engine call (each batch's seed derives from ``seed`` and its prompt ids,
    so it counts); the engine ``engine`` with its typed ``engine_options``; ``sampling`` per prompt;
    ``prompt_budget`` tokens per prompt; ``template`` the prompt template; ``num_gpus`` GPUs and
    ``num_cpus`` CPUs per actor (CPU and GPU numerics differ, and torch's CPU kernels differ with the
    thread count). Operational: the number of ``actors`` and their custom ``resources`` (where the work
    runs, not what it computes).
    """

    batch_size: int
    num_gpus: float
    num_cpus: float  # Ray sets an actor's OMP_NUM_THREADS to its CPUs: torch's thread count counts
    engine: str
    engine_options: EngineOptions
    sampling: SamplingSpec
    prompt_budget: int
    template: str
    seed: int
    actors: int = operational()
    resources: tuple[tuple[str, float], ...] = operational()  # custom Ray resources, sorted by name


def plan(
    generation: GenerationConfig,
    resources: ResourcesConfig,
    model: ModelConfig,
    template: str,
    spec: SamplingSpec,
    prompt_budget: int,
) -> PoolPlan:
    """The engine pool of a run.

    Args:
        generation: the ``generation`` section (engine, batch size, seed, the engine's options).
        resources: the ``resources`` section (the actors and what each holds).
        model: the ``model`` section (the engine's dtype and context).
        template: the prompt template (``data.prompt_template``).
        spec: the caller's sampling (``generate`` samples N, ``infer`` one).
        prompt_budget: the caller's token budget of a prompt.

    Returns:
        The pool's plan, with the options the engine's registered function builds from the sections.

    Raises:
        RlufError: settings that cannot run (an unknown engine, or options the engine refuses, e.g.
            vllm's tensor_parallel_size > GPUs per actor).
    """
    g, r = generation, resources
    return PoolPlan(
        batch_size=g.prompts_per_batch,
        num_gpus=r.gpus_per_actor,
        engine=g.engine,
        engine_options=registry.options_for(g.engine, g, model, r),
        sampling=spec,
        prompt_budget=int(prompt_budget),
        template=template,
        seed=g.seed,
        actors=r.engine_actors,
        num_cpus=r.cpus_per_actor,
        resources=tuple(sorted(r.custom_resources.items())),
    )


def map_kwargs(pool: PoolPlan) -> dict[str, Any]:
    """``map_batches`` keyword arguments of the engine step, built from a :func:`plan`.

    Actors that die are restarted and their batches retried: Ray Data's actor pool defaults to
    ``max_restarts=-1`` and ``max_task_retries=-1`` (passing them again is deprecated in Ray 2.60).

    Args:
        pool: the pool's plan.

    Returns:
        ``compute`` (an ``ActorPoolStrategy`` of ``pool.actors``), ``batch_size``, ``num_cpus``, and
        ``num_gpus`` / ``resources`` where the plan has any.
    """
    import ray.data

    kwargs: dict[str, Any] = {
        "compute": ray.data.ActorPoolStrategy(size=pool.actors),
        "batch_size": pool.batch_size,
        "num_cpus": pool.num_cpus,
    }
    if pool.num_gpus:
        kwargs["num_gpus"] = pool.num_gpus
    if pool.resources:
        kwargs["resources"] = dict(pool.resources)  # custom resources pin the actors to some nodes
    return kwargs


def io_actor_kwargs(pool: int = 1) -> dict[str, Any]:
    """``map_batches`` kwargs of the light steps around the pool (building prompts, writing parts).

    They take no CPU, so they never wait behind engine actors that hold every CPU, and they run in a
    small pool of long-lived actors: as zero-CPU *tasks* they got a fresh worker process for nearly
    every batch (18 worker processes in one 40 s run on 2 cores), each importing Ray Data, pyarrow and
    this package beside the engines.

    Args:
        pool: The actor pool's size (how many such calls run at once).

    Returns:
        ``num_cpus`` (0) and ``compute`` (an ``ActorPoolStrategy`` of ``pool`` actors); the step must be
        a callable class.
    """
    import ray.data

    return {"num_cpus": 0, "compute": ray.data.ActorPoolStrategy(size=pool)}


def batch_seed(seed: int, prompt_ids: Iterable[str]) -> int:
    """A sampling seed for one batch, stable across reruns and actors (from the ids it holds).

    Args:
        seed: The run's base sampling seed.
        prompt_ids: The prompt ids of the batch, in batch order.

    Returns:
        A 32-bit seed (0 to 2**32 - 1) hashed from ``seed`` and the ids.
    """
    h = hashlib.sha256(f"{seed}:{','.join(prompt_ids)}".encode()).digest()
    return int.from_bytes(h[:4], "little")


# ---- the engine inside an actor -------------------------------------------------------------------
@dataclass(frozen=True)
class EngineFactory:
    """Builds the configured engine inside an actor (plain fields: pickles without cloudpickle).

    ``model_path`` is a location: a path, a hub id, or a store URI copied to the actor's node cache."""

    name: str
    model_path: str
    options: EngineOptions | None = None  # None: the engine's default options

    def __call__(self) -> Engine:
        from rluf_ray.store.model_cache import local_model  # a store URI is copied to this node's cache

        return registry.make_engine(self.name, local_model(self.model_path), self.options)


def default_engine_factory(pool: PoolPlan, model_path: str) -> EngineFactory:
    """The factory of a :func:`plan`'s engine for one model.

    Args:
        pool: the pool's plan (its engine and engine options).
        model_path: the model: a path, a hub id or a store URI.

    Returns:
        A picklable factory that builds the engine inside an actor.
    """
    return EngineFactory(pool.engine, model_path, pool.engine_options)


class SampleUDF:
    """Engine actor: fit prompts to the context, sample N per prompt in one call, count answers.

    Closes its engine on teardown (``close()``, also called from ``__del__``; idempotent, never raises).
    """

    def __init__(
        self,
        engine_factory: Any,
        spec: SamplingSpec,
        template: str,
        prompt_budget: int,
        seed: int,
        fault: FaultSpec | None = None,
    ):
        self.engine: Engine | None = None
        self.engine = engine_factory()
        self.spec = spec
        self.template = template
        self.budget = prompt_budget
        self.seed = seed
        self.fault = fault  # tests only: rluf_ray.runtime.faults
        self.batches = 0

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        engine = self.engine
        if engine is None:
            raise RuntimeError("SampleUDF called after close()")
        self.batches += 1
        if self.fault is not None:
            self.fault.check(self.batches)
        rows = [
            {"prompt_id": str(p), "post": str(q), "reference": str(r), "split": str(s)}
            for p, q, r, s in zip(
                batch["prompt_id"], batch["post"], batch["reference"], batch["split"], strict=True
            )
        ]
        fitted = list(splits.fit_rows(rows, engine.count_tokens, self.budget, self.template))
        ids = [r["prompt_id"] for r in rows]
        completions = engine.generate(
            [r["prompt"] for r in fitted], self.spec, seed=batch_seed(self.seed, ids)
        )
        out: dict[str, list[Any]] = {name: [] for name in GENERATION_SCHEMA.names}
        for row, comp in zip(fitted, completions, strict=True):
            table = prompt_answers(comp.texts, comp.mean_logprobs or None)
            out["prompt_id"].append(row["prompt_id"])
            out["split"].append(row["split"])
            out["prompt"].append(row["prompt"])
            out["reference"].append(row["reference"])
            out["answers"].append(table.answers)
            out["counts"].append(table.counts)
            out["texts"].append(table.texts)
            out["mean_logprobs"].append(table.mean_logprobs)
            out["num_samples"].append(table.num_samples)
            out["truncated"].append(bool(row["truncated"]))
            out["first_sampled"].append(table.first_sampled)
        return out

    def close(self) -> None:
        """Close the engine once (later calls do nothing); a failing close is logged, never raised."""
        engine, self.engine = getattr(self, "engine", None), None
        close = getattr(engine, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception as exc:  # teardown must not fail the actor's exit
            log.warning("closing the %s engine failed: %s", getattr(engine, "name", "?"), exc)

    def __del__(self) -> None:
        try:
            self.close()
        except BaseException:  # a destructor never raises (interpreter shutdown included)
            pass


def apply(ds: Any, pool: PoolPlan, engine_factory: Any) -> Any:
    """``ds`` through the engine pool: one :class:`SampleUDF` per actor, built by Ray Data.

    Args:
        ds: a Ray Data dataset with columns prompt_id, post, reference, split.
        pool: the pool's plan.
        engine_factory: a picklable callable that builds the engine inside an actor.

    Returns:
        The dataset of GENERATION_SCHEMA rows (lazy, as Ray Data's ``map_batches``).
    """
    return ds.map_batches(
        SampleUDF,
        fn_constructor_kwargs={
            "engine_factory": engine_factory,
            "spec": pool.sampling,
            "template": pool.template,
            "prompt_budget": pool.prompt_budget,
            "seed": pool.seed,
            "fault": fault_spec("engine_batch"),  # None unless a fault-tolerance test set one
        },
        **map_kwargs(pool),
    )
