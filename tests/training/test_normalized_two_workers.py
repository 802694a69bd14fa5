"""``reduction: normalized`` over the whole optimiser step across ranks, on the real Ray Train path.

Two workers with one pair each (weights 1 and 3) must take the step of sum(w*l)/sum(w) over the global
batch: (l1 + 3 l2) / 4. One worker accumulating the same two pairs under ``mean`` with weights
(0.5, 1.5) takes exactly that step ((0.5 l1 + 1.5 l2) / 2), with the same per-micro-batch shapes.
Normalising per rank instead would give (l1 + l2) / 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rluf_ray.config import load
from rluf_ray.stages import train
from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.training.dpo_loop import dpo_train_loop
from rluf_ray.training.ray_train import TrainRun, TrainScaling, fit_and_export

PAIRS = [
    {"prompt": "Please summarize this text:\nThe cat sat on the mat.\nSummary:", "chosen": " a cat sat",
     "rejected": " rent went up", "weight": 1.0},
    {"prompt": "Please summarize this text:\nMy rent rose.\nSummary:", "chosen": " rent rose",
     "rejected": " a cat slept all day", "weight": 3.0},
]  # fmt: skip


def _train(
    model_dir: Path, out: Path, workers: int, accumulation: int, reduction: str, pairs: list
) -> torch.Tensor:
    """One plain-SGD step (the update is the gradient: no Adam normalisation, no clipping)."""
    cfg = load(None, [f"dpo.reduction={reduction}", "dpo.drop_zero_weight=false", "dpo.max_length=128"])
    args = {
        **train.plan(cfg).trainer_args.kwargs(),
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": accumulation,
        "max_steps": 1,
        "optim": "sgd",
        "learning_rate": 0.5,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "max_grad_norm": 1e9,
        "save_strategy": "no",
    }
    loop_config = {"model_path": str(model_dir), "dtype": "float32", "trainer_args": args, "lora": None,
                   "pairs": pairs}  # fmt: skip
    run = TrainRun(name=f"norm-{workers}w-{reduction}", max_failures=0,
                   scaling=TrainScaling(workers=workers, use_gpu=False, cpus_per_worker=1))  # fmt: skip
    fit_and_export(dpo_train_loop, loop_config, run, ArtifactStore(out.parent), out.name, "", "DPO")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "model")
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.ray
@pytest.mark.slow
def test_two_workers_equal_one_worker_with_the_same_global_batch(ray_idle, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    start = torch.cat(
        [p.reshape(-1) for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters()]
    )
    as_mean = [{**p, "weight": p["weight"] / 2} for p in PAIRS]  # (1, 3) / mean weight 2 = (0.5, 1.5)
    two = _train(tiny_model_dir, tmp_path / "two", 2, 1, "normalized", PAIRS)
    one = _train(tiny_model_dir, tmp_path / "one", 1, 2, "mean", as_mean)
    assert (one - start).norm() > 0
    torch.testing.assert_close(two, one, rtol=1e-4, atol=1e-6)
