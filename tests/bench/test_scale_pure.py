"""The scale benchmark's latency engine and efficiency arithmetic, without Ray."""

from __future__ import annotations

import time

import pytest

from rluf_ray.bench.latency_engine import CHARS_PER_TOKEN, LatencyEngine, LatencyEngineFactory, LatencyModel
from rluf_ray.bench.scale import efficiency, plan_runs
from rluf_ray.engines.base import SamplingSpec


def test_batch_time_is_prefill_plus_decode_per_round_of_max_seqs() -> None:
    m = LatencyModel(prefill_tokens_per_s=10_000, step_s=0.03, max_seqs=256, compression=10)
    assert m.batch_seconds(600, 240, 128) == pytest.approx(0.06 + 128 * 0.03)
    assert m.batch_seconds(600, 257, 128) == pytest.approx(2 * (0.06 + 128 * 0.03))  # two rounds
    assert m.batch_seconds(600, 0, 128) == 0.0


def test_latency_engine_sleeps_the_compressed_time_and_returns_real_sizes() -> None:
    m = LatencyModel(prefill_tokens_per_s=1e9, step_s=0.01, max_seqs=256, compression=2)
    engine = LatencyEngine(m, seed=3)
    spec = SamplingSpec(n=5, temperature=1.0, max_new_tokens=20)
    t0 = time.perf_counter()
    out = engine.generate(["a prompt", "another prompt"], spec)
    took = time.perf_counter() - t0
    assert took >= 20 * 0.01 / 2 * 0.95  # 0.1 s of compressed decode
    assert engine.last_simulated_s == pytest.approx(20 * 0.01, rel=1e-3)
    assert [len(c.texts) for c in out] == [5, 5]
    assert all(len(t) == 20 * CHARS_PER_TOKEN for c in out for t in c.texts)
    assert len({t for c in out for t in c.texts}) == 10  # distinct answers, as a real sampler gives
    assert all(len(c.mean_logprobs) == 5 and all(-2 <= x <= -1 for x in c.mean_logprobs) for c in out)
    assert engine.count_tokens("x" * 41) == 10


def test_factory_builds_engines_with_their_own_texts() -> None:
    f = LatencyEngineFactory(LatencyModel(), seed=1)
    assert f().latency == LatencyModel() and f().name == "latency"


def _call(pid: int, start: float, end: float) -> dict:
    return {"kind": "generate", "pid": pid, "start": start, "end": end, "samples": 240, "simulated_s": 10.0}


def test_efficiency_is_ideal_over_the_engines_window() -> None:
    # 2 engines, 4 calls of 10 simulated s at compression 10 (1 s each): ideal 2 s; window 0..2.5
    events = [_call(1, 0.0, 1.0), _call(1, 1.0, 2.0), _call(2, 0.5, 1.5), _call(2, 1.5, 2.5)]
    e = efficiency(events, actors=2, compression=10, stage_s=5.0)
    assert e["ideal_s"] == pytest.approx(2.0)
    assert e["window_s"] == pytest.approx(2.5)
    assert e["efficiency"] == pytest.approx(0.8)
    assert e["efficiency_end_to_end"] == pytest.approx(0.4)
    assert e["busy_share"] == pytest.approx(4 / 5)
    assert e["first_call_spread_s"] == pytest.approx(0.5) and e["last_call_spread_s"] == pytest.approx(0.5)
    assert (e["engine_calls"], e["engines_seen"]) == (4, 2)
    with pytest.raises(ValueError, match="no engine call"):
        efficiency([], 2, 10, 1.0)


def test_runs_give_each_engine_its_batches_and_the_largest_k_the_big_run() -> None:
    assert plan_runs([4, 16, 32], 50, 4, 100_000) == [(4, 800), (16, 3200), (32, 6400), (32, 100_000)]
    assert plan_runs([2], 5, 4, 0) == [(2, 40)]
