"""feedback: all pairs of unique answers judged once, order debiased per pair, failures recorded."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pyarrow as pa
import pytest

from rluf_ray.config import load
from rluf_ray.data.splits import load_split, split_plan
from rluf_ray.schema import GENERATION_SCHEMA, PAIRS_ARTIFACT
from rluf_ray.stages import feedback
from rluf_ray.stages.registry import StageContext
from rluf_ray.store.artifacts import ArtifactStore
from tests.support.fake_openai import FakeOpenAI, Faults


def _generation(cfg, store: ArtifactStore, n_prompts: int = 3) -> list[dict]:
    rows = []
    for i, src in enumerate(load_split(split_plan(cfg.data, "test"))[:n_prompts]):
        ref = src["reference"]
        texts = [ref, ref.split(";")[0] + ".", f"Something unrelated number {i}.", "Nothing at all."][: 2 + i]
        answers = [t.lower().strip(".") for t in texts]
        rows.append(
            {
                "prompt_id": src["prompt_id"],
                "split": "test",
                "prompt": f"Summarize: {src['post']}",
                "reference": ref,
                "answers": answers,
                "counts": [5] * len(texts),
                "texts": texts,
                "mean_logprobs": [-1.0] * len(texts),
                "num_samples": 5 * len(texts),
                "truncated": False,
            }
        )
    store.write_parquet(
        "generation", "test/part-0.parquet", pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA)
    )
    return rows


def _ctx(store: ArtifactStore, **options) -> StageContext:
    return StageContext(name="feedback", store=store, options=options)


def test_offline_feedback_pairs(tmp_path: Path) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    store = ArtifactStore(tmp_path)
    rows = _generation(cfg, store)
    result = feedback.run(feedback.plan(cfg), _ctx(store))
    pairs = list(store.iter_jsonl("feedback", PAIRS_ARTIFACT))
    expected = sum(len(list(itertools.combinations(r["answers"], 2))) for r in rows)  # 1 + 3 + 6
    assert len(pairs) == expected == 10 and result.rows["pairs"] == 10
    # Each unordered pair appears exactly once.
    keys = {(p["prompt_id"], frozenset((p["chosen_answer"], p["rejected_answer"]))) for p in pairs}
    assert len(keys) == 10
    # The reference-identical answer wins every comparison it is in (offline ROUGE-L judge, no noise).
    by_pid = {r["prompt_id"]: r for r in rows}
    for p in pairs:
        ref_text = by_pid[p["prompt_id"]]["texts"][0]
        if ref_text in (p["chosen"], p["rejected"]):
            assert p["chosen"] == ref_text
    ann = [json.loads(x) for x in (tmp_path / "feedback" / "annotations.jsonl").read_text().splitlines()]
    assert len(ann) == 10 and {a["flipped"] for a in ann} == {True, False}
    ok = [a for a in ann if a["error"] is None]
    assert result.metrics["missing"] == 0 and len(ok) == 10
    assert result.metrics["output_1_win_share"] == sum(a["preference"] == 1 for a in ok) / 10


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load(None, [f"output_dir={tmp_path}"])
    store = ArtifactStore(tmp_path)
    _generation(cfg, store)
    feedback.run(feedback.plan(cfg), _ctx(store, dry_run=True))
    assert "judge dry run (feedback" in capsys.readouterr().out
    assert not (tmp_path / "feedback").exists()


@pytest.mark.ray
def test_api_feedback_with_faults_loses_nothing(tmp_path: Path, ray_session, monkeypatch) -> None:
    monkeypatch.setenv("RLUF_TEST_KEY", "sk-test")
    with FakeOpenAI(faults=Faults(p_500=0.3), seed=3) as srv:
        cfg = load(
            None,
            [
                f"output_dir={tmp_path}",
                "judge.provider=openai",
                f"judge.base_url={srv.base_url}",
                "judge.api_key_env=RLUF_TEST_KEY",
                "judge.max_retries=0",
                "judge.requests_per_minute=6000",
                "judge.tokens_per_minute=10000000",
                "judge.backoff_base_s=0.01",
            ],
        )
        store = ArtifactStore(tmp_path)
        _generation(cfg, store)
        result = feedback.run(feedback.plan(cfg), _ctx(store))
    pairs = list(store.iter_jsonl("feedback", PAIRS_ARTIFACT))
    ann = [json.loads(x) for x in (tmp_path / "feedback" / "annotations.jsonl").read_text().splitlines()]
    assert len(ann) == 10  # every comparison accounted for, none duplicated
    failed = [a for a in ann if a["error"]]
    assert failed, "with 30% server errors and no retries some comparisons must fail"
    assert all(a["preference"] is None for a in failed)  # a failure is missing, never a preference
    assert len(pairs) == 10 - len(failed) == result.rows["pairs"]
    assert result.metrics["missing"] == len(failed)
