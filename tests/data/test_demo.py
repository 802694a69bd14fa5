"""The embedded demo generator: deterministic, disjoint splits, graded difficulty."""

from __future__ import annotations

import hashlib
import json

import pytest

from rluf_ray.common.text import normalize_answer
from rluf_ray.config import load
from rluf_ray.data import demo
from rluf_ray.data.splits import demo_batch, load_split, split_count, split_plan


def _digest(docs: list[demo.DemoDoc]) -> str:
    blob = json.dumps([d.to_dict() for d in docs], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _split(seed: int, split: str, count: int) -> list[demo.DemoDoc]:
    """The first ``count`` documents of ``split``."""
    return list(demo.iter_docs(seed, split, count))


def test_same_seed_same_bytes_and_other_seed_differs() -> None:
    a = _split(7, "calibration", 40)
    b = _split(7, "calibration", 40)
    c = _split(8, "calibration", 40)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    assert sum(x.post != y.post for x, y in zip(a, c, strict=True)) >= 35


def test_documents_do_not_depend_on_other_split_sizes() -> None:
    small = load(overrides=["data.demo.train_docs=10", "data.demo.calibration_docs=5"])
    large = load(overrides=["data.demo.train_docs=500", "data.demo.calibration_docs=5"])
    assert load_split(split_plan(small.data, "calibration")) == load_split(
        split_plan(large.data, "calibration")
    )


def test_splits_disjoint_by_id_and_text() -> None:
    cfg = load(overrides=["data.demo.train_docs=300"])
    parts = {s: load_split(split_plan(cfg.data, s)) for s in ("train", "calibration", "test", "eval")}
    ids = {s: {r["prompt_id"] for r in rows} for s, rows in parts.items()}
    assert len(ids["train"]) == 300
    assert len(ids["calibration"]) == 50  # calibration_size 50 of 60 documents
    assert len(ids["test"]) == 40
    assert not ids["train"] & ids["calibration"]
    assert not ids["train"] & ids["test"]
    assert not ids["calibration"] & ids["test"]
    assert len(ids["eval"]) == 30
    assert not ids["eval"] & (ids["train"] | ids["calibration"] | ids["test"])
    for rows in parts.values():
        assert all(set(r) == {"prompt_id", "post", "reference"} for r in rows)


def test_graded_difficulty() -> None:
    docs = _split(1234, "train", 200)
    by_level: dict[int, list[demo.DemoDoc]] = {}
    for d in docs:
        by_level.setdefault(d.difficulty, []).append(d)
    assert sorted(by_level) == [0, 1, 2, 3]
    mean_words = [sum(len(d.post.split()) for d in by_level[k]) / len(by_level[k]) for k in range(4)]
    assert mean_words == sorted(mean_words) and mean_words[3] > 2 * mean_words[0]
    # Level 0 is canonical: the reference's facts appear in a fixed wording; higher levels paraphrase.
    assert all(d.post.startswith(f"{d.name}, a ") for d in by_level[0])
    assert len({d.post.split(",")[0] == d.name for d in by_level[3]}) == 2
    # Harder documents mention other names (distractors); level 0 mentions only the event's person.
    others = [sum(f in d.post for f in demo.FIRST_NAMES) for d in by_level[3]]
    assert min(others) >= 2
    assert all(sum(f in d.post for f in demo.FIRST_NAMES) == 1 for d in by_level[0])


def test_reference_carries_the_documents_facts() -> None:
    for d in _split(3, "test", 40):
        for fact in (d.name, d.town, d.day, str(d.count)):
            assert fact in d.post and fact in d.reference
        assert d.reference == f"{d.name} {d.action} in {d.town} on {d.day}; {d.count} people came."
        assert normalize_answer(d.reference)  # survives normalisation


def test_short_enough_for_the_tiny_context() -> None:
    docs = _split(1234, "train", 400)
    assert max(len(d.post) for d in docs) < 700  # < ~250 byte-level tokens even before BPE merges


def test_demo_batch_matches_load_split() -> None:
    cfg = load(overrides=["data.calibration_size=12"])
    rows = load_split(split_plan(cfg.data, "calibration"))
    assert split_count(split_plan(cfg.data, "calibration")) == 12
    batch = demo_batch(cfg.data.demo.seed, "calibration", [3, 4])
    assert batch["prompt_id"] == [rows[3]["prompt_id"], rows[4]["prompt_id"]]
    assert batch["post"] == [rows[3]["post"], rows[4]["post"]]
    assert batch["reference"] == [rows[3]["reference"], rows[4]["reference"]]


def test_vague_count_references_only_in_the_sft_split() -> None:
    cfg = load(overrides=["data.demo.train_docs=1000", "data.demo.vague_count_share=0.6"])
    exact = load(overrides=["data.demo.train_docs=1000", "data.demo.vague_count_share=0.0"])
    train, train_exact = (
        load_split(split_plan(cfg.data, "train")),
        load_split(split_plan(exact.data, "train")),
    )
    vague = [r["reference"].endswith(f"; {demo.VAGUE_COUNT}.") for r in train]
    share = sum(vague) / len(vague)
    assert 0.55 <= share <= 0.65  # 0.6 asked; 1000 draws: sd about 0.015
    for r, e, v in zip(train, train_exact, vague, strict=True):
        assert r["post"] == e["post"]  # the document does not depend on the flaw
        assert (r["reference"] == e["reference"]) is not v
        assert r["reference"].split(";")[0] == e["reference"].split(";")[0]  # only the count clause
    for split in ("calibration", "test", "eval"):  # the judge's gold stays exact
        assert load_split(split_plan(cfg.data, split)) == load_split(split_plan(exact.data, split))


def test_the_vague_phrase_is_part_of_the_sft_split_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load(overrides=["data.demo.vague_count_share=0.2"])
    before = split_plan(cfg.data, "train")
    monkeypatch.setattr(demo, "VAGUE_COUNT", "lots of people came")
    assert split_plan(cfg.data, "train") != before  # a new phrase is new data: SFT goes stale
    assert split_plan(cfg.data, "calibration") == split_plan(load().data, "calibration")
