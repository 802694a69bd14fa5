"""The engine registry: names, the one-line unknown-name error, typed options from the config, and a new
engine added by its module and one registration (``tests/support/echo_engine.py``)."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from rluf_ray.config import ConfigError, GenerationConfig, load
from rluf_ray.engines import pool as engine_pool
from rluf_ray.engines import registry
from rluf_ray.engines.base import EngineOptions, SamplingSpec
from rluf_ray.engines.hf import HFEngine, HfOptions
from rluf_ray.engines.vllm import VLLMEngine, VllmOptions
from rluf_ray.errors import RlufError
from tests.support import echo_engine
from tests.support.echo_engine import EchoEngine, EchoOptions

ROOT = Path(__file__).resolve().parents[2]


def test_registry_lists_hf_and_vllm() -> None:
    assert registry.names() == ("hf", "vllm")
    hf, vllm = registry.get("hf"), registry.get("vllm")
    assert (hf.name, hf.engine, hf.options) == ("hf", HFEngine, HfOptions)
    assert (vllm.name, vllm.engine, vllm.options) == ("vllm", VLLMEngine, VllmOptions)


def test_every_engine_options_class_is_frozen_with_defaults() -> None:
    for name in registry.names():
        options = registry.get(name).options
        assert issubclass(options, EngineOptions) and dataclasses.is_dataclass(options)
        default = options()  # every field has a default (make_engine(name, path) uses them)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(default, dataclasses.fields(options)[0].name, None)


def test_config_engine_names_are_the_registry_names() -> None:
    annotation = GenerationConfig.model_fields["engine"].annotation
    assert typing.get_origin(annotation) is typing.Literal
    assert typing.get_args(annotation) == tuple(registry.BUILTIN) == ("hf", "vllm")


def test_unknown_engine_is_one_line_listing_the_valid_names(tmp_path: Path) -> None:
    with pytest.raises(registry.UnknownEngineError) as info:
        registry.make_engine("tgi", str(tmp_path))
    assert str(info.value) == "unknown engine 'tgi' (valid: hf, vllm)"
    assert isinstance(info.value, RlufError)
    with pytest.raises(registry.UnknownEngineError, match=r"^unknown engine 'tgi' \(valid: hf, vllm\)$"):
        registry.options_for("tgi", *_sections(load()))
    with pytest.raises(ConfigError) as cfg_info:
        load(overrides=["generation.engine=tgi"])
    assert str(cfg_info.value) == "generation.engine: unknown engine 'tgi' (valid: hf, vllm)"
    assert "\n" not in str(cfg_info.value)


def test_options_for_the_wrong_engine_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RlufError, match="engine 'hf' takes HfOptions, got VllmOptions"):
        registry.make_engine("hf", str(tmp_path), VllmOptions())


def _sections(cfg):  # the three sections an engine's options are built from
    return cfg.generation, cfg.model, cfg.resources


def test_hf_options_from_the_config() -> None:
    cfg = load(overrides=["resources.cpus_per_actor=2.5", "model.dtype=bfloat16", "model.max_context=256"])
    assert registry.options_for("hf", *_sections(cfg)) == HfOptions(
        dtype="bfloat16", device=None, threads=2, max_context=256, share_prefill=True
    )
    small = load(overrides=["resources.cpus_per_actor=0.5"])
    assert registry.options_for("hf", *_sections(small)).threads == 1  # at least one thread


def test_vllm_options_from_the_config() -> None:
    cfg = load("rluf_ray/configs/llama2_7b_tldr.yaml")
    assert registry.options_for("vllm", *_sections(cfg)) == VllmOptions(
        dtype="bfloat16",
        max_context=1024,
        gpu_memory_utilization=0.9,
        enable_prefix_caching=True,
        tensor_parallel_size=1,
        seed=42,
    )
    tuned = load(
        overrides=[
            "generation.engine=vllm",
            "generation.vllm_gpu_memory_utilization=0.3",
            "generation.vllm_enable_prefix_caching=false",
            "generation.tensor_parallel_size=2",
            "generation.seed=7",
            "resources.gpus_per_actor=2",
        ]
    )
    assert registry.options_for("vllm", *_sections(tuned)) == VllmOptions(
        dtype="float32",
        max_context=512,
        gpu_memory_utilization=0.3,
        enable_prefix_caching=False,
        tensor_parallel_size=2,
        seed=7,
    )
    too_wide = load(overrides=["generation.tensor_parallel_size=4", "resources.gpus_per_actor=2"])
    with pytest.raises(
        RlufError, match=r"tensor_parallel_size=4 needs resources.gpus_per_actor >= 4 \(got 2"
    ):
        registry.options_for("vllm", *_sections(too_wide))
    assert registry.options_for("hf", *_sections(too_wide)) == HfOptions(threads=1, max_context=512)


def _echo_rows(factory) -> dict:
    udf = engine_pool.SampleUDF(factory, SamplingSpec(n=3, temperature=0.5), "{post}", 50, 1)
    return udf({"prompt_id": ["p"], "post": ["one two three"], "reference": ["r"], "split": ["test"]})


def test_a_registered_engine_is_picked_by_make_engine(tmp_path: Path) -> None:
    registry.register(echo_engine.ENGINE)
    try:
        assert registry.names() == ("hf", "vllm", "echo")
        with pytest.raises(RlufError, match="already registered"):
            registry.register(echo_engine.ENGINE)
        eng = registry.make_engine("echo", str(tmp_path), EchoOptions(prefix="> ", max_words=2))
        assert isinstance(eng, EchoEngine) and eng.model_path == str(tmp_path)
        (c,) = eng.generate(["one two three"], SamplingSpec(n=2, temperature=0.5))
        assert c.texts == ["> one two", "> one two"]
        assert registry.make_engine("echo", str(tmp_path)).options == EchoOptions()  # defaults
        cfg = load(overrides=["generation.seed=5", "resources.cpus_per_actor=2"])
        assert registry.options_for("echo", *_sections(cfg)) == EchoOptions(prefix="seed 5: ", max_words=2)
        factory = engine_pool.EngineFactory("echo", str(tmp_path), EchoOptions(max_words=1))
        assert _echo_rows(factory)["texts"] == [["echo: one"]]  # the pool's UDF runs it too
    finally:
        registry.unregister("echo")
    assert registry.names() == ("hf", "vllm")
    with pytest.raises(registry.UnknownEngineError, match=r"\(valid: hf, vllm\)"):
        registry.make_engine("echo", str(tmp_path))
    with pytest.raises(RlufError, match="not added by register"):
        registry.unregister("hf")


def test_a_new_engine_is_its_module_plus_one_builtin_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(registry.BUILTIN, "echo", "tests.support.echo_engine")  # the one line
    monkeypatch.setattr(registry, "_loaded", {})
    assert registry.names() == ("hf", "vllm", "echo")
    assert registry.get("echo") is echo_engine.ENGINE
    assert isinstance(registry.make_engine("echo", str(tmp_path)), EchoEngine)
    monkeypatch.setitem(registry.BUILTIN, "echo2", "tests.support.echo_engine")  # a module of another name
    with pytest.raises(RlufError, match="registers engine 'echo', not 'echo2'"):
        registry.get("echo2")


def _vllm_imports(path: Path) -> list[tuple[int, bool]]:
    """(line, at module level) of every ``import vllm`` / ``from vllm...`` in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        if any(n == "vllm" or n.startswith("vllm.") for n in names):
            found.append((node.lineno, id(node) in top))
    return found


def test_only_the_vllm_engine_imports_vllm_and_only_lazily() -> None:
    importers = {}
    for root in ("rluf_ray", "jobs"):
        for path in sorted((ROOT / root).rglob("*.py")):
            found = _vllm_imports(path)
            if found:
                importers[str(path.relative_to(ROOT))] = found
    # the engine, and the generate benchmark's bare-vLLM baseline (what it compares the stage against)
    assert set(importers) == {"rluf_ray/engines/vllm.py", "rluf_ray/bench/bare_generate.py"}
    for found in importers.values():
        assert not any(top for _, top in found)  # inside functions only
