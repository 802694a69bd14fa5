"""``rluf status`` on stores whose manifests the real pipeline functions keyed (no stage runs, no Ray)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from rluf_ray.cli import main
from rluf_ray.config import RlufConfig, get_value, load, plan_key, plan_key_data
from rluf_ray.pipeline import is_complete, stage_key, upstream_hashes
from rluf_ray.schema import MODEL_DIR, TRAIN_SUMMARY_ARTIFACT
from rluf_ray.stages.registry import ORDER, get
from rluf_ray.status import COMPLETE, ERROR, MISSING, STALE, StageStatus, pipeline_status
from rluf_ray.store.artifacts import ArtifactStore

DOWNSTREAM_OF_GENERATE = ["generate", "calibrate", "feedback", "assign-weights", "train", "infer", "evaluate"]


def complete_stage(cfg: RlufConfig, store: ArtifactStore, name: str) -> None:
    """Write one artifact (and every training unit's outputs) and the manifest ``run_stage`` would write."""
    stage = get(name)
    plan = stage.plan(cfg)
    ups = upstream_hashes(store, stage.needs(plan))
    store.write_json(stage.artifact_dir, "out.json", {"stage": name})
    for unit in stage.units(plan, store, ups):
        store.write_json(stage.artifact_dir, f"{unit.name}/{TRAIN_SUMMARY_ARTIFACT}", {"unit_key": unit.key})
        store.write_json(stage.artifact_dir, f"{unit.name}/{MODEL_DIR}/config.json", {})
    present = {k: v for k, v in ups.items() if v is not None}
    sticky = {k: get_value(cfg, k) for k in stage.sticky}
    store.complete(
        stage.artifact_dir, stage_key(stage, plan), present, sticky=sticky, plan=plan_key_data(plan)
    )


def complete_all(cfg: RlufConfig, store: ArtifactStore) -> None:
    for name in ORDER:
        complete_stage(cfg, store, name)


def by_name(statuses: list[StageStatus]) -> dict[str, StageStatus]:
    return {s.name: s for s in statuses}


def would_run(statuses: list[StageStatus]) -> list[str]:
    return [s.name for s in statuses if s.would_run]


@pytest.fixture
def built(tmp_path: Path) -> tuple[RlufConfig, ArtifactStore]:
    cfg = load(None, [f"output_dir={tmp_path / 'out'}"])
    store = ArtifactStore(cfg.output_dir)
    complete_all(cfg, store)
    return cfg, store


def test_all_complete_agrees_with_the_pipeline(built: tuple[RlufConfig, ArtifactStore]) -> None:
    cfg, store = built
    statuses = pipeline_status(cfg, store)
    assert [s.name for s in statuses] == list(ORDER)
    assert all(s.state == COMPLETE and not s.reasons for s in statuses)
    assert all(is_complete(cfg, store, name) for name in ORDER)
    units = by_name(statuses)["train"].units
    assert [(u.name, u.state) for u in units] == [("cfa/seed-42", COMPLETE), ("dpo/seed-42", COMPLETE)]
    assert would_run(statuses) == [] and not any(u.would_run for u in units)


def test_changed_key_names_the_field_and_stales_downstream(built: tuple[RlufConfig, ArtifactStore]) -> None:
    cfg, store = built
    changed = load(None, [f"output_dir={cfg.output_dir}", "generation.temperature=0.9"])
    statuses = by_name(pipeline_status(changed, store))
    assert statuses["sft"].state == COMPLETE
    assert statuses["generate"].state == STALE
    assert statuses["generate"].reasons == ["generation.temperature: 0.85 -> 0.9"]
    assert statuses["calibrate"].reasons == ["upstream generate stale"]
    assert statuses["feedback"].reasons == ["upstream generate stale"]
    assert statuses["evaluate"].reasons == ["upstream infer stale"]
    for name in DOWNSTREAM_OF_GENERATE:
        assert statuses[name].state == STALE and not is_complete(changed, store, name)
    assert would_run(list(statuses.values())) == DOWNSTREAM_OF_GENERATE
    assert all(u.would_run for u in statuses["train"].units)  # their weighted pairs get redone


def test_a_plan_path_no_config_key_explains_is_named_by_its_path(built) -> None:
    cfg, store = built
    man = store.read_json("weights", "_manifest.json")
    man["plan"]["retired_knob"] = 3  # as if an older code version had planned a field it has dropped
    man["config_hash"] = plan_key(man["plan"])
    store.write_json("weights", "_manifest.json", man)
    st = by_name(pipeline_status(cfg, store))["assign-weights"]
    assert st.state == STALE and st.reasons == ["plan retired_knob: 3 -> <absent>"]


def test_rerun_upstream_stales_its_downstream(built: tuple[RlufConfig, ArtifactStore]) -> None:
    cfg, store = built
    complete_stage(cfg, store, "calibrate")  # same key, new run: a new manifest hash
    statuses = pipeline_status(cfg, store)
    st = by_name(statuses)
    assert st["calibrate"].state == COMPLETE
    assert st["assign-weights"].reasons == ["upstream calibrate changed (re-ran since)"]
    assert would_run(statuses) == ["assign-weights", "train", "infer", "evaluate"]


def test_missing_stage(built: tuple[RlufConfig, ArtifactStore]) -> None:
    cfg, store = built
    store.invalidate("evaluation")
    statuses = pipeline_status(cfg, store)
    assert by_name(statuses)["evaluate"].state == MISSING
    assert would_run(statuses) == ["evaluate"]


def test_missing_training_unit(built: tuple[RlufConfig, ArtifactStore]) -> None:
    cfg, store = built
    store.invalidate("training")  # `rluf train --arm cfa` finished cfa only: no manifest yet
    store.delete_subdir("training", "dpo/seed-42")
    statuses = pipeline_status(cfg, store)
    train = by_name(statuses)["train"]
    assert train.state == MISSING and train.reasons == ["units complete: 1 of 2"]
    assert [(u.name, u.state, u.would_run) for u in train.units] == [
        ("cfa/seed-42", COMPLETE, False),
        ("dpo/seed-42", MISSING, True),
    ]
    assert would_run(statuses) == ["train", "infer", "evaluate"]


def test_added_seed_keeps_finished_units(built: tuple[RlufConfig, ArtifactStore]) -> None:
    cfg, store = built
    changed = load(None, [f"output_dir={cfg.output_dir}", "dpo.seeds=[42,43]"])
    train = by_name(pipeline_status(changed, store))["train"]
    assert train.state == STALE and train.reasons == ["dpo.seeds: [42] -> [42, 43]"]
    assert {u.name: u.state for u in train.units} == {
        "cfa/seed-42": COMPLETE,
        "cfa/seed-43": MISSING,
        "dpo/seed-42": COMPLETE,
        "dpo/seed-43": MISSING,
    }


def test_unit_trained_under_another_plan_is_stale_naming_the_field(built) -> None:
    cfg, store = built
    changed = load(None, [f"output_dir={cfg.output_dir}", "dpo.beta=0.2"])
    train = by_name(pipeline_status(changed, store))["train"]
    assert train.reasons == ["dpo.beta: 0.1 -> 0.2"]
    assert [(u.state, u.reasons) for u in train.units] == [(STALE, ["dpo.beta: 0.1 -> 0.2"])] * 2


def test_manifest_without_plan_says_so(built: tuple[RlufConfig, ArtifactStore]) -> None:
    cfg, store = built
    man = store.read_json("generation", "_manifest.json")
    man.pop("plan")
    man["config_hash"] = "0" * 64
    store.write_json("generation", "_manifest.json", man)
    st = by_name(pipeline_status(cfg, store))["generate"]
    assert st.state == STALE and st.reasons == ["key changed (no plan recorded)"]


def test_missing_file_and_changed_external_input(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "weight": 1.0}\n')
    cfg = load(None, [f"output_dir={tmp_path / 'out'}", f"dpo.pairs_path={pairs}"])
    store = ArtifactStore(cfg.output_dir)
    complete_all(cfg, store)
    pairs.write_text('{"prompt": "q", "chosen": "a", "rejected": "b", "weight": 1.0}\n')
    (tmp_path / "out" / "calibration" / "out.json").unlink()
    st = by_name(pipeline_status(cfg, store))
    assert st["calibrate"].reasons == ["files missing or changed: out.json"]
    assert st["train"].needs == ("sft",)  # an external pairs file: the weights stage is not read
    assert st["train"].reasons == ["external input changed (pairs_sha256)"]
    assert [u.reasons for u in st["train"].units] == [["external input changed"]] * 2


def test_sticky_pairs_file_counts_without_set_and_an_unreadable_one_is_an_error(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "weight": 1.0}\n')
    out = tmp_path / "out"
    store = ArtifactStore(out)
    complete_all(load(None, [f"output_dir={out}", f"dpo.pairs_path={pairs}"]), store)
    plain = load(None, [f"output_dir={out}"])  # `rluf status` after `rluf train --pairs FILE`
    assert all(s.state == COMPLETE for s in pipeline_status(plain, store))
    pairs.unlink()
    statuses = pipeline_status(plain, store)
    train = by_name(statuses)["train"]
    assert train.state == ERROR and "file not found" in train.reasons[0]
    assert would_run(statuses) == ["train", "infer", "evaluate"]


def test_cli_status_prints_a_table_and_run_all_line(built, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = built
    code = main(["status", "--output-dir", str(cfg.output_dir), "--set", "generation.temperature=0.9"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == f"output dir: {cfg.output_dir}"
    assert any(line.split()[:2] == ["sft", "complete"] for line in lines)
    assert any(
        line.split() == ["generate", "stale", "generation.temperature:", "0.85", "->", "0.9"]
        for line in lines
    )
    assert any(line.split()[:2] == ["cfa/seed-42", "complete"] for line in lines)
    assert lines[-2] == f"run-all would run: {', '.join(DOWNSTREAM_OF_GENERATE)}"
    assert lines[-1] == "run-all would train: cfa/seed-42, dpo/seed-42"


def test_cli_status_on_an_empty_dir_and_a_bad_config(tmp_path: Path, capsys) -> None:
    assert main(["status", "--output-dir", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert all(line.split()[1] == MISSING for line in out[2:-2])
    assert out[-2:] == [
        f"run-all would run: {', '.join(ORDER)}",
        "run-all would train: cfa/seed-42, dpo/seed-42",
    ]
    assert main(["status", "--output-dir", str(tmp_path), "--set", "generation.bogus=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rluf: config error:") and "generation.bogus" in err[0]
    with pytest.raises(SystemExit):
        main(["status", "--force"])  # status changes nothing: no --force


def test_status_on_s3(s3_env, capsys: pytest.CaptureFixture[str]) -> None:
    root = f"{s3_env.bucket(f'rluf-{uuid.uuid4().hex[:8]}')}/run"
    cfg = load(None, [f"output_dir={root}"])
    store = ArtifactStore(root)
    assert not store.local
    complete_all(cfg, store)
    assert all(s.state == COMPLETE for s in pipeline_status(cfg, store))
    assert main(["status", "--output-dir", root, "--set", "dpo.beta=0.2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split() == ["train", "stale", "dpo.beta:", "0.1", "->", "0.2"] for line in lines)
    assert lines[-1] == "run-all would train: cfa/seed-42, dpo/seed-42"
    assert lines[-2] == "run-all would run: train, infer, evaluate"
