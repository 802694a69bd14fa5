"""`rluf train --pairs` under Ray Train: 2 gloo workers, the released sample, a killed worker resumed."""

from __future__ import annotations

import json
import shutil

import pytest

from rluf_ray.config import load
from rluf_ray.io.artifacts import ArtifactStore
from rluf_ray.pipeline import run_stage, stage_fingerprint
from rluf_ray.stages.registry import get


@pytest.mark.ray
@pytest.mark.slow
def test_train_on_released_pairs_resumes_after_a_failure(
    ray_idle, tiny_model_dir, weighted_sample_path, tmp_path
):
    cfg = load(
        None,
        [
            f"output_dir={tmp_path / 'out'}",
            f"dpo.pairs_path={weighted_sample_path}",
            "dpo.max_steps=4",
            "dpo.save_steps=2",
            "dpo.per_device_batch_size=2",
            "dpo.max_length=160",
            "dpo.max_prompt_length=96",
            "dpo.logging_steps=1",
            "dpo.max_failures=1",
            "resources.train_workers=2",
            "resources.cpus_per_train_worker=1",
        ],
    )
    store = ArtifactStore(cfg.output_dir)
    shutil.copytree(tiny_model_dir, store.local_path("sft", "model"))
    store.complete("sft", stage_fingerprint(cfg, get("sft")), {})  # stands in for `rluf sft`

    # the worker raises at step 3 on the fresh run; FailureConfig restarts it from the step-2 checkpoint
    man = run_stage(cfg, store, "train", options={"fail_at_step": 3})
    assert man is not None
    summary = json.loads((tmp_path / "out" / "training" / "train_summary.json").read_text())
    assert summary["pairs"] == 511 and summary["truncated_prompts"] > 400
    assert summary["zero_weight_pairs"] > 0 and summary["dropped_zero_weight"] == 0
    assert summary["global_step"] == 4 and summary["resumed"] is True
    assert man.rows["pairs"] == 511

    curves = [
        json.loads(x) for x in (tmp_path / "out" / "training" / "curves.jsonl").read_text().splitlines()
    ]
    assert [c["step"] for c in curves] == [1, 2, 3, 4]
    for c in curves:
        assert {"loss", "rewards/accuracies", "rewards/margins", "weight/mean"} <= c.keys()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = store.local_path("training", "model")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    out = model.generate(
        **tok(["Please summarize this text:\nhi\nSummary:"], return_tensors="pt"), max_new_tokens=3
    )
    assert out.shape[1] >= 3
    assert not (tmp_path / "out" / "training" / "checkpoints").exists()  # removed after export
