"""`rluf train --pairs` under Ray Train: 2 gloo workers, the released sample, a killed worker resumed;
both arms (cfa and plain dpo) on the same pairs, one `--arm` at a time."""

from __future__ import annotations

import json
import shutil

import pytest

from rluf_ray.config import load
from rluf_ray.pipeline import run_stage, stage_fingerprint
from rluf_ray.stages.registry import get
from rluf_ray.store.artifacts import ArtifactStore
from tests.support.checkpoints import hf_checkpoint_files, record_checkpoints_before_delete


@pytest.mark.ray
@pytest.mark.slow
def test_train_on_released_pairs_resumes_after_a_failure(
    ray_idle, tiny_model_dir, weighted_sample_path, tmp_path, monkeypatch
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
            "dpo.arms=[cfa]",
        ],
    )
    store = ArtifactStore(cfg.output_dir)
    shutil.copytree(tiny_model_dir, store.local_path("sft", "model"))
    store.complete("sft", stage_fingerprint(cfg, get("sft")), {})  # stands in for `rluf sft`
    checkpoint_files = record_checkpoints_before_delete(monkeypatch)

    # the worker raises at step 3 on the fresh run; FailureConfig restarts it from the step-2 checkpoint
    man = run_stage(cfg, store, "train", options={"fail_at_step": 3})
    assert man is not None
    unit = tmp_path / "out" / "training" / "cfa" / "seed-42"
    summary = json.loads((unit / "train_summary.json").read_text())
    assert summary["arm"] == "cfa" and summary["seed"] == 42
    assert summary["pairs"] == 511 and summary["truncated_prompts"] > 400
    assert summary["zero_weight_pairs"] > 0 and summary["dropped_zero_weight"] == 0
    assert summary["global_step"] == 4 and summary["resumed"] is True
    assert man.rows["pairs"] == 511

    curves = [json.loads(x) for x in (unit / "curves.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curves] == [1, 2, 3, 4]
    for c in curves:
        assert {"loss", "rewards/accuracies", "rewards/margins", "weight/mean"} <= c.keys()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = str(unit / "model")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    out = model.generate(
        **tok(["Please summarize this text:\nhi\nSummary:"], return_tensors="pt"), max_new_tokens=3
    )
    assert out.shape[1] >= 3
    assert not (unit / "checkpoints").exists()  # removed after export
    # Every rank's part of an HF checkpoint reached Ray Train's storage: rank 0 writes the model and the
    # optimiser, each rank its own RNG state (FSDP/ZeRO-3 shards take the same path, one file per rank).
    hf_checkpoints = hf_checkpoint_files(checkpoint_files["cfa/seed-42/checkpoints"])
    assert hf_checkpoints, sorted(checkpoint_files["cfa/seed-42/checkpoints"])[:10]
    for files in hf_checkpoints.values():
        assert {"model.safetensors", "optimizer.pt", "rng_state_0.pth", "rng_state_1.pth"} <= files
    overall = json.loads((tmp_path / "out" / "training" / "train_summary.json").read_text())
    assert [u["dir"] for u in overall["units"]] == ["cfa/seed-42"] and overall["missing"] == []


def _prompt(i: int) -> str:
    return f"Please summarize this text:\nstory number {i} about a cat and a mat\nSummary:"


@pytest.mark.ray
@pytest.mark.slow
def test_both_arms_same_pairs_one_arm_at_a_time(ray_idle, tiny_model_dir, tmp_path):
    weights = [0.2, 0.4, 0.6, 0.8]  # mean 0.5; any batch of 2 has a mean in [0.3, 0.7]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps(
                {"prompt": _prompt(i), "chosen": " a cat slept", "rejected": " rent went up", "weight": w}
            )
            + "\n"
            for i, w in enumerate(weights)
        )
    )
    cfg = load(
        None,
        [
            f"output_dir={tmp_path / 'out'}",
            f"dpo.pairs_path={pairs}",
            "dpo.max_steps=2",
            "dpo.per_device_batch_size=2",
            "dpo.max_length=96",
            "dpo.max_prompt_length=64",
            "dpo.logging_steps=1",
            "resources.train_workers=1",
            "resources.cpus_per_train_worker=1",
        ],
    )
    store = ArtifactStore(cfg.output_dir)
    shutil.copytree(tiny_model_dir, store.local_path("sft", "model"))
    store.complete("sft", stage_fingerprint(cfg, get("sft")), {})
    training = tmp_path / "out" / "training"

    assert run_stage(cfg, store, "train", options={"arm": "cfa"}) is None  # dpo still missing
    assert store.manifest("training") is None
    assert (training / "cfa" / "seed-42" / "model" / "config.json").is_file()
    assert not (training / "dpo").exists()
    cfa_model = training / "cfa" / "seed-42" / "model" / "model.safetensors"
    before = cfa_model.stat().st_mtime_ns

    man = run_stage(cfg, store, "train", options={"arm": "dpo"})
    assert man is not None and man.rows["units"] == 2
    assert cfa_model.stat().st_mtime_ns == before  # the finished cfa unit was kept, not retrained
    assert "cfa/seed-42/model/config.json" in man.files and "dpo/seed-42/model/config.json" in man.files

    def curves(arm):
        path = training / arm / "seed-42" / "curves.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()]

    cfa, dpo = curves("cfa"), curves("dpo")
    assert [c["step"] for c in cfa] == [c["step"] for c in dpo] == [1, 2]  # same number of steps
    assert all(c["weight/mean"] == 1.0 for c in dpo)
    assert all(0.3 - 1e-6 <= c["weight/mean"] <= 0.7 + 1e-6 for c in cfa)
    assert sum(c["weight/mean"] for c in cfa) / 2 == pytest.approx(0.5)  # one epoch: every pair once
    sums = {
        arm: json.loads((training / arm / "seed-42" / "train_summary.json").read_text())
        for arm in ("cfa", "dpo")
    }
    assert sums["cfa"]["mean_weight"] == pytest.approx(0.5) and sums["dpo"]["mean_weight"] == 1.0
    assert sums["cfa"]["trained_pairs"] == sums["dpo"]["trained_pairs"] == 4
    assert sums["cfa"]["global_step"] == sums["dpo"]["global_step"] == 2
    overall = json.loads((training / "train_summary.json").read_text())
    assert [u["dir"] for u in overall["units"]] == ["cfa/seed-42", "dpo/seed-42"] and overall["missing"] == []
    # complete now: a plain rerun trains nothing
    assert run_stage(cfg, store, "train") is None
    assert cfa_model.stat().st_mtime_ns == before
