"""FSDP with sharded checkpoints across two Ray Train workers (one CUDA GPU each): every rank's shard of
the model and of the optimiser state reaches Ray Train's storage, a failed run resumes from the last
checkpoint, and the final model is a full HF model.

Marked ``gpu`` and needs two CUDA devices: accelerate enables FSDP only for GPU-like distributed types
(never for CPU workers over gloo, where the HF Trainer silently trains plain DDP), so this cannot run on
a CPU box. Run on a two-GPU machine: ``pytest -m gpu tests/gpu/test_fsdp_resume.py``. The CPU suite
checks the same every-rank path with DDP's per-rank RNG files
(``tests/training/test_train_stage_ray.py``) and with torch's FSDP2 over gloo driven directly
(``tests/training/test_fsdp_cpu_resume.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rluf_ray.config import load
from rluf_ray.pipeline import run_stage
from rluf_ray.store.artifacts import ArtifactStore
from tests.support.checkpoints import hf_checkpoint_files, record_checkpoints_before_delete

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP across two Train workers needs two GPUs"),
]


def _shard_ranks(files: set[str], subdir: str) -> set[str]:
    """Ranks with a torch DCP shard file (``<subdir>/__<rank>_<n>.distcp``) in one HF checkpoint."""
    names = [f.split("/", 1)[1] for f in files if f.startswith(subdir + "/") and f.endswith(".distcp")]
    return {name.split("_")[2] for name in names}


def test_two_worker_fsdp_sft_resumes_from_its_sharded_checkpoint(
    ray_idle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load(None, [
        f"output_dir={tmp_path / 'out'}", "data.sft_size=16", "sft.max_steps=4", "sft.save_steps=2",
        "sft.logging_steps=1", "sft.max_length=128", "sft.per_device_batch_size=2", "sft.max_failures=1",
        "sft.fsdp=full_shard auto_wrap", "sft.fsdp_state_dict=sharded",
        "resources.use_gpu=true", "resources.train_workers=2", "resources.cpus_per_train_worker=1",
    ])  # fmt: skip
    store = ArtifactStore(cfg.output_dir)
    seen = record_checkpoints_before_delete(monkeypatch)

    # the workers raise at step 3 on the fresh run; FailureConfig restarts them from the step-2 checkpoint
    man = run_stage(cfg, store, "sft", options={"fail_at_step": 3})
    assert man is not None and man.status == "complete"
    summary = json.loads((tmp_path / "out" / "sft" / "sft_summary.json").read_text())
    assert summary["resumed"] is True and summary["global_step"] == 4 and summary["workers"] == 2

    checkpoints = hf_checkpoint_files(seen["checkpoints"])
    assert checkpoints, sorted(seen["checkpoints"])[:20]
    for files in checkpoints.values():  # both ranks' shards of the model and of the optimiser state
        assert _shard_ranks(files, "pytorch_model_fsdp_0") == {"0", "1"}, sorted(files)
        assert _shard_ranks(files, "optimizer_0") == {"0", "1"}, sorted(files)
        assert "model.safetensors" not in files  # sharded checkpoints: no gathered copy on rank 0

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "sft" / "model")  # full, HF format
    assert sum(p.numel() for p in model.parameters()) > 0
    assert not (tmp_path / "out" / "sft" / "checkpoints").exists()
