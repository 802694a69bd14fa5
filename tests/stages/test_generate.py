"""The generate stage on a local Ray: tiny model end to end, resume, actor death, force."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray.cloudpickle

from rluf_ray.config import load
from rluf_ray.data.splits import split_plan, tokenizer_corpus
from rluf_ray.data.tiny_model import build_embedded
from rluf_ray.engines.base import Completion
from rluf_ray.errors import RlufError
from rluf_ray.pipeline import run_stage, stage_fingerprint
from rluf_ray.schema import GENERATION_SCHEMA
from rluf_ray.stages import generate
from rluf_ray.stages.registry import StageContext, get
from rluf_ray.store.artifacts import ArtifactStore

# The fake engines below travel to Ray workers by value (this test module is not importable there).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.ray


class LoggingEngine:
    """Deterministic stand-in: answers from the prompt length; logs every prompt it sampled to a file.

    ``fail_on``: raise (``mode="raise"``) or kill the process (``mode="exit"``) the first time that
    prompt id's post is seen, unless ``marker`` exists (created before failing).
    """

    name = "logging"

    def __init__(
        self,
        log_path: str,
        fail_on: str | None = None,
        marker: str | None = None,
        mode: str = "raise",
        closed: str | None = None,
    ):
        self.log_path, self.fail_on, self.marker, self.mode = log_path, fail_on, marker, mode
        self.closed = closed  # a file touched when the engine is closed

    def close(self) -> None:
        if self.closed:
            Path(self.closed).touch()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts, spec, seed=None):
        for p in prompts:
            if self.fail_on and self.fail_on in p and not os.path.exists(self.marker):
                Path(self.marker).touch()
                if self.mode == "exit":
                    os._exit(1)
                raise RuntimeError("injected engine failure")
        with open(self.log_path, "a") as f:
            for p in prompts:
                f.write(json.dumps(p) + "\n")
        out = []
        for p in prompts:
            k = len(p.split()) % 3 + 1
            texts = [f"answer {i % k}" for i in range(spec.n)]
            out.append(Completion(texts, [-0.5] * spec.n))
        return out


def _factory(log_path: Path, **kw):
    def make():
        return LoggingEngine(str(log_path), **kw)

    return make


def _files_cfg(tmp_path: Path, n_cal: int = 6, n_test: int = 2, extra: tuple[str, ...] = ()):
    cal = tmp_path / "cal.jsonl"
    test = tmp_path / "test.jsonl"
    long_post = " ".join(f"w{i}" for i in range(100))
    cal.write_text("".join(json.dumps({"id": f"c{i}", "prompt": f"token{i} post " * (i + 1), "reference": "answer 0"}) + "\n"
                           for i in range(n_cal)))  # fmt: skip
    test.write_text("".join(json.dumps({"id": f"t{i}", "prompt": long_post if i == 0 else f"t {i}", "reference": "r"}) + "\n"
                            for i in range(n_test)))  # fmt: skip
    return load(
        overrides=[
            "data.source=files",
            f"data.calibration_file={cal}",
            f"data.test_file={test}",
            f"data.calibration_size={n_cal}",
            f"data.test_size={n_test}",
            "generation.sampling_num=5",
            "generation.prompts_per_batch=1",
            "generation.rows_per_file=1",
            "generation.max_new_tokens=8",
            "model.max_context=40",
            "resources.engine_actors=1",
            f"output_dir={tmp_path / 'out'}",
            *extra,
        ]
    )


def _ctx(cfg, store: ArtifactStore, force: bool = False) -> StageContext:
    return StageContext(name="generate", store=store, options={"force": force})


def _ids_on_disk(store: ArtifactStore, split: str) -> list[str]:
    ids: list[str] = []
    for f in sorted(Path(store.stage_dir("generation"), split).glob("*.parquet")):
        ids += pq.read_table(f).column("prompt_id").to_pylist()
    return ids


def _logged(log_path: Path) -> list[str]:
    return [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []


@pytest.mark.slow
def test_tiny_model_end_to_end_through_the_pipeline(ray_session, tmp_path: Path) -> None:
    cfg = load(
        overrides=[
            "data.calibration_size=4", "data.test_size=3", "generation.sampling_num=4",
            "generation.max_new_tokens=4", "generation.prompts_per_batch=2", "generation.rows_per_file=2",
            "resources.engine_actors=1", f"output_dir={tmp_path}",
        ]
    )  # fmt: skip
    store = ArtifactStore(cfg.output_dir)
    build_embedded(
        tokenizer_corpus(cfg.data.prompt_template, split_plan(cfg.data, "train"), 50),
        store.local_path("sft", "model"),
        max_positions=512,
    )
    store.complete("sft", stage_fingerprint(cfg, get("sft")), {})
    man = run_stage(cfg, store, "generate")
    assert man is not None and man.rows == {"calibration": 4, "test": 3}
    cal = pq.read_table(store.path("generation", "calibration"))
    assert cal.schema.equals(GENERATION_SCHEMA)
    assert sorted(cal.column("prompt_id").to_pylist()) == [f"demo-calibration-{i:06d}" for i in range(4)]
    for counts, answers, texts, lps in zip(*(cal.column(c).to_pylist() for c in ("counts", "answers", "texts", "mean_logprobs")), strict=True):  # fmt: skip
        assert sum(counts) == 4 and counts == sorted(counts, reverse=True)
        assert len(answers) == len(texts) == len(lps) == len(counts)
    assert set(cal.column("split").to_pylist()) == {"calibration"}
    assert man.metrics["throughput"]["samples_generated"] == 28
    assert man.metrics["throughput"]["samples_per_s"] > 0
    assert man.metrics["calibration"]["samples"] == 16
    # Every unique calibration answer is judge-scored against its reference; the test split is not.
    scores = store.read_parquet("generation", "scores.parquet").to_pylist()
    expected = {(pid, a) for pid, answers in zip(cal.column("prompt_id").to_pylist(), cal.column("answers").to_pylist(), strict=True) for a in answers}  # fmt: skip
    assert {(r["prompt_id"], r["answer"]) for r in scores} == expected and len(scores) == len(expected)
    # The offline judge's score_v2 (the default): 1 - 0.2 per word-level mistake of the shown text
    # against the reference (missing or extra tokens of the ROUGE-L alignment): recomputed here.
    from rouge_score import rouge_scorer, tokenizers

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    tok = tokenizers.DefaultTokenizer(use_stemmer=False)
    rows = {r["prompt_id"]: r for r in cal.to_pylist()}
    for r in scores:
        g = rows[r["prompt_id"]]
        text = g["texts"][g["answers"].index(r["answer"])]
        cand, ref = tok.tokenize(text), tok.tokenize(g["reference"])
        lcs = round(scorer.score(g["reference"], text)["rougeL"].recall * len(ref))
        assert r["error"] is None
        assert r["score"] == pytest.approx(max(0.0, 1.0 - 0.2 * max(len(cand) - lcs, len(ref) - lcs)))
    assert man.metrics["calibration_scored"] is True and man.metrics["scores_missing"] == 0
    assert run_stage(cfg, store, "generate") is None  # complete: skipped


def test_resume_skips_finished_prompts_and_force_redoes(ray_session, tmp_path: Path) -> None:
    cfg = _files_cfg(tmp_path)
    store = ArtifactStore(cfg.output_dir)
    log_path = tmp_path / "calls.jsonl"
    result = generate.run_generation(generate.plan(cfg), _ctx(cfg, store), engine_factory=_factory(log_path))
    assert result.rows == {"calibration": 6, "test": 2}
    assert result.metrics["test"]["truncated"] == 1  # the 100-word post was cut, counted, no crash
    assert len(_logged(log_path)) == 8
    # Simulate a kill: two finished part files lost, a half-written temp file left behind.
    parts = sorted(Path(store.stage_dir("generation"), "calibration").glob("part-*.parquet"))
    kept = {p: p.stat().st_mtime_ns for p in parts[2:]}
    for p in parts[:2]:
        p.unlink()
    (parts[0].parent / ".tmp-deadbeef-part-x.parquet").write_bytes(b"half")
    log_path.unlink()
    result = generate.run_generation(generate.plan(cfg), _ctx(cfg, store), engine_factory=_factory(log_path))
    assert len(_logged(log_path)) == 2  # only the lost prompts were sampled again
    assert result.metrics["calibration"]["prompts_resumed"] == 4
    assert sorted(_ids_on_disk(store, "calibration")) == [
        f"c{i}" for i in range(6)
    ]  # none lost, none doubled
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert not list(parts[0].parent.glob(".tmp-*"))
    # --force starts over.
    log_path.unlink()
    generate.run_generation(
        generate.plan(cfg), _ctx(cfg, store, force=True), engine_factory=_factory(log_path)
    )
    assert len(_logged(log_path)) == 8
    assert sorted(_ids_on_disk(store, "calibration")) == [f"c{i}" for i in range(6)]


def test_failed_run_then_rerun_loses_and_doubles_nothing(ray_session, tmp_path: Path) -> None:
    cfg = _files_cfg(tmp_path)
    store = ArtifactStore(cfg.output_dir)
    log_path, marker = tmp_path / "calls.jsonl", tmp_path / "failed-once"
    with pytest.raises(Exception, match="injected engine failure"):
        generate.run_generation(
            generate.plan(cfg),
            _ctx(cfg, store),
            engine_factory=_factory(log_path, fail_on="token3", marker=str(marker)),
        )
    done_before = set(_ids_on_disk(store, "calibration"))
    result = generate.run_generation(
        generate.plan(cfg),
        _ctx(cfg, store),
        engine_factory=_factory(log_path, fail_on="token3", marker=str(marker)),
    )
    assert result.metrics["calibration"]["prompts_resumed"] == len(done_before)
    assert sorted(_ids_on_disk(store, "calibration")) == [f"c{i}" for i in range(6)]
    assert sorted(_ids_on_disk(store, "test")) == ["t0", "t1"]


def test_failed_run_frees_its_cpus_within_10_s(ray_idle, tmp_path: Path) -> None:
    """A failed run, its exception still held (as pytest or a long-lived driver holds it), gives its
    engine actor's CPU back and closes the engine, without any private Ray Data call."""
    import time

    cfg = _files_cfg(tmp_path)
    store = ArtifactStore(cfg.output_dir)
    marker, closed = tmp_path / "failed-once", tmp_path / "engine-closed"
    factory = _factory(tmp_path / "calls.jsonl", fail_on="token3", marker=str(marker), closed=str(closed))
    with pytest.raises(Exception, match="injected engine failure") as info:
        generate.run_generation(generate.plan(cfg), _ctx(cfg, store), engine_factory=factory)
    t0 = time.monotonic()  # the exception (and its whole chain) is still alive here
    while ray_idle.available_resources().get("CPU", 0) < 2 and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    freed_s = time.monotonic() - t0
    assert ray_idle.available_resources().get("CPU", 0) == 2, (ray_idle.available_resources(), info.value)
    while not closed.exists() and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    assert closed.exists(), "the engine actor's UDF did not close its engine on teardown"
    print(f"CPUs back {freed_s:.2f} s after the failure")


@pytest.mark.slow
def test_dead_engine_actor_is_replaced_and_its_batch_redone(ray_session, tmp_path: Path) -> None:
    cfg = _files_cfg(tmp_path, n_cal=4, n_test=1)
    store = ArtifactStore(cfg.output_dir)
    log_path, marker = tmp_path / "calls.jsonl", tmp_path / "died-once"
    factory = _factory(log_path, fail_on="token2", marker=str(marker), mode="exit")
    result = generate.run_generation(generate.plan(cfg), _ctx(cfg, store), engine_factory=factory)
    assert marker.exists()  # the actor did die once
    assert result.rows == {"calibration": 4, "test": 1}
    assert sorted(_ids_on_disk(store, "calibration")) == [f"c{i}" for i in range(4)]


def test_bad_inputs_write_nothing(tmp_path: Path) -> None:
    cfg = load(overrides=[f"output_dir={tmp_path}"])
    store = ArtifactStore(tmp_path)
    with pytest.raises(RlufError, match="model not found"):
        generate.run(generate.plan(cfg), _ctx(cfg, store))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cfg = load(overrides=["data.source=files", f"data.calibration_file={empty}", f"data.test_file={empty}",
                          f"output_dir={tmp_path}"])  # fmt: skip
    with pytest.raises(RlufError, match="calibration split is empty"):
        generate.run_generation(generate.plan(cfg), _ctx(cfg, store), engine_factory=_factory(tmp_path / "x"))
    assert not Path(store.stage_dir("generation")).exists()
