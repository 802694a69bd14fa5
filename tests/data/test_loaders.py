"""Loaders on TL;DR-shaped rows and local files (no hub calls: there is no internet)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rluf_ray.config import load
from rluf_ray.data import loaders, splits
from rluf_ray.errors import RlufError


def _tldr(pid: str, post: str | None, summary: str, policy: str = "ref") -> dict:
    return {
        "info": {"id": pid, "post": post, "title": "t", "subreddit": "r/x", "article": None, "site": None},
        "summary": {"text": summary, "policy": policy, "note": None, "axes": {"overall": 5}},
        "worker": "w1",
        "batch": "b1",
        "split": "valid1",
    }


def test_tldr_dedup_filter_and_shape() -> None:
    raw = [
        _tldr("t3_a", "my cat ate my homework", " cat ate homework "),
        _tldr("t3_a", "my cat ate my homework", "a different rated summary", policy="sup2"),  # duplicate
        _tldr("t3_b", " ".join(["word"] * 11), "too long"),  # 11 words > 10
        _tldr("t3_c", " ".join(["word"] * 10), "exactly at the limit"),
        _tldr("cnn_1", None, "an article row without a post"),
        _tldr("t3_d", "short post", ""),
    ]
    rows, stats = loaders.tldr_rows(raw, max_post_words=10)
    assert rows == [
        {"prompt_id": "t3_a", "post": "my cat ate my homework", "reference": "cat ate homework"},
        {"prompt_id": "t3_c", "post": " ".join(["word"] * 10), "reference": "exactly at the limit"},
    ]
    assert stats.as_dict() == {"seen": 6, "kept": 2, "duplicates": 1, "empty": 2, "too_long": 1}


def test_partition_disjoint_and_order_independent() -> None:
    rows = [{"prompt_id": f"id{i:03d}", "post": f"p{i}", "reference": f"r{i}"} for i in range(30)]
    a = loaders.partition_by_id(rows, 5, 7, seed=42)
    b = loaders.partition_by_id(list(reversed(rows)), 5, 7, seed=42)
    assert a == b
    assert [len(a[k]) for k in ("calibration", "test", "train")] == [5, 7, 18]
    ids = {k: {r["prompt_id"] for r in v} for k, v in a.items()}
    assert not ids["train"] & (ids["calibration"] | ids["test"] | ids["eval"])
    assert not ids["eval"] & (ids["calibration"] | ids["test"])
    assert not ids["calibration"] & ids["test"]
    assert loaders.partition_by_id(rows, 5, 7, seed=1) != a
    with pytest.raises(ValueError):
        loaders.partition_by_id(rows + rows[:1], 5, 7, seed=42)


def test_tldr_source_through_load_split(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = [_tldr(f"t3_{i}", f"post number {i} " + "x " * (i % 5), f"sum {i}") for i in range(40)]
    raw += [_tldr("t3_1", "dup", "dup")]
    calls: list[tuple[str, str, str]] = []

    def fake_hub(hub_id: str, subset: str, split: str):  # the hub call is the only thing replaced
        calls.append((hub_id, subset, split))
        return raw

    monkeypatch.setattr(loaders, "load_tldr_hub", fake_hub)
    splits._tldr_parts.cache_clear()
    cfg = load(
        overrides=[
            "data.source=tldr",
            "data.calibration_size=10",
            "data.test_size=5",
            "data.sft_size=8",
            "data.eval_size=6",
        ]
    )
    parts = {
        s: splits.load_split(splits.split_plan(cfg.data, s)) for s in ("train", "calibration", "test", "eval")
    }
    splits._tldr_parts.cache_clear()
    assert calls[0] == ("openai/summarize_from_feedback", "axis", "validation")
    assert [len(parts[s]) for s in ("calibration", "test", "eval", "train")] == [10, 5, 6, 8]
    ids = {s: {r["prompt_id"] for r in v} for s, v in parts.items()}
    assert not ids["train"] & (ids["calibration"] | ids["test"] | ids["eval"])
    assert not ids["eval"] & (ids["calibration"] | ids["test"])


def test_files_source_jsonl_and_parquet(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "prompt": "alpha text", "reference": "alpha"},
                {"id": "b", "prompt": "beta text", "reference": "beta"},
                {"id": "c", "prompt": "gamma text", "reference": "gamma"},
                {"id": "c", "prompt": "gamma again", "reference": "dup"},
            ]
        )
        + "\n\n"
    )
    cal = tmp_path / "cal.parquet"
    pq.write_table(
        pa.table({"prompt": ["beta text", "delta text"], "reference": ["beta", "delta"], "id": ["b", "d"]}),
        cal,
    )
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"prompt": "eps text", "reference": "eps"}) + "\n")
    cfg = load(
        overrides=[
            "data.source=files",
            f"data.train_file={train}",
            f"data.calibration_file={cal}",
            f"data.test_file={test}",
            "data.calibration_size=1",
        ]
    )
    assert [r["prompt_id"] for r in splits.load_split(splits.split_plan(cfg.data, "train"))] == [
        "a",
        "c",
    ]  # b is a calibration id
    assert splits.load_split(splits.split_plan(cfg.data, "calibration")) == [
        {"prompt_id": "b", "post": "beta text", "reference": "beta"}
    ]
    (row,) = splits.load_split(splits.split_plan(cfg.data, "test"))
    assert row["post"] == "eps text" and row["prompt_id"] == loaders.content_id("eps text", "eps")


def test_files_source_errors(tmp_path: Path) -> None:
    cfg = load(overrides=["data.source=files", f"data.calibration_file={tmp_path / 'missing.jsonl'}"])
    with pytest.raises(RlufError, match="data file not found"):
        splits.load_split(splits.split_plan(cfg.data, "calibration"))
    with pytest.raises(RlufError, match="data.test_file"):
        splits.load_split(splits.split_plan(cfg.data, "test"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt column"}\n')
    cfg = load(overrides=["data.source=files", f"data.calibration_file={bad}"])
    with pytest.raises(RlufError, match="'prompt'"):
        splits.load_split(splits.split_plan(cfg.data, "calibration"))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "x", "reference": "y"}\n{oops\n')
    cfg = load(overrides=["data.source=files", f"data.calibration_file={broken}"])
    with pytest.raises(RlufError, match=":2: not valid JSON"):
        splits.load_split(splits.split_plan(cfg.data, "calibration"))


def test_over_long_posts_are_cut_and_counted() -> None:
    rows = [
        {"prompt_id": "short", "post": "a short post", "reference": "r"},
        {"prompt_id": "long", "post": " ".join(f"w{i}" for i in range(200)), "reference": "r"},
    ]
    words = lambda s: len(s.split())  # noqa: E731 - one token per word
    out = list(splits.fit_rows(rows, words, 40, "Please summarize this text:\n{post}\nSummary:"))
    assert [r["truncated"] for r in out] == [False, True]
    assert out[0]["prompt"] == "Please summarize this text:\na short post\nSummary:"
    assert out[1]["prompt"].startswith("Please summarize this text:\nw0 w1")
    assert out[1]["prompt"].endswith("\nSummary:") and words(out[1]["prompt"]) <= 40
    with pytest.raises(RlufError, match="template alone"):
        list(splits.fit_rows(rows, words, 3, "Please summarize this text:\n{post}\nSummary:"))


def test_prompt_budget() -> None:
    cfg = load()
    assert splits.prompt_budget(cfg.model.max_context, 40) == cfg.model.max_context - 40
    with pytest.raises(RlufError, match=r"model.max_context \(40\) leaves no room for a prompt after 40"):
        splits.prompt_budget(40, 40)
