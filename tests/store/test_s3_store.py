"""The artifact store and the node model cache on a real S3-compatible server (moto on 127.0.0.1)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from rluf_ray.errors import RlufError
from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.store.model_cache import check_model_location, local_model, local_tokenizer, node_cache_root


def _model_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "weights.bin").write_bytes(os.urandom(4096))
    (root / "sub" / "tokenizer.json").write_text("{}")
    return root


@pytest.fixture
def s3_store(s3_env) -> ArtifactStore:
    bucket = s3_env.bucket(f"rluf-{uuid.uuid4().hex[:8]}")
    return ArtifactStore(f"{bucket}/run")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_uri_names_the_object_store(s3_store: ArtifactStore) -> None:
    assert not s3_store.local
    assert s3_store.uri("sft", "model").startswith("s3://rluf-") and s3_store.uri("sft", "model").endswith(
        "/run/sft/model"
    )
    path, fs = s3_store.train_storage("sft", "checkpoints")
    assert isinstance(fs, pafs.S3FileSystem) and not path.startswith("s3://")


def test_put_dir_replaces_and_the_cache_copies_once(
    s3_store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RLUF_CACHE_DIR", str(tmp_path / "rluf"))
    src = _model_folder(tmp_path / "src")
    s3_store.put_dir("sft", "model", str(src))
    uri = s3_store.uri("sft", "model")
    check_model_location(uri)
    local = local_model(uri)
    assert local.startswith(str(tmp_path / "rluf" / "store-copies")) and _files(Path(local)) == _files(src)
    assert local_model(uri) == local  # cached: the same complete copy
    assert [p.name for p in (tmp_path / "rluf" / "store-copies").iterdir()] == [
        Path(local).name
    ]  # no temp dir left

    (src / "weights.bin").write_bytes(os.urandom(100))  # a retrained model at the same URI
    (src / "sub" / "tokenizer.json").unlink()
    s3_store.put_dir("sft", "model", str(src))
    fresh = local_model(uri)
    assert fresh != local and _files(Path(fresh)) == _files(src)  # the old file is gone remotely too


def test_missing_model_is_one_line(s3_store: ArtifactStore) -> None:
    s3_store.write_json("sft", "model/other.json", {})
    with pytest.raises(RlufError, match="no Hugging Face model at s3://"):
        check_model_location(s3_store.uri("sft", "model"))


def test_local_locations_pass_through(tmp_path: Path) -> None:
    assert local_model(str(tmp_path)) == str(tmp_path)
    assert local_model(f"file://{tmp_path}") == str(tmp_path)
    assert local_model("meta-llama/Llama-2-7b-hf") == "meta-llama/Llama-2-7b-hf"


def test_flat_model_folder_is_copied(s3_store: ArtifactStore, tmp_path: Path, monkeypatch) -> None:
    """A folder without subfolders (what save_pretrained writes) arrives whole, in the store and the cache."""
    monkeypatch.setenv("RLUF_CACHE_DIR", str(tmp_path / "rluf"))
    src = tmp_path / "flat"
    src.mkdir()
    (src / "config.json").write_text("{}")
    s3_store.put_dir("sft", "model", str(src))
    assert _files(Path(local_model(s3_store.uri("sft", "model")))) == _files(src)
    local = ArtifactStore(tmp_path / "out")
    local.put_dir("sft", "model", str(src))
    assert _files(tmp_path / "out" / "sft" / "model") == _files(src)


def test_tokenizer_copy_holds_no_weights(s3_store: ArtifactStore, tmp_path: Path, monkeypatch) -> None:
    """The driver fits prompts with the tokenizer alone: only tokenizer files leave the store."""
    monkeypatch.setenv("RLUF_CACHE_DIR", str(tmp_path / "rluf"))
    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "llama"}')
    (src / "model.safetensors").write_bytes(os.urandom(8192))
    (src / "tokenizer.json").write_text('{"version": "1.0"}')
    (src / "tokenizer_config.json").write_text("{}")
    (src / "checkpoint").mkdir()
    (src / "checkpoint" / "tokenizer.json").write_text("{}")  # not at the top level: not copied
    s3_store.put_dir("sft", "model", str(src))
    local = Path(local_tokenizer(s3_store.uri("sft", "model")))
    assert sorted(_files(local)) == ["config.json", "tokenizer.json", "tokenizer_config.json"]
    assert local.parent == Path(node_cache_root()) == tmp_path / "rluf" / "store-copies"
    assert local_tokenizer(s3_store.uri("sft", "model")) == str(local)  # cached
    whole = Path(local_model(s3_store.uri("sft", "model")))
    assert whole != local and (whole / "model.safetensors").exists()  # a whole copy is its own entry
    s3_store.write_json("dpo", "model/config.json", {})
    with pytest.raises(RlufError, match="no tokenizer files at s3://"):
        local_tokenizer(s3_store.uri("dpo", "model"))


def test_one_variable_places_every_model_cache(tmp_path: Path, monkeypatch) -> None:
    from rluf_ray.data.embedded import cache_root

    monkeypatch.setenv("RLUF_CACHE_DIR", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c" and Path(node_cache_root()).parent == tmp_path / "c"
    monkeypatch.delenv("RLUF_CACHE_DIR")
    assert not Path(node_cache_root()).is_relative_to(tmp_path) and cache_root().name == "rluf-ray"
