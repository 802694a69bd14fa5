"""The GPU paths, on a CUDA device: bf16 weighted DPO through TRL's real step, and the hf engine.

Marked ``gpu``: skipped cleanly where no CUDA device exists (conftest), runnable as
``pytest -m gpu tests/gpu`` on a GPU machine (no Ray needed).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu

PAIRS = [
    {"prompt": "Please summarize this text:\nThe cat sat on the mat.\nSummary:", "chosen": " a cat sat",
     "rejected": " rent went up"},
    {"prompt": "Please summarize this text:\nMy rent rose.\nSummary:", "chosen": " rent rose",
     "rejected": " a cat slept all day"},
]  # fmt: skip
TEXTS = [p["prompt"] + p["chosen"] for p in PAIRS] * 30


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rluf_ray.data.tiny_model import build_embedded

    return build_embedded(TEXTS, tmp_path_factory.mktemp("gpu-model"), vocab_size=320, layers=1, seed=0)


def _grad(model_dir: Path, tmp: Path, weight: float) -> tuple[float, torch.Tensor]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rluf_ray.training.weighted_dpo import WeightedDPOConfig, WeightedDPOTrainer

    args = WeightedDPOConfig(output_dir=str(tmp), use_cpu=False, bf16=True, per_device_train_batch_size=1,
                             report_to="none", beta=0.1, max_length=128, seed=0, save_strategy="no",
                             dataset_num_proc=None, gradient_checkpointing=False)  # fmt: skip
    trainer = WeightedDPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=Dataset.from_list([{**PAIRS[0], "weight": weight}]),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    trainer.current_gradient_accumulation_steps = 1
    assert next(trainer.model.parameters()).device.type == "cuda"
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer.training_step(trainer.model, dict(batch))
    grads = [p.grad.reshape(-1).float().cpu() for p in trainer.model.parameters() if p.grad is not None]
    return float(loss), torch.cat(grads)


def test_weighted_dpo_bf16_on_cuda(model_dir: Path, tmp_path: Path) -> None:
    l0, g0 = _grad(model_dir, tmp_path / "w0", 0.0)
    l1, g1 = _grad(model_dir, tmp_path / "w1", 1.0)
    l2, g2 = _grad(model_dir, tmp_path / "w2", 2.0)
    assert l0 == 0.0 and torch.count_nonzero(g0) == 0
    assert torch.count_nonzero(g1) > 0
    assert l2 == pytest.approx(2 * l1, rel=1e-3)
    torch.testing.assert_close(g2, 2 * g1, rtol=1e-3, atol=1e-6)


def test_hf_engine_on_cuda(model_dir: Path) -> None:
    from rluf_ray.engines.base import SamplingSpec
    from rluf_ray.engines.hf import HfOptions
    from rluf_ray.engines.registry import make_engine

    engine = make_engine("hf", str(model_dir), HfOptions(dtype="bfloat16", max_context=512))
    assert engine.device == "cuda"
    out = engine.generate(
        [PAIRS[0]["prompt"], PAIRS[1]["prompt"]], SamplingSpec(n=8, temperature=0.35, max_new_tokens=8)
    )
    assert [len(c.texts) for c in out] == [8, 8]
    assert all(math.isfinite(lp) and lp <= 0 for c in out for lp in c.mean_logprobs)
