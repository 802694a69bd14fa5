"""The generate benchmark's timing proxy and phase breakdown, without Ray."""

from __future__ import annotations

import pickle

import pytest

from rluf_ray.bench.stage_timing import TimedEngineFactory, read_events, stage_phases
from rluf_ray.engines.base import Completion, SamplingSpec


class _Engine:
    name = "fake"

    def __init__(self) -> None:
        self.specs: list[SamplingSpec] = []
        self.closed = False

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts, spec, seed=None):
        self.specs.append(spec)
        return [Completion(texts=[p] * spec.n) for p in prompts]

    def close(self) -> None:
        self.closed = True


def test_timed_engine_records_build_and_calls_and_fixes_the_sample_length(tmp_path) -> None:
    events = tmp_path / "events.jsonl"
    inner = _Engine()
    factory = TimedEngineFactory(lambda: inner, str(events))
    engine = factory()
    spec = SamplingSpec(n=3, temperature=0.5, max_new_tokens=7)
    out = engine.generate(["a b", "c"], spec, seed=1)
    assert [len(c.texts) for c in out] == [3, 3]
    assert inner.specs[0].min_new_tokens == 7 and inner.specs[0].max_new_tokens == 7
    assert engine.count_tokens("a b c") == 3 and engine.name == "fake"
    engine.close()
    assert inner.closed
    kinds = [(e["kind"], e.get("samples")) for e in read_events(events)]
    assert kinds == [("build", None), ("generate", 6)]


def test_the_factory_pickles_with_its_inner_factory(tmp_path) -> None:
    from rluf_ray.engines.pool import EngineFactory

    f = TimedEngineFactory(EngineFactory("hf", "/models/x"), str(tmp_path / "e.jsonl"))
    assert pickle.loads(pickle.dumps(f)) == f


def test_missing_event_file_reads_as_no_events(tmp_path) -> None:
    assert read_events(tmp_path / "none.jsonl") == []


def test_phases_split_the_wall_time() -> None:
    events = [
        {"kind": "build", "pid": 1, "start": 12.0, "end": 15.0},
        {"kind": "build", "pid": 2, "start": 11.0, "end": 16.0},
        {"kind": "generate", "pid": 1, "start": 15.0, "end": 18.0, "samples": 10},
        {"kind": "generate", "pid": 1, "start": 19.0, "end": 20.0, "samples": 10},
        {"kind": "generate", "pid": 2, "start": 16.0, "end": 20.0, "samples": 10},
    ]
    ph = stage_phases(events, t_start=10.0, t_end=23.0)
    assert ph["wall_s"] == 13.0
    assert ph["before_engines_s"] == 1.0  # the first build began at 11
    assert ph["engine_start_s"] == 5.0  # the slowest build
    assert ph["generate_busy_s"] == pytest.approx((3 + 1 + 4) / 2)
    assert ph["idle_between_calls_s"] == pytest.approx((1 + 0) / 2)  # actor 1 waited 18 -> 19
    assert ph["after_last_call_s"] == 3.0
    assert (ph["actors"], ph["engine_calls"], ph["samples"]) == (2, 3, 30)


def test_phases_need_a_build_and_a_call() -> None:
    with pytest.raises(ValueError, match="no engine build or engine call"):
        stage_phases([{"kind": "build", "pid": 1, "start": 0.0, "end": 1.0}], 0.0, 2.0)
