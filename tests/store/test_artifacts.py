"""Artifact store: atomic writes, manifests written last, completeness checks."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from rluf_ray.store.artifacts import MANIFEST, TMP_MARK, ArtifactStore


def test_roundtrip_json_jsonl_parquet(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.write_json("calibration", "chosen.json", {"w1": 0.2})
    assert store.read_json("calibration", "chosen.json") == {"w1": 0.2}
    n = store.write_jsonl("feedback", "pairs.jsonl", ({"i": i, "t": "é"} for i in range(5)))
    assert n == 5
    assert [r["i"] for r in store.iter_jsonl("feedback", "pairs.jsonl")] == list(range(5))
    table = pa.table({"prompt_id": ["a", "b"], "x": [1.5, 2.5]})
    assert store.write_parquet("generation", "calibration/part-0.parquet", table) == 2
    assert store.read_parquet("generation", "calibration").column("x").to_pylist() == [1.5, 2.5]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.write_jsonl("feedback", "pairs.jsonl", [{"i": 0}])

    def rows():
        yield {"i": 1}
        raise RuntimeError("killed halfway")

    with pytest.raises(RuntimeError):
        store.write_jsonl("feedback", "pairs.jsonl", rows())
    # The old complete file is still there, and no temporary file is left behind.
    assert list(store.iter_jsonl("feedback", "pairs.jsonl")) == [{"i": 0}]
    assert not [f for f in os.listdir(tmp_path / "feedback") if f.startswith(TMP_MARK)]


def test_manifest_lists_files_and_detects_tampering(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.write_json("sft", "a.json", {"x": 1})
    store.write_bytes("sft", "model/weights.bin", b"0123456789")
    man = store.complete("sft", "cfg-hash", {}, rows={"train": 3}, wall_time_s=1.23456)
    assert man.files == {"a.json": len(b'{\n  "x": 1\n}'), "model/weights.bin": 10}
    assert man.rows == {"train": 3} and man.wall_time_s == 1.235
    assert "python" in man.versions and "numpy" in man.versions
    assert store.is_complete("sft", "cfg-hash", {})
    assert not store.is_complete("sft", "other-hash", {})
    assert not store.is_complete("sft", "cfg-hash", {"x": "y"})
    # A file that is truncated or missing makes the stage incomplete.
    (tmp_path / "sft" / "model" / "weights.bin").write_bytes(b"01234")
    assert not store.is_complete("sft", "cfg-hash", {})


def test_invalidate_and_clear(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.write_json("weights", "w.json", [1])
    store.complete("weights", "h", {})
    h1 = store.manifest_hash("weights")
    assert h1 and store.exists("weights", MANIFEST)
    store.invalidate("weights")
    assert store.manifest("weights") is None and store.manifest_hash("weights") is None
    assert not store.is_complete("weights", "h", {})
    store.clear("weights")
    assert not (tmp_path / "weights").exists()


def test_corrupt_manifest_is_incomplete(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.write_bytes("sft", MANIFEST, b"{not json")
    assert store.manifest("sft") is None
    assert not store.is_complete("sft", "h", {})


def test_uri_root(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}/out")
    store.write_json("report", "r.json", {"ok": True})
    assert (tmp_path / "out" / "report" / "r.json").is_file()
    assert store.read_json("report", "r.json") == {"ok": True}


def _ids_table(ids: list[str]) -> pa.Table:
    return pa.table({"prompt_id": ids, "n": list(range(len(ids)))})


def test_part_files_listing_ids_and_streaming(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.write_parquet("gen", "cal/part-b.parquet", _ids_table(["c", "d"]))
    store.write_parquet("gen", "cal/part-a.parquet", _ids_table(["a", "b"]))
    store.write_parquet("gen", "test/part-a.parquet", _ids_table(["t"]))
    (tmp_path / "gen" / "cal" / f"{TMP_MARK}dead-part-x.parquet").write_bytes(b"half")  # killed mid-write
    (tmp_path / "gen" / "cal" / "notes.txt").write_text("x")
    assert store.list_parts("gen", "cal") == ["cal/part-a.parquet", "cal/part-b.parquet"]
    assert store.part_values("gen", "cal") == {"a", "b", "c", "d"}
    assert store.part_values("gen", "test", "prompt_id") == {"t"}
    assert store.part_values("gen", "cal", "n") == {"0", "1"}
    batches = list(store.iter_part_batches("gen", "cal", ["prompt_id"], batch_size=1))
    assert [b["prompt_id"] for b in batches] == [["a"], ["b"], ["c"], ["d"]]
    assert all(set(b) == {"prompt_id"} for b in batches)  # only the asked column is read
    # absent subdirectory: nothing, no error
    assert store.list_parts("gen", "missing") == [] and store.part_values("gen", "missing") == set()
    assert list(store.iter_part_batches("nostage", "cal", ["prompt_id"])) == []


def test_remove_temp_files_and_delete_subdir(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.write_parquet("gen", "cal/part-a.parquet", _ids_table(["a"]))
    store.write_parquet("gen", "test/part-a.parquet", _ids_table(["t"]))
    cal = tmp_path / "gen" / "cal"
    (cal / f"{TMP_MARK}1-part-a.parquet").write_bytes(b"half")
    (cal / f"{TMP_MARK}2-part-b.parquet").write_bytes(b"half")
    assert store.remove_temp_files("gen", "cal") == 2
    assert sorted(p.name for p in cal.iterdir()) == ["part-a.parquet"]
    assert store.remove_temp_files("gen", "cal") == 0
    assert store.remove_temp_files("gen", "missing") == 0
    store.delete_subdir("gen", "cal")
    assert not cal.exists() and (tmp_path / "gen" / "test" / "part-a.parquet").exists()
    store.delete_subdir("gen", "cal")  # absent: nothing happens
    assert store.part_values("gen", "cal") == set()


def test_part_files_through_a_uri_root(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}")
    store.write_parquet("gen", "cal/part-a.parquet", _ids_table(["a", "b"]))
    assert store.part_values("gen", "cal") == {"a", "b"}
    store.delete_subdir("gen", "cal")
    assert store.list_parts("gen", "cal") == []
