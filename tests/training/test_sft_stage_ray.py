"""`rluf sft` under Ray Train on the embedded demo: builds the base, fine-tunes, resumes after a failure."""

from __future__ import annotations

import json

import pytest

from rluf_ray.config import load
from rluf_ray.pipeline import run_stage
from rluf_ray.store.artifacts import ArtifactStore


@pytest.mark.ray
@pytest.mark.slow
def test_sft_builds_embedded_base_trains_and_resumes(ray_idle, tmp_path):
    cfg = load(
        None,
        [
            f"output_dir={tmp_path / 'out'}",
            "data.sft_size=16",
            "sft.max_steps=3",
            "sft.save_steps=1",
            "sft.logging_steps=1",
            "sft.max_length=128",
            "sft.per_device_batch_size=4",
            "sft.max_failures=1",
            "resources.train_workers=1",
            "resources.cpus_per_train_worker=1",
        ],
    )
    store = ArtifactStore(cfg.output_dir)
    man = run_stage(cfg, store, "sft", options={"fail_at_step": 2})  # fails once at step 2, resumes from 1
    assert man is not None and man.rows == {"examples": 16}
    summary = json.loads((tmp_path / "out" / "sft" / "sft_summary.json").read_text())
    assert summary["global_step"] == 3 and summary["resumed"] is True
    curves = [json.loads(x) for x in (tmp_path / "out" / "sft" / "curves.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curves] == [1, 2, 3]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = store.local_path("sft", "model")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.config.eos_token_id == tok.eos_token_id
    assert model.config.num_hidden_layers == cfg.model.embedded_layers
    assert (tmp_path / "out" / "sft" / "base" / "config.json").is_file()
    assert not (tmp_path / "out" / "sft" / "checkpoints").exists()
