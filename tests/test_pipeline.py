"""Pipeline: skip what is complete, --force redoes, upstream changes invalidate downstream,
a stage killed halfway is never complete."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rluf_ray import pipeline
from rluf_ray.config import load, plan_key
from rluf_ray.errors import UpstreamMissing
from rluf_ray.pipeline import is_complete, run_stage
from rluf_ray.stages import registry
from rluf_ray.stages.registry import StageResult
from rluf_ray.store.artifacts import ArtifactStore

CALLS: list[str] = []


def _fake(real: registry.StageDef, fail: bool = False) -> registry.StageDef:
    """A stage with the real one's name, directory, upstream and reads, whose run only writes a file."""

    def run(plan, ctx):
        CALLS.append(ctx.name)
        ctx.store.write_json(ctx.dir, "out.json", {"stage": ctx.name})
        if fail:
            raise RuntimeError("killed halfway")
        return StageResult(rows={"n": 1})

    return replace(real, run_fn=run)


@pytest.fixture
def fake_stages(monkeypatch: pytest.MonkeyPatch):
    """Two fake stages sft -> generate wired into the registry."""
    CALLS.clear()
    stages = {name: _fake(registry.get(name)) for name in ("sft", "generate")}
    for name, stage in stages.items():
        monkeypatch.setitem(registry._OVERRIDES, name, stage)
    monkeypatch.setattr(pipeline, "ORDER", tuple(stages))
    return stages


def test_skip_force_and_invalidation(tmp_path: Path, fake_stages) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    store = ArtifactStore(tmp_path)
    assert pipeline.run_all(cfg, store) == ["sft", "generate"]
    assert pipeline.run_all(cfg, store) == []  # both complete: skipped
    assert CALLS == ["sft", "generate"]
    # A key that only generate reads re-runs generate only.
    cfg2 = load(None, [f"output_dir={tmp_path}", "generation.temperature=0.9"])
    assert pipeline.run_all(cfg2, store) == ["generate"]
    # --force on the upstream stage changes its manifest, which invalidates downstream.
    assert run_stage(cfg2, store, "sft", force=True) is not None
    assert not is_complete(cfg2, store, fake_stages["generate"])
    assert pipeline.run_all(cfg2, store) == ["generate"]
    # A resources-only change re-runs nothing.
    cfg3 = load(None, [f"output_dir={tmp_path}", "generation.temperature=0.9", "resources.engine_actors=5"])
    assert pipeline.run_all(cfg3, store) == []


def test_killed_stage_is_not_complete(tmp_path: Path, fake_stages, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    store = ArtifactStore(tmp_path)
    pipeline.run_all(cfg, store)
    assert is_complete(cfg, store, fake_stages["generate"])
    monkeypatch.setitem(registry._OVERRIDES, "generate", _fake(registry.get("generate"), fail=True))
    with pytest.raises(RuntimeError):
        run_stage(cfg, store, "generate", force=True)
    assert not is_complete(cfg, store, fake_stages["generate"])
    assert store.manifest("generation") is None


def test_upstream_missing(tmp_path: Path, fake_stages) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    with pytest.raises(UpstreamMissing, match="generate needs sft first"):
        run_stage(cfg, ArtifactStore(tmp_path), "generate")


def test_unknown_stage() -> None:
    with pytest.raises(KeyError, match="unknown stage 'nope'"):
        registry.get("nope")


def test_registry_is_consistent() -> None:
    names = [s.name for s in registry.all_stages()]
    assert names == [
        "sft",
        "generate",
        "calibrate",
        "feedback",
        "assign-weights",
        "train",
        "infer",
        "evaluate",
    ]
    dirs = {s.artifact_dir for s in registry.all_stages()}
    assert dirs == {
        "sft",
        "generation",
        "calibration",
        "feedback",
        "weights",
        "training",
        "inference",
        "evaluation",
    }
    cfg = load(None)
    seen: set[str] = set()
    for spec in registry.all_stages():
        assert set(spec.upstream) <= seen, f"{spec.name} reads a stage that runs after it"
        seen.add(spec.name)
        plan = spec.plan(cfg)
        assert pipeline.stage_fingerprint(cfg, spec) == pipeline.stage_key(spec, plan) == plan_key(plan)
        # where things live never reaches a stage key (tests/test_stale_keys.py checks every key)
        moved = load(None, ["output_dir=/elsewhere", "resources.engine_actors=7"])
        assert pipeline.stage_fingerprint(moved, spec) == pipeline.stage_fingerprint(cfg, spec), spec.name


def test_run_all_writes_report(tmp_path: Path, fake_stages) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    pipeline.run_all(cfg, ArtifactStore(tmp_path))
    import json

    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert set(summary["stages"]) == {"sft", "generate"}
    assert summary["stages"]["sft"]["rows"] == {"n": 1}
    assert "| generate |" in (tmp_path / "report" / "summary.md").read_text()


@pytest.fixture
def fake_train_chain(monkeypatch: pytest.MonkeyPatch):
    """sft -> train -> infer as fakes keeping the real stages' upstream, needs, inputs and sticky keys."""
    CALLS.clear()
    for name in ("sft", "train", "infer"):
        monkeypatch.setitem(registry._OVERRIDES, name, _fake(registry.get(name)))


def _pairs_file(path: Path, weight: float) -> Path:
    row = {"prompt": "p", "chosen": "a", "rejected": "b", "weight": weight}
    path.write_text(json.dumps(row) + "\n")
    return path


def test_train_pairs_content_is_hashed(tmp_path: Path) -> None:
    train = registry.get("train")
    a = _pairs_file(tmp_path / "a.jsonl", 0.5)
    b = _pairs_file(tmp_path / "b.jsonl", 0.5)  # same bytes, another path
    fp_a = pipeline.stage_fingerprint(load(None, [f"dpo.pairs_path={a}"]), train)
    fp_b = pipeline.stage_fingerprint(load(None, [f"dpo.pairs_path={b}"]), train)
    assert fp_a == fp_b
    _pairs_file(a, 0.8)  # same path, other bytes
    assert pipeline.stage_fingerprint(load(None, [f"dpo.pairs_path={a}"]), train) != fp_a


def test_train_with_pairs_counts_for_what_follows(tmp_path: Path, fake_train_chain) -> None:
    pairs = _pairs_file(tmp_path / "pairs.jsonl", 0.65)
    store = ArtifactStore(tmp_path / "out")
    cfg = load(None, [f"output_dir={tmp_path / 'out'}"])
    run_stage(cfg, store, "sft")
    run_stage(load(None, [f"output_dir={tmp_path / 'out'}", f"dpo.pairs_path={pairs}"]), store, "train")
    # `rluf infer` without --pairs uses the model that `rluf train --pairs FILE` made.
    assert run_stage(cfg, store, "infer") is not None
    assert is_complete(cfg, store, "train") and is_complete(cfg, store, "infer")
    # New bytes in the pairs file make that training (and what follows) stale.
    _pairs_file(pairs, 0.8)
    assert not is_complete(cfg, store, "train")
    with pytest.raises(UpstreamMissing, match="infer needs train first"):
        run_stage(cfg, store, "infer")
    # `train --force` without --pairs goes back to assign-weights' pairs, which are missing here.
    with pytest.raises(UpstreamMissing, match="train needs assign-weights first"):
        run_stage(cfg, store, "train", force=True)


def test_incomplete_stage_writes_no_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """A stage that did part of its work (``rluf train --arm cfa``) is not complete: no manifest, downstream
    refuses; a later run that finishes it writes the manifest and the kept work counts."""
    CALLS.clear()
    monkeypatch.setitem(registry._OVERRIDES, "sft", _fake(registry.get("sft")))
    monkeypatch.setitem(registry._OVERRIDES, "infer", _fake(registry.get("infer")))

    def train(plan, ctx):
        CALLS.append(f"train:{ctx.options.get('arm')}")
        done = (
            set(json.loads(ctx.store.read_bytes(ctx.dir, "done.json")))
            if ctx.store.exists(ctx.dir, "done.json")
            else set()
        )
        done |= {ctx.options["arm"]} if ctx.options.get("arm") else {"cfa", "dpo"}
        ctx.store.write_json(ctx.dir, "done.json", sorted(done))
        missing = sorted({"cfa", "dpo"} - done)
        return StageResult(rows={"units": len(done)}, complete=not missing, missing=f"missing {missing}")

    monkeypatch.setitem(registry._OVERRIDES, "train", replace(registry.get("train"), run_fn=train))
    out = tmp_path / "out"
    cfg = load(None, [f"output_dir={out}", f"dpo.pairs_path={_pairs_file(tmp_path / 'p.jsonl', 0.5)}"])
    store = ArtifactStore(out)
    run_stage(cfg, store, "sft")
    with caplog.at_level("INFO", logger="rluf"):
        assert run_stage(cfg, store, "train", options={"arm": "cfa"}) is None
    assert "train: incomplete, no manifest written (missing ['dpo'])" in caplog.text
    assert store.manifest("training") is None and not is_complete(cfg, store, "train")
    with pytest.raises(UpstreamMissing, match="infer needs train first"):
        run_stage(cfg, store, "infer")
    man = run_stage(cfg, store, "train", options={"arm": "dpo"})
    assert man is not None and man.rows == {"units": 2} and "done.json" in man.files
    assert CALLS == ["sft", "train:cfa", "train:dpo"]
    assert run_stage(cfg, store, "infer") is not None
