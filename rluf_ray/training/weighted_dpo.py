"""Weighted DPO on top of TRL 1.16: a minimal ``DPOTrainer`` subclass and a weight-carrying collator.

TRL's preference collator and signature columns drop unknown columns, so a ``weight`` column never
reaches the loss on its own. Here it is carried on purpose:

1. ``WeightedPreferenceCollator`` adds ``batch["weight"]`` (float, one per pair);
2. ``WeightedDPOTrainer._set_signature_columns_if_needed`` keeps the ``weight`` column;
3. ``WeightedDPOTrainer._compute_loss`` computes the per-pair losses (``rluf_ray.training.losses``;
   plus ``rpo_alpha`` times the chosen answer's per-token NLL when that is set),
   multiplies them by the weights and reduces (``mean``: sum(w*l)/B, ``normalized``: sum(w*l)/sum(w)
   where sum(w) runs over the whole optimiser step: every micro-batch of gradient accumulation and
   every rank, summed in ``get_batch_samples`` before the step's first forward pass).

Everything else is TRL's: dataset tokenisation, reference model or disabled LoRA adapters,
``precompute_ref_log_probs``, the fused LM head, DDP/FSDP/DeepSpeed through ``Trainer``.
Supported loss types: ``sigmoid``, ``hinge``, ``ipo`` (the per-pair ones this project configures).
The trainer trains every pair it is given: zero-weight pairs are dropped, when configured, before the
arms' rows are made (``rluf_ray.training.pairs.drop_zero_weight_pairs``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from rluf_ray.training.losses import (
    LOSS_TYPES,
    REDUCTIONS,
    chosen_nll,
    per_pair_losses,
    reduce_weighted,
)

WEIGHT_COLUMN = "weight"
_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", WEIGHT_COLUMN}
CURVE_KEYS = (
    "loss",
    "rewards/accuracies",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "weight/mean",
    "nll/chosen",
    "learning_rate",
    "grad_norm",
)


@dataclass
class WeightedDPOConfig(DPOConfig):
    """TRL's ``DPOConfig`` plus the per-pair weighting options."""

    weight_reduction: str = field(
        default="mean",
        metadata={"help": "mean: sum(w*l)/B (the original CFA code); normalized: sum(w*l)/sum(w)."},
    )
    rpo_alpha: float = field(
        default=0.0,
        metadata={"help": "Weight of the chosen answer's per-token NLL added to each pair's loss (RPO)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight_reduction not in REDUCTIONS:
            raise ValueError(f"weight_reduction must be one of {REDUCTIONS}, got {self.weight_reduction!r}")
        if self.rpo_alpha < 0:
            raise ValueError(f"rpo_alpha must be >= 0, got {self.rpo_alpha}")


@dataclass
class WeightedPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator that also returns ``weight`` (float32, one per pair)."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate a batch as TRL does, plus the pairs' weights.

        Args:
            examples: The tokenised pairs of the batch, each with a ``weight``.

        Returns:
            TRL's batch with ``weight``, a float32 tensor of shape ``(B,)`` for the B examples.

        Raises:
            KeyError: If the examples have no ``weight`` field.
        """
        out = super().torch_call(examples)
        if WEIGHT_COLUMN not in examples[0]:
            raise KeyError(f"examples have no {WEIGHT_COLUMN!r} field: the weight would be lost")
        out[WEIGHT_COLUMN] = torch.tensor([float(ex[WEIGHT_COLUMN]) for ex in examples], dtype=torch.float32)
        return out


class WeightedDPOTrainer(DPOTrainer):
    """``DPOTrainer`` whose loss is the weighted reduction of per-pair DPO losses."""

    # The model's input names, filled by _set_signature_columns_if_needed. transformers' Trainer sets it
    # to None in __init__ without an annotation, so mypy reads its type as None.
    _signature_columns: list[str] | None  # type: ignore[assignment]

    def __init__(
        self, model: Any, ref_model: Any = None, args: WeightedDPOConfig | None = None, **kwargs: Any
    ):
        dpo_args = args
        if not isinstance(dpo_args, WeightedDPOConfig):
            raise TypeError("WeightedDPOTrainer needs args=WeightedDPOConfig(...)")
        loss_types = list(dpo_args.loss_type)
        if len(loss_types) != 1 or loss_types[0] not in LOSS_TYPES:
            raise ValueError(f"weighted DPO supports one loss_type among {LOSS_TYPES}, got {loss_types}")
        if dpo_args.ld_alpha is not None or dpo_args.use_weighting:
            raise ValueError("weighted DPO does not combine with ld_alpha or WPO use_weighting")
        if dpo_args.f_divergence_type != "reverse_kl":
            raise ValueError("weighted DPO supports f_divergence_type='reverse_kl' only")
        self.weight_reduction = dpo_args.weight_reduction
        self.rpo_alpha = float(dpo_args.rpo_alpha)
        self._step_weight: torch.Tensor | None = None  # sum of weights of the current optimiser step
        train = kwargs.get("train_dataset")
        if isinstance(train, Dataset) and WEIGHT_COLUMN not in train.column_names:
            raise ValueError(f"train_dataset has no {WEIGHT_COLUMN!r} column")
        super().__init__(model, ref_model=ref_model, args=dpo_args, **kwargs)
        base = self.data_collator
        if type(base) is DataCollatorForPreference:
            self.data_collator = WeightedPreferenceCollator(
                pad_token_id=base.pad_token_id,
                max_length=base.max_length,
                truncation_mode=base.truncation_mode,
                pad_to_multiple_of=base.pad_to_multiple_of,
            )

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        columns = self._signature_columns
        assert columns is not None  # set by the call above
        if WEIGHT_COLUMN not in columns:
            self._signature_columns = [*columns, WEIGHT_COLUMN]

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> Any:
        """Fetch the step's micro-batches (as HF does) and, for ``normalized``, sum their weights.

        The weight sum runs over every micro-batch and every rank: the denominator of the step's loss,
        kept for ``_compute_loss``.

        Args:
            epoch_iterator: The Trainer's iterator over the epoch's batches.
            num_batches: The micro-batches of this optimiser step (gradient-accumulation steps).
            device: The device the weight sum is computed on.

        Returns:
            ``(batch_samples, num_items_in_batch)`` as the base Trainer returns them.
        """
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.weight_reduction == "normalized":
            total = torch.zeros((), dtype=torch.float64, device=device)
            for batch in batch_samples:
                total = total + batch[WEIGHT_COLUMN].to(device=device, dtype=torch.float64).sum()
            if self.accelerator.num_processes > 1:
                total = self.accelerator.reduce(total, reduction="sum")
            self._step_weight = total
        return batch_samples, num_items

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        """Compute TRL's reference log-probs, with the weight kept out of the model's kwargs.

        Args:
            model: The reference model (or the policy, when the reference is its disabled adapters).
            inputs: The collated batch, ``weight`` included.

        Returns:
            What TRL returns: the reference's summed log-probs of the chosen and rejected completions,
            each of shape ``(B,)``.
        """
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k != WEIGHT_COLUMN})

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        if return_outputs:
            raise NotImplementedError("WeightedDPOTrainer does not return logits (prediction_loss_only)")
        assert self.model is not None  # the Trainer holds its model while computing a loss
        mode = "train" if self.model.training else "eval"
        weights = inputs[WEIGHT_COLUMN]
        completion_mask = inputs["completion_mask"]
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = completion_mask.size(1) - 1
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_model = self.ref_model if self.ref_model is not None else self.model
            ref_chosen, ref_rejected = self.compute_ref_log_probs(ref_model, inputs)
        chosen_len, rejected_len = completion_mask.sum(dim=1).chunk(2, dim=0)
        losses = per_pair_losses(
            chosen_logps,
            rejected_logps,
            ref_chosen,
            ref_rejected,
            beta=self.beta,
            loss_type=self.loss_types[0],
            label_smoothing=self.label_smoothing,
            chosen_lengths=chosen_len,
            rejected_lengths=rejected_len,
        )
        if self.rpo_alpha > 0:
            nll = chosen_nll(chosen_logps, chosen_len)
            losses = losses + self.rpo_alpha * nll
            self._metrics[mode]["nll/chosen"].append(self.accelerator.gather(nll.detach()).mean().item())
        step_weight = self._step_weight if mode == "train" else None
        step_scale = getattr(self, "current_gradient_accumulation_steps", 1) * self.accelerator.num_processes
        loss = reduce_weighted(losses, weights, self.weight_reduction, step_weight, step_scale)
        loss = loss * self.loss_weights[0]
        self._log_pair_metrics(mode, chosen_logps, rejected_logps, ref_chosen, ref_rejected, weights)
        return loss

    def _log_pair_metrics(
        self,
        mode: str,
        chosen_logps: torch.Tensor,
        rejected_logps: torch.Tensor,
        ref_chosen: torch.Tensor,
        ref_rejected: torch.Tensor,
        weights: torch.Tensor,
    ) -> None:
        gather = self.accelerator.gather
        chosen_rewards = self.beta * (chosen_logps.detach() - ref_chosen)
        rejected_rewards = self.beta * (rejected_logps.detach() - ref_rejected)
        m = self._metrics[mode]
        m["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        m["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        m["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        m["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        m["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        m["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        m["weight/mean"].append(gather(weights.float()).mean().item())


def curves_from_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn a Trainer's log history into one row per logged training step.

    Args:
        log_history: ``trainer.state.log_history``; entries without ``loss`` or ``step`` (eval, the
            final summary) are skipped.

    Returns:
        Rows of ``step``, ``epoch`` and the ``CURVE_KEYS`` present (loss, reward accuracy and margins,
        mean weight, ...).
    """
    rows = []
    for log in log_history:
        if "loss" not in log or "step" not in log:
            continue
        row: dict[str, Any] = {"step": int(log["step"]), "epoch": float(log.get("epoch", 0.0))}
        row.update({k: float(log[k]) for k in CURVE_KEYS if k in log})
        rows.append(row)
    return rows


class CurveLogger(TrainerCallback):
    """Appends every training log (loss, reward accuracy and margins, mean weight) to a JSONL file."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self.rows: list[dict[str, Any]] = []

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        """Append the training log to the JSONL file (rank 0, training logs with a loss only).

        Args:
            args: The Trainer's training arguments (unused).
            state: The Trainer's state (global step, epoch, whether this is rank 0).
            control: The Trainer's control flags (unused).
            logs: The logged values; None or without ``loss`` (an eval log) writes nothing.
            **kw: Further callback arguments (unused).
        """
        if not logs or not state.is_world_process_zero or "loss" not in logs:
            return
        row = {"step": int(state.global_step), "epoch": float(state.epoch or 0.0)}
        row.update({k: float(logs[k]) for k in CURVE_KEYS if k in logs})
        self.rows.append(row)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
