"""Stage calibrate on synthetic generation artifacts (GENERATION_SCHEMA / SCORE_SCHEMA)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from rluf_ray.config import RlufConfig, plan_data, plan_key_data
from rluf_ray.conformal.grid_tasks import GridTasks
from rluf_ray.errors import RlufError
from rluf_ray.schema import (
    GENERATION_SCHEMA,
    PREDICTION_SET_SCHEMA,
    PREDICTION_SETS_ARTIFACT,
    SCORE_SCHEMA,
    SCORES_ARTIFACT,
)
from rluf_ray.stages import calibrate
from rluf_ray.stages.registry import StageContext
from rluf_ray.store.artifacts import ArtifactStore

WORDS = "cat dog rent landlord birthday girlfriend job boss car money friend school exam trip".split()


def _rows(split: str, n: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for i in range(n):
        k = int(rng.integers(1, 8))
        counts = np.sort(rng.multinomial(20, rng.dirichlet(np.ones(k))))[::-1]
        counts = [int(c) for c in counts if c > 0]
        answers = []
        while len(answers) < len(counts):
            a = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))
            if a not in answers:
                answers.append(a)
        rows.append(
            {
                "prompt_id": f"{split}-{i:03d}",
                "split": split,
                "prompt": f"Please summarize this text:\n{' '.join(rng.choice(WORDS, 20))}\nSummary:",
                "reference": " ".join(rng.choice(WORDS, 5)),
                "answers": answers,
                "counts": counts,
                "texts": [a.capitalize() + "." for a in answers],
                "mean_logprobs": [float("nan")] * len(answers),
                "num_samples": 20,
                "truncated": False,
            }
        )
    return rows


def write_generation(store: ArtifactStore, n_cal: int = 40, n_test: int = 12, seed: int = 0) -> dict:
    """Synthetic generate outputs: two splits (two parquet parts each) and judge scores."""
    rng = np.random.default_rng(seed)
    cal, test = _rows("calibration", n_cal, rng), _rows("test", n_test, rng)
    for split, rows in (("calibration", cal), ("test", test)):
        half = len(rows) // 2
        for part, chunk in enumerate((rows[:half], rows[half:])):
            store.write_parquet(
                "generation", f"{split}/part-{part}.parquet", pa.Table.from_pylist(chunk, GENERATION_SCHEMA)
            )
    scores = []
    for r in cal:
        for j, a in enumerate(r["answers"]):
            failed = rng.uniform() < 0.05
            s = None if failed else float(np.clip(rng.beta(3, 1) - 0.1 * j, 0, 1))
            scores.append(
                {"prompt_id": r["prompt_id"], "answer": a, "score": s, "error": "timeout" if failed else None}
            )
    store.write_parquet("generation", SCORES_ARTIFACT, pa.Table.from_pylist(scores, SCORE_SCHEMA))
    return {"cal": cal, "test": test, "scores": scores}


def _cfg(**conformal) -> RlufConfig:
    base = {"random_count": 6, "similarity_vector_size": 16, "similarity_epochs": 2, "grid_chunks": 1}
    base["min_cells_per_task"] = 0  # small test inputs: still fan out over grid_chunks tasks
    base["weights_range"] = {"start": 0.0, "stop": 2.0, "step": 0.5}
    base.update(conformal)
    return RlufConfig.model_validate({"conformal": base})


def _ctx(store: ArtifactStore) -> StageContext:
    return StageContext(name="calibrate", store=store)


def test_plan_is_plain_data_with_every_setting_run_uses():
    cfg = _cfg(grid_chunks=4)
    p = calibrate.plan(cfg)
    data = plan_data(p)  # plain data only (no Ray objects), as report.json records it
    assert json.loads(json.dumps(data)) == data
    c = cfg.conformal
    assert data == {
        "num_cpus": 1.0,
        "chunks": 4,
        "min_cells_per_task": c.min_cells_per_task,
        "grid_points": 25,
        "conformal": {
            "protocol": "split",
            "label_rule": c.label_rule,
            "alphas": [0.2, 0.5],
            "accuracy_threshold": c.accuracy_threshold,
            "grid_values": [0.0, 0.5, 1.0, 1.5, 2.0],
            "random_count": c.random_count,
            "split_num": c.split_num,
            "tuning_fraction": c.tuning_fraction,
            "seed": c.seed,
        },
        "similarity": {
            "vector_size": c.similarity_vector_size,
            "epochs": c.similarity_epochs,
            "seed": c.seed,
            "min_count": 1,
            "window": 5,
        },
    }
    settings = p.conformal
    assert settings.alphas == (0.2, 0.5) and settings.grid_values == (0.0, 0.5, 1.0, 1.5, 2.0)
    assert p.grid_tasks() == GridTasks(chunks=4, min_cells_per_task=c.min_cells_per_task, num_cpus=1.0)
    assert calibrate.plan(_cfg(grid_chunks=1000)).chunks == 25
    # the fan-out is operational: the stage key hashes the settings only
    assert set(plan_key_data(p)) == {"grid_points", "conformal", "similarity"}


@pytest.mark.ray
def test_run_writes_sets_report_and_plots_identically_for_1_and_many_tasks(tmp_path, ray_session):
    store = ArtifactStore(tmp_path / "out")
    data = write_generation(store)
    ctx = _ctx(store)
    res = calibrate.run(calibrate.plan(_cfg(grid_chunks=1)), ctx)
    sets1 = store.read_parquet("calibration", PREDICTION_SETS_ARTIFACT)
    chosen1 = store.read_json("calibration", "calibration.json")
    res4 = calibrate.run(calibrate.plan(_cfg(grid_chunks=4)), ctx)
    sets4 = store.read_parquet("calibration", PREDICTION_SETS_ARTIFACT)
    assert sets1.schema.equals(PREDICTION_SET_SCHEMA)
    assert sets1.equals(sets4)
    assert chosen1 == store.read_json("calibration", "calibration.json")
    assert res.rows == res4.rows and res.rows["prediction_sets"] == sets1.num_rows > 0
    assert set(sets1.column("alpha").to_pylist()) == {0.2, 0.5}
    test_ids = {r["prompt_id"] for r in data["test"]}
    assert set(sets1.column("prompt_id").to_pylist()) <= test_ids
    answers = {r["prompt_id"]: set(r["answers"]) for r in data["test"]}
    for row in sets1.to_pylist():
        assert row["answer"] in answers[row["prompt_id"]]
        assert row["nonconformity"] <= float(chosen1["per_alpha"][str(row["alpha"])]["threshold"])
    report = json.loads((tmp_path / "out/calibration/report.json").read_text())
    assert report["calibration_inputs"]["prompts"] == 40
    assert report["calibration_inputs"]["answers_missing_score"] > 0
    for a in ("0.2", "0.5"):
        # coverage itself is checked against independent computations in tests/conformal/test_conformal.py;
        # here the stage must report the core's figures unchanged, and flag trivial levels by threshold.
        assert res.metrics[f"alpha_{a}"]["coverage_mean"] == report["per_alpha"][a]["coverage_mean"]
        assert report["per_alpha"][a]["trivial"] == (chosen1["per_alpha"][a]["threshold"] == "inf")
        assert np.asarray(report["surfaces"][a]).shape == (5, 5)
    for png in ("set_size_surface.png", "set_size_hist.png"):
        assert (tmp_path / "out/calibration" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.ray
def test_single_quantile_and_cfa_protocol(tmp_path, ray_session):
    store = ArtifactStore(tmp_path / "out")
    write_generation(store, seed=1)
    calibrate.run(calibrate.plan(_cfg(quantile_bars=[0.5], protocol="cfa", grid_chunks=3)), _ctx(store))
    sets = store.read_parquet("calibration", PREDICTION_SETS_ARTIFACT)
    assert set(sets.column("alpha").to_pylist()) == {0.5}
    chosen = store.read_json("calibration", "calibration.json")
    assert chosen["protocol"] == "cfa" and list(chosen["per_alpha"]) == ["0.5"]


def _with_first_sampled(store: ArtifactStore, data: dict) -> dict[str, int]:
    """Rewrite the generation parts with first_sampled = the last answer (the rarest) where k > 1."""
    first: dict[str, int] = {}
    for split, rows in (("calibration", data["cal"]), ("test", data["test"])):
        for r in rows:
            r["first_sampled"] = first[r["prompt_id"]] = len(r["answers"]) - 1
        store.write_parquet(
            "generation", f"{split}/part-0.parquet", pa.Table.from_pylist(rows, GENERATION_SCHEMA)
        )
        store.write_parquet(
            "generation", f"{split}/part-1.parquet", pa.Table.from_pylist([], GENERATION_SCHEMA)
        )
    return first


def test_cfa_reorders_first_sampled_first_and_sets_name_the_right_answers(tmp_path):
    store = ArtifactStore(tmp_path / "out")
    data = write_generation(store, seed=2)
    first = _with_first_sampled(store, data)
    assert any(v > 0 for v in first.values())
    original = {r["prompt_id"]: r for r in data["cal"] + data["test"]}
    cal, test, scores = calibrate.load_inputs(_ctx(store), "cfa")
    for r in cal + test:
        o = original[r["prompt_id"]]
        f = first[r["prompt_id"]]
        assert r["answers"][0] == o["answers"][f] and r["counts"][0] == o["counts"][f]
        assert r["texts"][0] == o["texts"][f]
        assert sorted(zip(r["answers"], r["counts"], strict=True)) == sorted(
            zip(o["answers"], o["counts"], strict=True)
        )
    split_cal, _, _ = calibrate.load_inputs(_ctx(store), "split")
    assert [r["answers"] for r in split_cal] == [original[r["prompt_id"]]["answers"] for r in split_cal]
    zero = [[0.0] * len(r["answers"]) for r in cal + test]
    cal_t, test_t = calibrate.build_tables(cal, test, scores, zero)
    judged = {(x["prompt_id"], x["answer"]): x["score"] for x in data["scores"]}
    for i, r in enumerate(cal):  # judge scores follow their answers
        for j, a in enumerate(r["answers"]):
            want = judged[(r["prompt_id"], a)]
            assert np.isnan(cal_t.judge[i, j]) if want is None else cal_t.judge[i, j] == want
    # w1 = w2 = 0: an answer's score is 10 - 10*count/total, so each listed answer must carry its own.
    table, _ = calibrate.set_rows(test_t, [calibrate.Calibration(0.5, 0.0, 0.0, float("inf"), 10)])
    rows = table.to_pylist()
    assert len(rows) == sum(len(r["answers"]) for r in data["test"])
    for row in rows:
        o = original[row["prompt_id"]]
        c = o["counts"][o["answers"].index(row["answer"])]
        assert row["nonconformity"] == pytest.approx(10 - 10 * c / sum(o["counts"]))


def test_cfa_on_an_old_generation_artifact_takes_index_0_with_a_note(tmp_path, caplog):
    store = ArtifactStore(tmp_path / "out")
    data = write_generation(store, seed=3)  # rows without first_sampled
    with caplog.at_level("INFO", logger="rluf.calibrate"):
        cal, test, _ = calibrate.load_inputs(_ctx(store), "cfa")
    notes = [m for m in caplog.messages if "without first_sampled" in m]
    assert len(notes) == 1 and notes[0].startswith(f"calibrate: {len(cal) + len(test)} generation rows")
    assert [r["answers"] for r in cal] == [
        r["answers"] for r in sorted(data["cal"], key=lambda r: r["prompt_id"])
    ]


def test_too_few_calibration_prompts_is_a_clear_error(tmp_path):
    store = ArtifactStore(tmp_path / "out")
    write_generation(store, n_cal=4, n_test=2)
    with pytest.raises(RlufError, match=r"alpha=0\.2: n=4 labelled prompts.*n >= 14"):
        calibrate.run(calibrate.plan(_cfg()), _ctx(store))


def test_missing_generation_artifacts(tmp_path):
    with pytest.raises(RlufError, match="generation artifacts missing"):
        calibrate.run(calibrate.plan(_cfg()), _ctx(ArtifactStore(tmp_path / "out")))
