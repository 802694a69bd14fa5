"""The generate stage's pure parts, without starting Ray: plan, the engine pool's UDF with an injected
engine, the part writer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rluf_ray.config import ConfigError, load, plan_data
from rluf_ray.data import splits
from rluf_ray.engines import pool as engine_pool
from rluf_ray.engines.base import Completion, SamplingSpec
from rluf_ray.engines.hf import HfOptions
from rluf_ray.engines.vllm import VllmOptions
from rluf_ray.errors import RlufError
from rluf_ray.schema import GENERATION_SCHEMA
from rluf_ray.stages import generate, infer
from rluf_ray.store import parts as sample_parts
from rluf_ray.store.artifacts import ArtifactStore


def test_plan_maps_config_to_map_batches_kwargs() -> None:
    import ray.data

    cfg = load(
        overrides=[
            "resources.engine_actors=3",
            "resources.cpus_per_actor=2",
            "generation.prompts_per_batch=5",
        ]
    )
    kw = engine_pool.map_kwargs(generate.plan(cfg).samples.pool)
    assert isinstance(kw["compute"], ray.data.ActorPoolStrategy)
    assert kw["compute"].min_size == kw["compute"].max_size == 3
    assert kw["batch_size"] == 5 and kw["num_cpus"] == 2
    assert "num_gpus" not in kw
    assert set(kw) == {"compute", "batch_size", "num_cpus"}
    gpu = load("rluf_ray/configs/llama2_7b_tldr.yaml")
    kw = engine_pool.map_kwargs(generate.plan(gpu).samples.pool)
    assert kw["num_gpus"] == 1 and kw["compute"].max_size == 8 and kw["batch_size"] == 16


def test_plan_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="generation.sampling_num"):
        load(overrides=["generation.sampling_num=0"])
    cfg = load(
        overrides=[
            "generation.engine=vllm",
            "generation.tensor_parallel_size=4",
            "resources.gpus_per_actor=2",
        ]
    )
    with pytest.raises(RlufError, match="tensor_parallel_size=4"):
        generate.plan(cfg)


def test_sampling_spec_and_engine_options_from_config() -> None:
    cfg = load(
        overrides=["generation.sampling_num=7", "generation.max_new_tokens=9", "resources.cpus_per_actor=2"]
    )
    spec = SamplingSpec(n=7, temperature=0.85, top_p=1.0, max_new_tokens=9)
    assert SamplingSpec.from_config(cfg.generation) == spec
    assert generate.plan(cfg).samples.pool.sampling == spec
    assert generate.plan(cfg).samples.pool.engine_options == HfOptions(
        dtype="float32", threads=2, max_context=512
    )
    vllm = load(overrides=["generation.engine=vllm", "generation.seed=7", "model.dtype=bfloat16"])
    assert generate.plan(vllm).samples.pool.engine_options == VllmOptions(
        dtype="bfloat16", max_context=512, gpu_memory_utilization=0.9, enable_prefix_caching=True,
        tensor_parallel_size=1, seed=7,
    )  # fmt: skip


def test_batch_seed_and_part_name_are_stable() -> None:
    assert engine_pool.batch_seed(42, ["a", "b"]) == engine_pool.batch_seed(42, ["a", "b"])
    assert engine_pool.batch_seed(42, ["a", "b"]) != engine_pool.batch_seed(43, ["a", "b"])
    assert sample_parts.part_name("test", ["a", "b"]) == sample_parts.part_name("test", ["a", "b"])
    assert sample_parts.part_name("test", ["a", "b"]).startswith("test/part-")
    assert sample_parts.part_name("test", ["a", "b"]) != sample_parts.part_name("test", ["a", "c"])


class ScriptedEngine:
    """A stand-in engine with scripted answers: one word = one token."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts, spec, seed=None):
        self.calls.append((list(prompts), spec.n))
        script = ["The answer.", "an answer", "Other!", "the answer"]
        return [Completion([script[i % 4] for i in range(spec.n)], [-1.0 - (i % 4) for i in range(spec.n)])
                for _ in prompts]  # fmt: skip


def test_sample_udf_builds_generation_rows() -> None:
    eng = ScriptedEngine()
    udf = engine_pool.SampleUDF(lambda: eng, SamplingSpec(n=6, temperature=0.35), "Q: {post}\nA:", 12, 42)
    batch = {
        "prompt_id": ["p1", "p2"],
        "post": ["short post", " ".join(f"w{i}" for i in range(50))],
        "reference": ["answer", "x"],
        "split": ["calibration", "test"],
    }
    out = udf(batch)
    assert len(eng.calls) == 1 and eng.calls[0][1] == 6  # one call for the whole batch
    assert set(out) == set(GENERATION_SCHEMA.names)
    assert out["prompt_id"] == ["p1", "p2"] and out["split"] == ["calibration", "test"]
    # samples i % 4 = 0,1,2,3,0,1: "answer" at i = 0,1,3,4,5 (log-probs -1,-2,-4,-1,-2), "other" at i = 2 (-3)
    assert out["answers"][0] == ["answer", "other"] and out["counts"][0] == [5, 1]
    assert out["texts"][0] == ["The answer.", "Other!"]
    assert out["mean_logprobs"][0] == pytest.approx([-2.0, -3.0])
    assert out["num_samples"] == [6, 6]
    assert out["truncated"] == [False, True]
    assert out["first_sampled"] == [0, 0]  # sample 0 ("The answer.") is also the most frequent
    assert out["prompt"][0] == "Q: short post\nA:"
    assert out["prompt"][1].endswith("\nA:") and len(out["prompt"][1].split()) <= 12


class RareFirstEngine(ScriptedEngine):
    """Sample 0 is an answer sampled once; the most frequent answer comes later."""

    def generate(self, prompts, spec, seed=None):
        script = ["Other!", "the answer", "The answer.", "an answer"]
        return [Completion([script[i % 4] for i in range(spec.n)]) for _ in prompts]


def test_sample_udf_records_the_first_sampled_answer(tmp_path: Path) -> None:
    udf = engine_pool.SampleUDF(RareFirstEngine, SamplingSpec(n=4, temperature=0.35), "{post}", 50, 1)
    out = udf({"prompt_id": ["a"], "post": ["x"], "reference": ["r"], "split": ["calibration"]})
    assert out["answers"] == [["answer", "other"]] and out["counts"] == [[3, 1]]
    assert out["first_sampled"] == [1]  # "Other!" was sampled first
    store = ArtifactStore(tmp_path)
    summary = sample_parts.write_part(out, store, "generation")
    table = pq.read_table(tmp_path / "generation" / summary["file"][0])
    assert table.schema.field("first_sampled").type == pa.int32()
    assert table.column("first_sampled").to_pylist() == [1]


def test_write_part_one_atomic_file_per_split(tmp_path: Path) -> None:
    eng = ScriptedEngine()
    udf = engine_pool.SampleUDF(lambda: eng, SamplingSpec(n=4, temperature=0.35), "{post}", 50, 1)
    rows = udf({"prompt_id": ["a", "b", "c"], "post": ["x", "y", "z"], "reference": ["r"] * 3,
                "split": ["calibration", "test", "calibration"]})  # fmt: skip
    store = ArtifactStore(tmp_path)
    summary = sample_parts.write_part(rows, store, "generation")
    assert summary["split"] == ["calibration", "test"] and summary["prompts"] == [2, 1]
    assert summary["samples"] == [8, 4]
    table = pq.read_table(tmp_path / "generation" / summary["file"][0])
    assert table.schema.equals(GENERATION_SCHEMA)
    assert table.column("prompt_id").to_pylist() == ["a", "c"]
    assert store.part_values("generation", "calibration") == {"a", "c"}
    assert not [p for p in (tmp_path / "generation").rglob("*") if ".tmp-" in p.name]
    stats, dups = generate.scan_split(store, "generation", "calibration")
    assert stats.prompts == 2 and dups == 0


def test_demo_rows_skip_finished_ids() -> None:
    cols = splits.demo_rows({"start": [0, 4], "stop": [2, 5]}, 1234, "calibration", frozenset())
    assert cols["prompt_id"] == [
        "demo-calibration-000000",
        "demo-calibration-000001",
        "demo-calibration-000004",
    ]
    assert cols["split"] == ["calibration"] * 3
    cols = splits.demo_rows(
        {"start": [0], "stop": [3]}, 1234, "calibration", frozenset({"demo-calibration-000001"})
    )
    assert cols["prompt_id"] == ["demo-calibration-000000", "demo-calibration-000002"]


def _changes(plan_fn, base_overrides: list[str], override: str) -> bool:
    return plan_fn(load(overrides=base_overrides)) != plan_fn(load(overrides=[*base_overrides, override]))


def test_plans_are_plain_data() -> None:
    cfg = load()
    for plan, pool in (
        (generate.plan(cfg), generate.plan(cfg).samples.pool),
        (infer.plan(cfg), infer.plan(cfg).pool),
    ):
        assert isinstance(pool, engine_pool.PoolPlan)
        plain = plan_data(plan)  # raises on anything but plain data (a Ray object, a function)
        assert json.loads(json.dumps(plain)) == plain
    pool = generate.plan(cfg).samples.pool
    assert dataclasses.asdict(pool)["sampling"] == {"n": 60, "temperature": 0.85, "top_p": 1.0,
                                                   "max_new_tokens": 48, "min_new_tokens": 0}  # fmt: skip
    assert pool.engine == "hf" and pool.prompt_budget == 512 - 48 and pool.seed == 42
    assert pool.sampling == SamplingSpec.from_config(cfg.generation)
    ipool = infer.plan(cfg).pool
    assert ipool.sampling == SamplingSpec(n=1, temperature=0.0, top_p=1.0, max_new_tokens=48)
    assert ipool.sampling == SamplingSpec.from_config(cfg.generation, cfg.inference)


@pytest.mark.parametrize(
    "override",
    [
        "generation.engine=vllm",
        "generation.sampling_num=7",
        "generation.temperature=0.9",
        "generation.top_p=0.5",
        "generation.max_new_tokens=16",
        "generation.seed=7",
        "generation.prompts_per_batch=9",
        "generation.rows_per_file=3",
        "generation.score_calibration=false",
        "model.max_context=256",
        "model.dtype=bfloat16",
        "data.prompt_template=Summarize {post} now",
        "data.calibration_size=5",
        "judge.offline_noise=0.1",  # the default judge is offline: its model settings are unused
        "resources.engine_actors=3",
    ],
)
def test_generate_plan_changes_with_every_key_its_run_uses(override: str) -> None:
    assert _changes(generate.plan, [], override)


@pytest.mark.parametrize(
    "override",
    [
        "inference.temperature=0.7",
        "inference.max_new_tokens=16",
        "inference.test_size=3",
        "generation.top_p=0.5",
        "generation.seed=7",
        "generation.engine=vllm",
        "model.max_context=256",
        "data.prompt_template=Summarize {post} now",
    ],
)
def test_infer_plan_changes_with_every_key_its_run_uses(override: str) -> None:
    assert _changes(infer.plan, [], override)
    assert not _changes(infer.plan, [], "generation.temperature=0.9")  # generate's sampling only


def test_infer_plan_validates_like_generate() -> None:
    cfg = load(
        overrides=[
            "generation.engine=vllm",
            "generation.tensor_parallel_size=4",
            "resources.gpus_per_actor=2",
        ]
    )
    with pytest.raises(RlufError, match="tensor_parallel_size=4"):
        infer.plan(cfg)
    with pytest.raises(RlufError, match="no room for a prompt"):
        infer.plan(load(overrides=["model.max_context=32", "inference.max_new_tokens=30"]))
