"""The weight reaches the gradient through TRL's real path: dataset row -> collator -> loss -> backward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from rluf_ray.training.weighted_dpo import (
    CurveLogger,
    WeightedDPOConfig,
    WeightedDPOTrainer,
    WeightedPreferenceCollator,
)

PAIRS = [
    {
        "prompt": "Please summarize this text:\nThe cat sat on the mat.\nSummary:",
        "chosen": " a cat sat",
        "rejected": " rent went up",
    },
    {
        "prompt": "Please summarize this text:\nMy rent rose.\nSummary:",
        "chosen": " rent rose",
        "rejected": " a cat slept all day",
    },
    {
        "prompt": "Please summarize this text:\nI ran far.\nSummary:",
        "chosen": " running",
        "rejected": " the mat",
    },
]


def _args(tmp: Path, cls=WeightedDPOConfig, batch: int = 1, **kw) -> DPOConfig:
    return cls(
        output_dir=str(tmp),
        use_cpu=True,
        per_device_train_batch_size=batch,
        report_to="none",
        beta=0.1,
        max_length=128,
        seed=0,
        save_strategy="no",
        logging_steps=1,
        dataset_num_proc=None,
        gradient_checkpointing=False,
        **kw,
    )


def _trainer(model_dir: Path, tmp: Path, rows: list[dict], cls=WeightedDPOTrainer, **kw):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    args_cls = WeightedDPOConfig if cls is WeightedDPOTrainer else DPOConfig
    trainer = cls(
        model=model,
        args=_args(tmp, args_cls, batch=len(rows), **kw),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def _batch(trainer) -> dict:
    """One batch exactly as training sees it: the trainer's own dataloader (column removal + collator)."""
    return next(iter(trainer.get_train_dataloader()))


def _grads(trainer, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and flattened gradient of one real training step (no optimiser step)."""
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer.training_step(trainer.model, dict(batch))
    grads = [
        p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel())
        for p in trainer.model.parameters()
        if p.requires_grad
    ]
    return loss, torch.cat(grads)


def _rows(weights: list[float], pairs=PAIRS) -> list[dict]:
    return [{**p, "weight": w} for p, w in zip(pairs, weights, strict=False)]


def test_weight_survives_collator_and_signature_columns(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path, _rows([0.5, 2.0]))
    assert isinstance(trainer.data_collator, WeightedPreferenceCollator)
    trainer._set_signature_columns_if_needed()
    assert "weight" in trainer._signature_columns
    batch = _batch(trainer)
    assert "weight" in batch
    assert sorted(batch["weight"].tolist()) == [0.5, 2.0]
    assert batch["input_ids"].shape[0] == 4  # chosen half + rejected half


def test_zero_weight_gives_exactly_zero_gradient(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path, _rows([0.0]))
    loss, grad = _grads(trainer, _batch(trainer))
    assert float(loss) == 0.0
    assert grad.numel() > 0
    assert torch.count_nonzero(grad) == 0
    # the same pair with weight 1 does move the model, so the zero above is the weight's doing
    trainer1 = _trainer(tiny_model_dir, tmp_path / "w1", _rows([1.0]))
    _, grad1 = _grads(trainer1, _batch(trainer1))
    assert torch.count_nonzero(grad1) > 0


def test_zero_weight_pair_adds_nothing_to_a_mixed_batch(tiny_model_dir, tmp_path):
    """[A: w=0, B: w=1] under mean equals half the gradient of [B: w=1] alone (B=2 vs B=1)."""
    mixed = _trainer(tiny_model_dir, tmp_path, [{**PAIRS[0], "weight": 0.0}, {**PAIRS[1], "weight": 1.0}])
    alone = _trainer(tiny_model_dir, tmp_path / "alone", [{**PAIRS[1], "weight": 1.0}])
    _, g_mixed = _grads(mixed, _batch(mixed))
    _, g_alone = _grads(alone, _batch(alone))
    torch.testing.assert_close(g_mixed, 0.5 * g_alone, rtol=1e-4, atol=1e-7)


def test_weight_two_doubles_the_gradient_under_mean(tiny_model_dir, tmp_path):
    t1 = _trainer(tiny_model_dir, tmp_path / "a", _rows([1.0]))
    t2 = _trainer(tiny_model_dir, tmp_path / "b", _rows([2.0]))
    l1, g1 = _grads(t1, _batch(t1))
    l2, g2 = _grads(t2, _batch(t2))
    assert float(l2) == pytest.approx(2 * float(l1), rel=1e-6)
    assert torch.count_nonzero(g1) > 0
    torch.testing.assert_close(g2, 2 * g1, rtol=1e-5, atol=1e-8)


def test_normalized_reduction_is_scale_free(tiny_model_dir, tmp_path):
    """normalized: sum(w*l)/sum(w); weights (1, 3) give l = (l1 + 3 l2) / 4, weights (2, 6) the same."""
    rows = [{**PAIRS[0], "weight": 1.0}, {**PAIRS[1], "weight": 3.0}]
    ta = _trainer(tiny_model_dir, tmp_path / "a", rows, weight_reduction="normalized")
    tb = _trainer(
        tiny_model_dir,
        tmp_path / "b",
        [{**r, "weight": 2 * r["weight"]} for r in rows],
        weight_reduction="normalized",
    )
    tm = _trainer(tiny_model_dir, tmp_path / "m", rows, weight_reduction="mean")
    la, ga = _grads(ta, _batch(ta))
    lb, gb = _grads(tb, _batch(tb))
    lm, gm = _grads(tm, _batch(tm))
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-8)
    # mean = sum(w*l)/2 and normalized = sum(w*l)/4 on the same batch
    assert float(lm) == pytest.approx(2 * float(la), rel=1e-6)
    torch.testing.assert_close(gm, 2 * ga, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_all_weights_one_equal_trl_plain_dpo(tiny_model_dir, tmp_path, loss_type):
    rows = _rows([1.0, 1.0, 1.0])
    ours = _trainer(tiny_model_dir, tmp_path / "ours", rows, loss_type=[loss_type])
    plain_rows = [{k: v for k, v in r.items() if k != "weight"} for r in rows]
    trl = _trainer(tiny_model_dir, tmp_path / "trl", plain_rows, cls=DPOTrainer, loss_type=[loss_type])
    for t in (ours, trl):  # move both policies away from the reference, identically, so that delta != 0
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in t.model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    batch = _batch(ours)
    plain = {k: v for k, v in batch.items() if k != "weight"}
    l_ours, g_ours = _grads(ours, batch)
    l_trl, g_trl = _grads(trl, plain)
    assert abs(float(l_ours) - float(l_trl)) <= 1e-6
    assert loss_type != "sigmoid" or abs(float(l_ours) - 0.6931472) > 1e-4  # not the trivial delta = 0 point
    torch.testing.assert_close(g_ours, g_trl, rtol=1e-5, atol=1e-7)


def test_the_trainer_trains_every_pair_it_is_given(tiny_model_dir, tmp_path):
    # zero-weight pairs are dropped once, before the arms' rows (rluf_ray.training.pairs); not here again
    rows = _rows([0.0, 0.5, 0.0])
    t = _trainer(tiny_model_dir, tmp_path / "n", rows, weight_reduction="normalized")
    assert len(t.train_dataset) == 3
    assert [float(w) for w in t.train_dataset["weight"]] == [0.0, 0.5, 0.0]
    with pytest.raises(TypeError, match="drop_zero_weight"):
        _args(tmp_path / "x", WeightedDPOConfig, drop_zero_weight=True)


def test_missing_weight_column_and_unsupported_loss_are_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="no 'weight' column"):
        _trainer(tiny_model_dir, tmp_path / "a", [dict(PAIRS[0])])
    with pytest.raises(ValueError, match="one loss_type"):
        _trainer(tiny_model_dir, tmp_path / "b", _rows([1.0]), loss_type=["aot"])


def test_train_logs_curves_with_mean_weight(tiny_model_dir, tmp_path):
    rows = _rows([0.5, 1.5, 1.0])
    t = _trainer(tiny_model_dir, tmp_path, rows, max_steps=2)
    t.args.per_device_train_batch_size = 1
    curves = CurveLogger(tmp_path / "curves.jsonl")
    t.add_callback(curves)
    t.train()
    assert len(curves.rows) == 2
    for row in curves.rows:
        for key in ("loss", "rewards/accuracies", "rewards/margins", "weight/mean"):
            assert key in row
        assert row["weight/mean"] in (0.5, 1.5, 1.0)
    assert len((tmp_path / "curves.jsonl").read_text().splitlines()) == 2


def _one_sgd_step(model_dir, tmp, rows, batch: int, accumulation: int, reduction: str) -> torch.Tensor:
    """Parameters after one plain-SGD optimiser step (SGD, no clipping: the update is the gradient)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    args = _args(tmp, WeightedDPOConfig, batch=batch, weight_reduction=reduction,
                 gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd", learning_rate=0.5,
                 lr_scheduler_type="constant", max_grad_norm=1e9)  # fmt: skip
    trainer = WeightedDPOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    )
    trainer.train()
    return torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])


def test_normalized_spans_the_whole_optimiser_step(tiny_model_dir, tmp_path):
    """Gradient accumulation over two one-pair micro-batches with weights (1, 3): ``normalized`` divides
    by the step's sum of weights (4), so the step equals ``mean`` with weights (0.5, 1.5) on the same
    micro-batches: (l1 + 3 l2) / 4. Normalising per micro-batch (w*l/w) would give (l1 + l2) / 2."""
    rows = [{**PAIRS[0], "weight": 1.0}, {**PAIRS[1], "weight": 3.0}]
    as_mean = [{**PAIRS[0], "weight": 0.5}, {**PAIRS[1], "weight": 1.5}]
    per_micro = [{**PAIRS[0], "weight": 1.0}, {**PAIRS[1], "weight": 1.0}]
    start = torch.cat(
        [p.reshape(-1) for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters()]
    )
    norm = _one_sgd_step(tiny_model_dir, tmp_path / "n", rows, 1, 2, "normalized")
    mean = _one_sgd_step(tiny_model_dir, tmp_path / "m", as_mean, 1, 2, "mean")
    naive = _one_sgd_step(tiny_model_dir, tmp_path / "p", per_micro, 1, 2, "mean")
    step = (norm - start).norm()
    assert step > 0
    torch.testing.assert_close(norm, mean, rtol=1e-5, atol=1e-7)
    assert (naive - norm).norm() > 0.05 * step


def test_rpo_alpha_equals_trl_sigmoid_plus_sft_on_one_pair(tiny_model_dir, tmp_path):
    # One pair: TRL's batch token-mean NLL of the chosen answer is this pair's per-token NLL.
    rows = _rows([1.0], pairs=PAIRS[:1])
    ours = _trainer(tiny_model_dir, tmp_path / "ours", rows, rpo_alpha=0.7)
    plain = _trainer(tiny_model_dir, tmp_path / "plain", rows)
    trl = _trainer(
        tiny_model_dir,
        tmp_path / "trl",
        [{k: v for k, v in r.items() if k != "weight"} for r in rows],
        cls=DPOTrainer,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, 0.7],
    )
    batch = _batch(ours)
    l_ours, g_ours = _grads(ours, batch)
    l_plain, _ = _grads(plain, batch)
    l_trl, g_trl = _grads(trl, {k: v for k, v in batch.items() if k != "weight"})
    assert float(l_ours) > float(l_plain) + 0.1  # the NLL term is really there
    assert abs(float(l_ours) - float(l_trl)) <= 1e-5
    torch.testing.assert_close(g_ours, g_trl, rtol=1e-4, atol=1e-6)


def test_rpo_nll_is_multiplied_by_the_pair_weight(tiny_model_dir, tmp_path):
    rows = _rows([0.0, 1.0])
    t = _trainer(tiny_model_dir, tmp_path / "w", rows, rpo_alpha=1.0)
    z = _trainer(tiny_model_dir, tmp_path / "z", _rows([0.0, 0.0]), rpo_alpha=1.0)
    loss, _ = _grads(t, _batch(t))
    zero_loss, zero_grad = _grads(z, _batch(z))
    assert float(loss) > 0
    assert float(zero_loss) == 0.0 and float(zero_grad.abs().sum()) == 0.0
