"""The engine pool component: typed plan -> map_batches kwargs, the UDF's engine teardown, layering."""

from __future__ import annotations

import ast
import dataclasses
import gc
import json
import pickle
import sys
import time
from pathlib import Path

import pytest
import ray.cloudpickle

from rluf_ray.config import RlufConfig, load, plan_data, plan_key_data
from rluf_ray.engines import pool as engine_pool
from rluf_ray.engines.base import Completion, SamplingSpec
from rluf_ray.engines.hf import HfOptions
from rluf_ray.runtime.faults import FaultSpec

# The fake engines below travel to Ray workers by value (this test module is not importable there).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT = Path(__file__).resolve().parents[2]


class ClosingEngine:
    """A stand-in engine that counts close() calls (and can fail on close)."""

    name = "closing"

    def __init__(self, fail_close: bool = False, marker: str | None = None) -> None:
        self.closed = 0
        self.fail_close = fail_close
        self.marker = marker

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts, spec, seed=None):
        return [Completion(["an answer"] * spec.n, [-1.0] * spec.n) for _ in prompts]

    def close(self) -> None:
        self.closed += 1
        if self.marker:
            with open(self.marker, "a") as f:
                f.write("closed\n")
        if self.fail_close:
            raise RuntimeError("close failed")


def _udf(engine: object) -> engine_pool.SampleUDF:
    return engine_pool.SampleUDF(lambda: engine, SamplingSpec(n=2, temperature=0.3), "{post}", 50, 1)


def test_udf_closes_its_engine_when_torn_down() -> None:
    eng = ClosingEngine()
    udf = _udf(eng)
    out = udf({"prompt_id": ["p"], "post": ["x"], "reference": ["r"], "split": ["test"]})
    assert out["num_samples"] == [2]
    assert eng.closed == 0
    del udf
    gc.collect()
    assert eng.closed == 1


def test_udf_close_is_idempotent_and_never_raises() -> None:
    eng = ClosingEngine()
    udf = _udf(eng)
    udf.close()
    udf.close()
    del udf
    gc.collect()
    assert eng.closed == 1  # explicit close, then __del__: closed once
    failing = ClosingEngine(fail_close=True)
    udf = _udf(failing)
    udf.close()  # logged, not raised
    del udf
    gc.collect()
    assert failing.closed == 1
    with pytest.raises(RuntimeError, match="after close"):
        closed = _udf(ClosingEngine())
        closed.close()
        closed({"prompt_id": ["p"], "post": ["x"], "reference": ["r"], "split": ["test"]})


def test_udf_teardown_survives_engines_without_close_and_failed_construction() -> None:
    class NoClose:
        name = "plain"

    udf = _udf(NoClose())
    del udf
    gc.collect()

    def broken_factory():
        raise RuntimeError("engine failed to load")

    with pytest.raises(RuntimeError, match="failed to load"):
        engine_pool.SampleUDF(broken_factory, SamplingSpec(n=1, temperature=0.0), "{post}", 50, 1)
    gc.collect()  # the half-built UDF's __del__ runs without an engine and does not raise


def test_map_kwargs_from_a_typed_plan() -> None:
    import ray.data

    cfg = load(
        overrides=[
            "resources.engine_actors=3",
            "resources.gpus_per_actor=1",
            "generation.prompts_per_batch=5",
        ]
    )
    pool = _plan(cfg, SamplingSpec(n=4, temperature=0.3), prompt_budget=100)
    plain = plan_data(pool)
    assert json.loads(json.dumps(plain)) == plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        pool.actors = 4  # type: ignore[misc]
    kw = engine_pool.map_kwargs(pool)
    assert isinstance(kw["compute"], ray.data.ActorPoolStrategy) and kw["compute"].max_size == 3
    assert kw["batch_size"] == 5 and kw["num_gpus"] == 1 and kw["num_cpus"] == 1


def test_apply_maps_the_udf_with_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeDataset:
        def map_batches(self, fn, **kwargs):
            self.fn, self.kwargs = fn, kwargs
            return "mapped"

    cfg = load()
    pool = _plan(cfg, SamplingSpec(n=3, temperature=0.2, max_new_tokens=7), prompt_budget=99)
    factory = engine_pool.default_engine_factory(pool, "/models/x")
    ds = FakeDataset()
    assert engine_pool.apply(ds, pool, factory) == "mapped"
    assert ds.fn is engine_pool.SampleUDF
    ctor = ds.kwargs.pop("fn_constructor_kwargs")
    assert ctor == {"engine_factory": factory, "spec": SamplingSpec(n=3, temperature=0.2, max_new_tokens=7),
                    "template": cfg.data.prompt_template, "prompt_budget": 99, "seed": 42,
                    "fault": None}  # fmt: skip
    assert set(ds.kwargs) == {"compute", "batch_size", "num_cpus"}
    monkeypatch.setenv("RLUF_FAULT_ENGINE_BATCH", "2:exit:/tmp/m")  # a test's fault point reaches the actors
    engine_pool.apply(ds, pool, factory)
    assert ds.kwargs["fn_constructor_kwargs"]["fault"] == FaultSpec(2, "exit", "/tmp/m")


def test_engine_factory_is_plain_and_picklable() -> None:
    pool = _plan(load(), SamplingSpec(n=1, temperature=0.0), prompt_budget=50)
    factory = engine_pool.default_engine_factory(pool, "/models/x")
    assert pickle.loads(pickle.dumps(factory)) == factory
    assert factory.name == "hf" and factory.options == pool.engine_options
    assert factory.options == HfOptions(dtype="float32", threads=1, max_context=512)


def test_plan_holds_the_old_plain_values() -> None:
    """The plan's fields, as ``asdict`` gives them, written out for the embedded default (what the dict
    plan held, the engine options now the hf engine's own)."""
    pool = _plan(load(), SamplingSpec(n=3, temperature=0.2, max_new_tokens=7), prompt_budget=99)
    assert plan_data(pool) == {
        "actors": 2,
        "batch_size": 4,
        "num_cpus": 1.0,
        "num_gpus": 0.0,
        "resources": [],
        "engine": "hf",
        "engine_options": {"dtype": "float32", "device": None, "threads": 1, "max_context": 512,
                           "share_prefill": True},
        "sampling": {"n": 3, "temperature": 0.2, "top_p": 1.0, "max_new_tokens": 7, "min_new_tokens": 0},
        "prompt_budget": 99,
        "template": load().data.prompt_template,
        "seed": 42,
    }  # fmt: skip
    # the stage key leaves out where the work runs (how many actors, their custom resources); an actor's
    # CPUs are torch's thread count, so they count
    key = plan_key_data(pool)
    assert not {"actors", "resources"} & set(key) and key["engine_options"]["threads"] == 1
    assert {
        "batch_size",
        "num_gpus",
        "num_cpus",
        "engine",
        "sampling",
        "prompt_budget",
        "template",
        "seed",
    } <= set(key)


def _plan(cfg: RlufConfig, spec: SamplingSpec, prompt_budget: int) -> engine_pool.PoolPlan:
    return engine_pool.plan(
        cfg.generation, cfg.resources, cfg.model, cfg.data.prompt_template, spec, prompt_budget
    )


def _imports(path: Path) -> set[str]:
    mods: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
            mods.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    return mods


def test_layering_of_the_engine_pool_and_its_users() -> None:
    engine_modules = sorted((ROOT / "rluf_ray" / "engines").glob("*.py"))
    assert engine_modules
    for path in engine_modules:
        assert not any(m.startswith("rluf_ray.stages") for m in _imports(path)), (
            f"{path.name} imports stages/"
        )
    # the generate benchmark times the whole stage through the pipeline: it reads the stage registry only
    bench_stages = {
        m for m in _imports(ROOT / "rluf_ray/bench/generate.py") if m.startswith("rluf_ray.stages")
    }
    assert bench_stages == {"rluf_ray.stages.registry", "rluf_ray.stages.registry.get"}
    stages_in_infer = {
        m for m in _imports(ROOT / "rluf_ray/stages/infer.py") if m.startswith("rluf_ray.stages")
    }
    assert stages_in_infer <= {"rluf_ray.stages.registry"} | {
        f"rluf_ray.stages.registry.{n}" for n in ("StageContext", "StageDef", "StageResult")
    }
    generate_imports = _imports(ROOT / "rluf_ray/stages/generate.py")
    assert not any(m.startswith(("pyarrow.fs", "pyarrow.parquet")) for m in generate_imports)
    assert "rluf_ray.stages.infer" not in generate_imports


@pytest.mark.ray
def test_ray_data_tears_the_udf_down_and_closes_its_engine(ray_idle, tmp_path: Path) -> None:
    """Ray Data 2.60 drops its UDF in the map worker's ``__ray_shutdown__`` when the pool's actors exit."""
    import ray.data

    marker = tmp_path / "closed.txt"

    def factory():
        return ClosingEngine(marker=str(marker))

    pool = _plan(load(overrides=["resources.engine_actors=1"]), SamplingSpec(n=2, temperature=0.3), 50)
    rows = [{"prompt_id": f"p{i}", "post": "x y", "reference": "r", "split": "test"} for i in range(3)]
    out = engine_pool.apply(ray.data.from_items(rows), pool, factory).take_all()
    assert sorted(r["prompt_id"] for r in out) == ["p0", "p1", "p2"]
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.5)
    assert marker.read_text() == "closed\n"
